"""The training run's parts apart: the loop (training/loop.py) with a device that trains
nothing, and the model_fn (estimator_impl.ModelFn) built without an Estimator; then the
run as a user repeats it from its flags.txt, and --preflight on an image tree."""
import json
import logging
import os

import pytest

from devices import base
import env as env_lib
from tests.cli_helpers import run_python
from tests.conftest import ListHandler
from tests.ds_helpers import write_image_tree
from tests.flag_helpers import imagenet_facts, parse_train_flags
from tests.run_helpers import model_fn_for
from training import loop, resilience
from utils.errors import UserError
from utils.tf_compat import tf

# 40 images at batch 4: 10 steps an epoch; --eval_every_n_epochs=0.4: every 4 steps.
LOOP_FLAGS = ("--dataset_dir=/nowhere", "--batch_size=4", "--max_train_steps=10",
              "--eval_every_n_epochs=0.4", "--use_synthetic_data", "--warmup_epochs=0",
              "--train_image_size=32", "--model_name=mobilenet_v2_035")


def saved_checkpoint(directory, step):
    """A checkpoint holding only global_step = step, saved as training saves it."""
    os.makedirs(directory, exist_ok=True)
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        with tf.Session() as session:
            session.run(tf.assign(global_step, step))
            return tf.train.Saver().save(session, os.path.join(directory, "model.ckpt"),
                                         global_step=step)


class RecordingDevice(base.Device):
    """Trains nothing: each train() call is recorded and leaves a checkpoint at
    ``reach(max_steps)`` (the requested step unless told otherwise), or raises
    ``failure``."""

    def __init__(self, env, reach=None, failure=None):
        base.Device.__init__(self, env, logging.getLogger("test_training_run"))
        self.calls, self.reach, self.failure = [], reach or (lambda step: step), failure

    def train(self, estimator, input_fn, max_steps, hooks=(), saving_listeners=()):
        self.calls.append((estimator, max_steps, [type(h).__name__ for h in hooks]))
        if self.failure is not None:
            raise self.failure
        saved_checkpoint(self.env.train_dir, self.reach(max_steps))


def loop_env(train_dir, *extra):
    f = parse_train_flags(*(LOOP_FLAGS + ("--train_dir=" + str(train_dir),) + extra))
    return env_lib.Env.from_flags(f, imagenet_facts(train_images=40), {})


def run_loop(env, device, monkeypatch, signals=None):
    """(checkpoint, warm starts asked for, checkpoints evaluated, log lines)."""
    built, evaluated = [], []

    class Evaluator(object):  # records what the run evaluates, in order
        def __init__(self, config, logger):
            assert config.eval_dir == os.path.join(env.train_dir, "eval")

        def __enter__(self):
            return self

        def __exit__(self, *unused):
            pass

        def evaluate_or_skip(self, checkpoint):
            evaluated.append(os.path.basename(checkpoint))
    monkeypatch.setattr(loop, "Evaluator", Evaluator)
    log = logging.getLogger("test_training_run.loop")
    lines = ListHandler()
    log.handlers[:] = [lines]
    log.setLevel(logging.INFO)
    run = loop.TrainingRun(env, device, lambda warm: built.append(warm) or "estimator",
                           log, signals)
    return run.run(), built, evaluated, lines.lines


def test_a_fresh_run_trains_segments_to_each_evaluation(tmp_path, monkeypatch):
    start = saved_checkpoint(str(tmp_path / "imagenet"), 3)
    env = loop_env(tmp_path / "train", "--restore_path=" + start)
    env = env.replace(restore_checkpoint=start)  # resolved, as gather_facts does
    device = RecordingDevice(env)
    checkpoint, built, evaluated, lines = run_loop(env, device, monkeypatch)
    assert [(e, steps) for e, steps, _ in device.calls] == [
        ("estimator", 4), ("estimator", 8), ("estimator", 10)]
    # Every segment watches signals and divergence; one estimator, warm-started once.
    assert all(hooks == ["StopHook", "DivergenceHook"] for _, _, hooks in device.calls)
    assert built == [start]
    assert evaluated == ["model.ckpt-4", "model.ckpt-8", "model.ckpt-10"]
    assert checkpoint.endswith("model.ckpt-10")
    result = json.load(open(str(tmp_path / "train" / "train_result.json")))
    assert (result["start_step"], result["final_step"], result["global_batch"]) == (0, 10, 4)
    assert (result["train_image_size"], result["eval_image_size"]) == (32, 32)
    spec = json.load(open(str(tmp_path / "train" / "model_spec.json")))
    assert spec["restore_path"] == os.path.abspath(start)
    assert any(l.startswith("device: cpu; model=mobilenet_v2_035") for l in lines)


