"""Loss-scale telemetry and the collapse stop: a real CPU run that overflows on purpose
(loss scaling over float32 with an absurd learning rate), TF's own loss-scale optimizer
in small graphs, and the Ascend path on the npu_bridge stand-in."""
import glob
import logging
import os
import re

import numpy as np
import pytest

from devices import precision
import env as env_lib
from logger import TrainLoggerHook
from tests.cli_helpers import run_python, single_error_line
from tests.conftest import ListHandler
from tests.run_helpers import model_fn_for
from tests.test_devices_npu import npu_env, records
from tests.test_env_schedules import flag_values
from training import diagnoses, resilience
from utils.tf_compat import tf

PROGRESS = re.compile(r"^step:(\d+) .* loss_scale:(\S+) overflow_skipped:(\d+) ", re.M)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("ls_ds")), num_classes=3,
                              per_class=4, size=32)


@pytest.fixture(scope="module")
def collapsed(dataset_dir, tmp_path_factory):
    """One real step at lr 1e30 leaves weights that overflow every later step: the
    dynamic scale halves from 2**15 to its floor of 1, then a step overflows there."""
    train_dir = str(tmp_path_factory.mktemp("ls_collapse"))
    out = run_python("train.py", "--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
                     "--model_name=mobilenet_v2_035", "--train_image_size=32",
                     "--batch_size=4", "--bn_decay=0.9", "--seed=5", "--max_train_steps=5",
                     "--learning_rate=1e30", "--loss_scale=dynamic",
                     "--log_every_n_steps=1", "--save_checkpoints_steps=1")
    return out, train_dir


def summaries(train_dir, tags):
    """(step, tag, value) of the scalars named ``tags`` in train_dir's event files."""
    found = []
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*"))):
        for event in tf.train.summary_iterator(path):
            found.extend((event.step, v.tag, v.simple_value)
                         for v in event.summary.value if v.tag in tags)
    return found


@pytest.mark.slow
def test_overflowing_run_logs_and_summarizes_the_falling_scale(collapsed):
    out, train_dir = collapsed
    logged = [(int(step), float(scale), int(skipped))
              for step, scale, skipped in PROGRESS.findall(out.stdout)]
    # The first step trains; every later one overflows, is skipped (the global step stays
    # at 1) and halves the scale.
    assert logged == [(1, 2.0 ** (15 - k), k) for k in range(16)], out.stdout[-3000:]
    assert "loss became NaN" not in out.stderr  # overflows are skipped, not divergence
    scalars = summaries(train_dir, ("loss_scale", "overflow_steps"))
    pairs = list(zip(scalars[::2], scalars[1::2]))
    assert [(s, scale, int(skipped)) for (s, _, scale), (_, _, skipped) in pairs] == (
        logged + [(1, 1.0, 16)])  # the collapsing step is summarized before the stop
    assert {tag for _, tag, _ in scalars[::2]} == {"loss_scale"}


@pytest.mark.slow
def test_collapse_stops_with_one_line_and_the_checkpoint_intact(collapsed):
    out, train_dir = collapsed
    line = single_error_line(out)
    newest = os.path.join(train_dir, "model.ckpt-1")
    assert line.startswith("error: the loss scale collapsed to 1 at step 1 after 16 "
                           "skipped (overflowing) steps: ")
    assert "the newest checkpoint, %s (step 1), predates it and is intact" % newest in line
    assert ("TensorFlow has no overflow dump on cpu: to name the first operator producing "
            "Inf/NaN, call tf.debugging.enable_check_numerics()") in line
    assert "Lower --learning_rate (now 1e+30)" in line
    assert tf.train.latest_checkpoint(train_dir) == newest
    reader = tf.train.load_checkpoint(newest)
    values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    floats = [v for v in values.values() if np.issubdtype(np.asarray(v).dtype, np.floating)]
    assert len(floats) > 100 and all(np.isfinite(v).all() for v in floats)
    # Resuming from it restarts the count where that checkpoint left it: 0 skipped.
    assert values["global_step"] == 1 and values["steps_run"] == 1
    assert values["current_loss_scale"] == 2.0 ** 15


def scaled_square(initial_scale, every_n_steps=1, fixed=False):
    """loss = w * w * x under TF's dynamic loss scaling, starting at initial_scale (or
    our fixed scale, ``fixed``), with the telemetry, DivergenceHook and the progress line
    as training wires them."""
    weight = tf.Variable(2.0)
    x = tf.placeholder_with_default(1.0, [])
    global_step = tf.train.get_or_create_global_step()
    optimizer = (precision.loss_scale_optimizer(tf.train.GradientDescentOptimizer(0.1),
                                                initial_scale) if fixed else
                 tf.mixed_precision.MixedPrecisionLossScaleOptimizer(
                     tf.train.GradientDescentOptimizer(0.1),
                     tf.mixed_precision.DynamicLossScale(initial_loss_scale=initial_scale)))
    train_op = optimizer.minimize(weight * weight * x, global_step=global_step)
    train_op, after = precision.overflow_telemetry(
        train_op, lambda: precision.current_loss_scale(optimizer), global_step)
    lines = ListHandler()
    log = logging.getLogger("loss_scale_test_%g" % initial_scale)
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    resilience.watch_for_divergence(loss_scale_state=after)
    hooks = [resilience.DivergenceHook(fixed_loss_scale=fixed),
             TrainLoggerHook(after, every_n_steps=every_n_steps, steps_per_epoch=10,
                             max_steps=100, global_batch=1, logger=log)]
    return train_op, x, weight, hooks, lines


def test_a_huge_initial_scale_comes_down_and_training_proceeds():
    with tf.Graph().as_default():
        # d(w*w*scale)/dw = 4 * scale overflows float32 at 2**127 and 2**126, not at 2**125.
        train_op, _, weight, hooks, lines = scaled_square(2.0 ** 127)
        with tf.train.MonitoredSession(hooks=hooks) as session:
            for _ in range(5):
                session.run(train_op)
            w = session.run_step_fn(lambda step_context: step_context.session.run(weight))
    assert abs(w - 2.0 * 0.8 ** 3) < 1e-5  # three real steps of w -= 0.1 * 2w
    progress = [re.search(r"^step:(\d+) .*loss_scale:(\S+) overflow_skipped:(\d+)", l)
                for l in lines.lines if l.startswith("step:")]
    # Two skipped steps (the global step stays 0) halve the scale; then it trains.
    assert [m.groups() for m in progress] == [
        ("0", "%g" % 2.0 ** 126, "1"), ("0", "%g" % 2.0 ** 125, "2"),
        ("1", "%g" % 2.0 ** 125, "2"), ("2", "%g" % 2.0 ** 125, "2"),
        ("3", "%g" % 2.0 ** 125, "2")]


def test_an_overflow_at_scale_one_is_the_collapse():
    with tf.Graph().as_default():
        train_op, x, _, hooks, _ = scaled_square(4.0)
        with tf.train.MonitoredSession(hooks=hooks) as session:
            session.run(train_op)                          # trains: 4, step 1
            for _ in range(2):
                session.run(train_op, {x: np.inf})         # 2, then 1: still scaling
            with pytest.raises(resilience.LossScaleCollapsed) as stop:
                session.run(train_op, {x: np.inf})         # overflows at 1
    assert (stop.value.step, stop.value.loss_scale, stop.value.skipped) == (1, 1.0, 3)


def test_a_fixed_scale_skips_overflowing_steps_and_stops_when_they_never_end():
    limit = resilience.FIXED_SCALE_OVERFLOW_LIMIT
    with tf.Graph().as_default():
        train_op, x, weight, hooks, _ = scaled_square(1024.0, fixed=True)
        read = lambda session: session.run_step_fn(  # noqa: E731
            lambda step_context: step_context.session.run(weight))
        with tf.train.MonitoredSession(hooks=hooks) as session:
            session.run(train_op)                              # trains: step 1
            for _ in range(limit - 1):                         # a streak one short
                session.run(train_op, {x: np.inf})
            # Skipped, not NaN: TF's own FixedLossScale would apply Inf/NaN gradients.
            assert read(session) == pytest.approx(1.6)
            session.run(train_op)                              # trains: step 2
            for _ in range(limit - 1):                         # the count starts again
                session.run(train_op, {x: np.inf})
            with pytest.raises(resilience.LossScaleStalled) as stop:
                session.run(train_op, {x: np.inf})
    assert (stop.value.step, stop.value.loss_scale, stop.value.steps) == (2, 1024.0, limit)