def test_a_resumed_run_starts_at_its_checkpoint_and_does_not_warm_start(tmp_path,
                                                                       monkeypatch):
    saved_checkpoint(str(tmp_path / "train"), 5)
    env = loop_env(tmp_path / "train")
    device = RecordingDevice(env)
    _, built, evaluated, lines = run_loop(env, device, monkeypatch)
    assert [steps for _, steps, _ in device.calls] == [8, 10]
    assert built == [None] and evaluated == ["model.ckpt-8", "model.ckpt-10"]
    assert "rank 0 resumes from %s at step 5" % (tmp_path / "train" / "model.ckpt-5") in lines
    assert json.load(open(str(tmp_path / "train" / "train_result.json")))["start_step"] == 5


def test_nothing_left_to_train_builds_nothing(tmp_path, monkeypatch):
    saved_checkpoint(str(tmp_path / "train"), 10)
    env = loop_env(tmp_path / "train")
    device = RecordingDevice(env)
    checkpoint, built, _, _ = run_loop(env, device, monkeypatch)
    assert device.calls == [] and built == [] and checkpoint.endswith("model.ckpt-10")


def test_a_segment_that_stops_short_is_refused(tmp_path, monkeypatch):
    env = loop_env(tmp_path / "train")
    device = RecordingDevice(env, reach=lambda step: step - 2)
    with pytest.raises(UserError, match=r"^training ended at step 2, before step 4, with no "
                                        r"error from TensorFlow"):
        run_loop(env, device, monkeypatch)


def test_a_signal_ends_the_run_after_its_segment(tmp_path, monkeypatch):
    class Signals(object):
        received = None
    signals = Signals()
    env = loop_env(tmp_path / "train")

    def reach(step):  # SIGTERM arrives while the first segment trains
        signals.received = 15
        return step
    with pytest.raises(resilience.TrainingStopped) as stopped:
        run_loop(env, RecordingDevice(env, reach=reach), monkeypatch, signals)
    assert (stopped.value.step, stopped.value.exit_code) == (4, 128 + 15)
    assert not os.path.exists(str(tmp_path / "train" / "train_result.json"))


def test_a_divergence_is_one_line_naming_what_survived(tmp_path, monkeypatch):
    env = loop_env(tmp_path / "train")
    device = RecordingDevice(env, failure=resilience.NonFiniteLoss(3, float("nan")))
    with pytest.raises(UserError) as error:
        run_loop(env, device, monkeypatch)
    assert str(error.value).startswith(
        "loss became nan at step 3 (training diverged); no checkpoint was written. Lower "
        "--learning_rate (now 0.1)")


# ----------------------------------------------------------------------------- model_fn

@pytest.fixture(scope="module")
def small_env(tmp_path_factory):
    train_dir = str(tmp_path_factory.mktemp("model_fn"))
    f = parse_train_flags("--dataset_dir=/nowhere", "--train_dir=" + train_dir,
                          "--model_name=mobilenet_v2_035", "--train_image_size=32",
                          "--batch_size=2", "--max_train_steps=3", "--warmup_epochs=0",
                          "--moving_average_decay=0.99", "--graph_cache_dir=")
    return env_lib.Env.from_flags(f, imagenet_facts(train_images=40), {})


def build(env, mode, warm_start=None):
    """(spec, what DivergenceHook would watch) of ModelFn in a fresh graph."""
    with tf.Graph().as_default():
        tf.train.get_or_create_global_step()
        spec = model_fn_for(env, warm_start=warm_start)(
            tf.zeros([2, 32, 32, 3]), tf.zeros([2], tf.int32), mode)
        return spec, resilience.watched_tensors()