@pytest.mark.slow
def test_a_run_whose_fixed_scale_always_overflows_stops_with_one_line(dataset_dir,
                                                                       tmp_path):
    train_dir = str(tmp_path / "train")
    out = run_python("train.py", "--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
                     "--model_name=mobilenet_v2_035", "--train_image_size=32",
                     "--batch_size=4", "--bn_decay=0.9", "--seed=5", "--max_train_steps=80",
                     "--learning_rate=1e30", "--loss_scale=1024", "--log_every_n_steps=10",
                     "--save_checkpoints_steps=1")
    newest = os.path.join(train_dir, "model.ckpt-1")
    assert single_error_line(out).startswith(
        "error: %d steps in a row overflowed at the fixed loss scale 1024 and were skipped, "
        "so the global step stayed at 1 and training has stopped learning (training "
        "diverged); the newest checkpoint, %s (step 1), predates it and is intact. Lower "
        "--loss_scale, or pass --loss_scale=dynamic, which lowers itself on overflows. "
        "TensorFlow has no overflow dump on cpu" % (resilience.FIXED_SCALE_OVERFLOW_LIMIT,
                                                    newest))
    assert tf.train.latest_checkpoint(train_dir) == newest


def test_float32_runs_scale_the_loss_only_when_asked(dataset_dir):
    def env(**overrides):
        return env_lib.load_env(flag_values(
            dataset_dir=dataset_dir, max_train_steps=5, train_image_size=32, batch_size=2,
            model_name="mobilenet_v2_035", **overrides), {})
    assert env().loss_scale is None
    model = model_fn_for(env(loss_scale="1024"))
    assert model.device.skips_overflow_steps()
    assert model.device.describe() == "cpu, float32, loss scale 1024.0"
    with tf.Graph().as_default():
        spec = model(tf.zeros([2, 32, 32, 3]), tf.zeros([2], tf.int32),
                     tf.estimator.ModeKeys.TRAIN)
        summarized = [t.op.name for t in tf.get_collection(tf.GraphKeys.SUMMARIES)]
        watched = resilience.watched_tensors()
    # A fixed scale's stall stop watches the scale; the loss may overflow under scaling.
    assert sorted(watched) == ["loss_scale", "overflow_steps"]
    assert spec.loss.op.name == "overflow_tolerant_loss"  # NaN -> Inf, for NanTensorHook
    assert {"loss_scale", "overflow_steps"} <= set(summarized)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, manager, scales", [
    # Overflows halve the dynamic scale every second one (decr_every_n_nan_or_inf=2,
    # decr_ratio=0.5); they never move a fixed one.
    ({}, "ExponentialUpdateLossScaleManager", [2.0 ** 32, 2.0 ** 32, 2.0 ** 31]),
    (dict(loss_scale="1024"), "FixedLossScaleManager", [1024.0] * 3),
])
def test_npu_scale_comes_from_the_loss_scale_manager(npu_bridge, npu_dataset, tmp_path,
                                                      overrides, manager, scales):
    """One finite step, then two whose images of Inf overflow every gradient: the
    telemetry reads the manager's scale after each step."""
    model = model_fn_for(npu_env(npu_dataset, tmp_path / "train", {}, **overrides))
    with tf.Graph().as_default() as graph:
        images = tf.placeholder_with_default(tf.zeros([4, 32, 32, 3]), [4, 32, 32, 3])
        spec = model(images, tf.zeros([4], tf.int32), tf.estimator.ModeKeys.TRAIN)
        watched = sorted(resilience.watched_tensors())
        after = {name: graph.get_tensor_by_name(name + "_after_step:0")
                 for name in ("loss_scale", "overflow_steps")}
        variables = [v.op.name for v in tf.global_variables()]
        with tf.Session() as session:
            session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            seen = [session.run([spec.train_op, after],
                                {images: np.full([4, 32, 32, 3], value, np.float32)})[1]
                    for value in (0.0, np.inf, np.inf)]
    assert seen == [{"loss_scale": scale, "overflow_steps": skipped}
                    for skipped, scale in enumerate(scales)]
    # Asked twice: NPULossScaleOptimizer scales the loss with it, the telemetry reads it
    # again after the step.
    assert records(npu_bridge, manager + ".get_loss_scale") == [{}, {}]
    # The dynamic scale is the manager's variable, saved with the checkpoints.
    assert ("loss_scale" in variables) == (manager == "ExponentialUpdateLossScaleManager")
    assert watched == ["loss_scale", "overflow_steps"]