def test_model_fn_builds_each_mode_without_an_estimator(small_env):
    spec, watched = build(small_env, tf.estimator.ModeKeys.TRAIN)
    assert spec.train_op is not None and list(watched) == ["loss"]
    assert watched["loss"].op.name == "total_loss"  # regularization included
    spec, watched = build(small_env, tf.estimator.ModeKeys.EVAL)
    assert sorted(spec.eval_metric_ops) == ["top1", "top5"] and watched == {}
    spec, _ = build(small_env, tf.estimator.ModeKeys.PREDICT)
    assert sorted(spec.predictions) == ["classes", "probabilities"]
    assert spec.predictions["probabilities"].shape.as_list() == [2, 1001]


def test_model_fn_warm_starts_only_a_fresh_model_dir(small_env):
    model = model_fn_for(small_env, warm_start="/somewhere/model.ckpt-1")
    assert model.warm_starts()
    saved_checkpoint(small_env.train_dir, 1)
    assert not model.warm_starts()  # the run's later segments resume instead
    assert not model_fn_for(small_env).warm_starts()


# ----------------------------------------------------------------------------- train.py

TINY_RUN = ("--model_name=mobilenet_v2_035", "--train_image_size=32", "--batch_size=4",
            "--max_train_steps=2", "--learning_rate_per_256=1.0", "--warmup_epochs=0",
            "--log_every_n_steps=1", "--seed=5", "--graph_cache_dir=")


@pytest.mark.slow
def test_a_run_repeats_from_its_flags_file(tmp_path):
    from tests.ds_helpers import write_tiny_dataset
    data = write_tiny_dataset(str(tmp_path / "ds"), num_classes=2, per_class=4, size=32)
    first = str(tmp_path / "first")
    out = run_python("train.py", "--dataset_dir=" + data, "--train_dir=" + first, *TINY_RUN)
    assert out.returncode == 0, out.stderr[-2000:]
    flags_file = os.path.join(first, "flags.txt")
    text = open(flags_file).read()
    assert "--learning_rate_per_256=1.0\n" in text and "--max_train_steps=2\n" in text
    assert "--preflight" not in text and "--learning_rate=" not in text
    second = str(tmp_path / "second")
    out = run_python("train.py", "--flagfile=" + flags_file, "--train_dir=" + second)
    assert out.returncode == 0, out.stderr[-2000:]

    def settings(train_dir):
        result = json.load(open(os.path.join(train_dir, "train_result.json")))
        for varies in ("seconds", "images_per_sec", "checkpoint"):
            del result[varies]
        return result
    assert settings(second) == settings(first)
    assert settings(first)["learning_rate"] == pytest.approx(4 / 256.0)


def snapshot(root):
    """{relative path: bytes} of every file under ``root``, and its folders."""
    files, folders = {}, set()
    for folder, subfolders, names in os.walk(root):
        folders.update(os.path.relpath(os.path.join(folder, d), root) for d in subfolders)
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files, folders


@pytest.mark.slow
def test_preflight_on_an_image_tree_counts_it_and_writes_nothing(tmp_path):
    tree = tmp_path / "photos"
    write_image_tree(str(tree / "train"), num_classes=3, per_class=4, size=32)
    write_image_tree(str(tree / "validation"), num_classes=3, per_class=2, size=32)
    before = snapshot(str(tmp_path))
    out = run_python("train.py", "--dataset_dir=" + str(tree), "--preflight",
                     "--train_dir=" + str(tmp_path / "train"), "--max_epoch=1",
                     "--dataset_cache_dir=" + str(tmp_path / "cache"), *TINY_RUN[:3])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert snapshot(str(tmp_path)) == before  # byte for byte, no new file or folder
    line = [l for l in out.stdout.splitlines() if l.startswith("dataset ")][0]
    assert "%s is an image tree of 3 classes (train 12 images, validation 6 images); a " \
           "run converts it once into %s" % (tree, tmp_path / "cache") in line
    assert "(not converted: nothing is written now)" in line
    assert "preflight: 0 problems" in out.stdout