def npu_scaled_square(manager, is_distributed=False):
    """loss = w * w * x, minimized by npu_bridge's loss-scale optimizer with ``manager``."""
    from npu_bridge.estimator.npu.npu_loss_scale_optimizer import NPULossScaleOptimizer
    weight = tf.Variable(2.0)
    x = tf.placeholder_with_default(1.0, [])
    global_step = tf.train.get_or_create_global_step()
    optimizer = NPULossScaleOptimizer(tf.train.GradientDescentOptimizer(0.1), manager,
                                      is_distributed=is_distributed)
    train_op = optimizer.minimize(weight * weight * x, global_step=global_step)
    return train_op, x, [weight, global_step, manager.get_loss_scale()]


@pytest.mark.parametrize("is_distributed, expected", [
    # w -= 0.1 * 2w on each applied step: 2 -> 1.6 -> 1.28 -> 1.024 -> 0.8192.
    (False, [(1.6, 1, 4), (1.28, 2, 8), (1.28, 2, 8), (1.024, 3, 8), (0.8192, 4, 16)]),
    (True, [(1.6, 1, 4), (1.28, 2, 8), (1.28, 2, 8), (1.28, 2, 4), (1.024, 3, 4)]),
])
def test_npu_exponential_manager_grows_shrinks_and_skips(npu_bridge, monkeypatch,
                                                        is_distributed, expected):
    """Two finite steps in a row double the scale; an overflow is skipped (weights and
    global step kept), the second one halves the scale. Step 4 overflows on the other
    rank only (its status added to this one's where HCCL sums them): distributed, this
    rank skips it too and halves the scale; alone, it applies the step."""
    from npu_bridge.estimator.npu import npu_loss_scale_manager as managers
    from npu_bridge.hccl import hccl_ops
    monkeypatch.setenv("RANK_SIZE", "2" if is_distributed else "1")
    with tf.Graph().as_default():
        other_rank = tf.placeholder_with_default(0.0, [])  # its overflow status

        def two_rank_sum(tensor, reduction, **options):
            assert reduction == "sum"
            return tf.convert_to_tensor(tensor) + other_rank
        monkeypatch.setattr(hccl_ops, "allreduce", two_rank_sum)
        manager = managers.ExponentialUpdateLossScaleManager(
            init_loss_scale=4.0, incr_every_n_steps=2, decr_every_n_nan_or_inf=2,
            decr_ratio=0.5)
        train_op, x, state = npu_scaled_square(manager, is_distributed)
        seen = []
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for here, there in ((1.0, 0.0), (1.0, 0.0), (np.inf, 0.0), (1.0, 1.0), (1.0, 0.0)):
                session.run(train_op, {x: here, other_rank: there})
                seen.append(tuple(round(float(v), 5) for v in session.run(state)))
    assert seen == expected


@pytest.mark.parametrize("check, expected_step", [(True, 0), (False, 1)])
def test_npu_fixed_manager_skips_overflows_unless_told_not_to(npu_bridge, check,
                                                              expected_step):
    from npu_bridge.estimator.npu import npu_loss_scale_manager as managers
    with tf.Graph().as_default():
        manager = managers.FixedLossScaleManager(1024, enable_overflow_check=check)
        train_op, x, state = npu_scaled_square(manager)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(train_op, {x: np.inf})
            weight, step, scale = session.run(state)
    assert (step, scale) == (expected_step, 1024.0)
    assert (weight == 2.0) if check else not np.isfinite(weight)  # applied: w -= inf


@pytest.mark.parametrize("over_dump, hint", [
    (False, "Rerun with --over_dump to dump the overflowing operators (into "
            "--over_dump_path, default <train_dir>/overflow_dump)"),
    (True, "The overflowing operators are dumped in /data/dumps"),
])
def test_npu_collapse_says_where_the_overflow_dump_is(npu_bridge, npu_dataset, tmp_path,
                                                      over_dump, hint):
    env = npu_env(npu_dataset, tmp_path / "train", {}, over_dump=over_dump,
                  over_dump_path="/data/dumps")
    assert diagnoses.overflow_dump_hint(env) == hint
