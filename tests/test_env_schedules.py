"""Env's derived numbers, flag validation, and LR schedules against closed forms."""
import json
import math
import types

from absl import flags
import numpy as np
import pytest

from devices.ranks import rank_info_from_environ
import env as env_lib
from training import optimization
from utils.errors import UserError
from utils.tf_compat import tf

env_lib.define_train_flags()


def flag_values(**overrides):
    """The train flags' defaults as a plain object, with overrides."""
    values = {name: flags.FLAGS[name].default for name in flags.FLAGS}
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """3 classes of 10 training images (and 5 validation ones): 30 training images."""
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("env_ds")), num_classes=3,
                              per_class=10, size=32)


def test_steps_per_epoch_and_totals(tiny_dataset):
    env = env_lib.load_env(flag_values(dataset_dir=tiny_dataset, batch_size=4,
                                             max_epoch=3, train_image_size=32),
                                 environ={})
    assert env.dataset.num_samples("train") == 30
    assert env.steps_per_epoch == 7  # 30 images // 4, the last partial batch dropped
    assert env.max_train_steps == 21  # 3 epochs
    assert env.num_classes == 3 and env.global_batch == 4
    assert env.save_checkpoints_steps == 7  # one checkpoint per epoch by default


def tf_config(index, workers=2):
    return json.dumps({"cluster": {"worker": ["127.0.0.1:%d" % (20000 + i)
                                              for i in range(workers)]},
                       "task": {"type": "worker", "index": index}})


def test_rank_size_scales_global_batch(tiny_dataset):
    env = env_lib.load_env(flag_values(dataset_dir=tiny_dataset, batch_size=2,
                                             max_train_steps=5, train_image_size=32),
                                 environ={"RANK_SIZE": "2", "RANK_ID": "1",
                                          "TF_CONFIG": tf_config(1)})
    assert (env.global_batch, env.rank_id, env.is_chief) == (4, 1, False)
    assert (env.device, env.num_replicas, env.local_replicas) == ("cpu", 2, 1)
    assert env.steps_per_epoch == 7  # 30 images // the global batch of 4


def test_ranks_from_tf_config_alone():
    ranks = rank_info_from_environ({"TF_CONFIG": tf_config(2, workers=3)})
    assert ranks == (2, 3)
    chief = json.dumps({"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]},
                        "task": {"type": "worker", "index": 0}})
    assert rank_info_from_environ({"TF_CONFIG": chief}) == (1, 3)
    assert rank_info_from_environ({"TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}})}) == (0, 1)


@pytest.mark.parametrize("environ, fragment", [
    ({"RANK_SIZE": "2", "RANK_ID": "0"}, "needs TF_CONFIG naming every worker"),
    ({"RANK_SIZE": "2", "RANK_ID": "0", "TF_CONFIG": tf_config(1)}, "make them agree"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not a cluster"),
    ({"RANK_SIZE": "2", "RANK_ID": "5"}, "RANK_ID=5 is outside"),
])
def test_rank_environment_mistakes(tiny_dataset, environ, fragment):
    with pytest.raises(UserError, match=fragment):
        env_lib.load_env(flag_values(dataset_dir=tiny_dataset, max_train_steps=5,
                                           train_image_size=32, batch_size=2), environ)


@pytest.mark.parametrize("overrides, fragment", [
    (dict(mixed_precision=True), "--mixed_precision is for GPUs"),
    (dict(device="npu"), "npu_bridge does not import"),
    (dict(device="gpu"), "TensorFlow sees no GPU"),
    (dict(num_gpus=2), "--num_gpus=2 needs --device=gpu"),
    (dict(loss_scale="huge"), "--loss_scale=huge"),
    (dict(loss_scale="-8"), "--loss_scale=-8"),
    (dict(loss_scale="0.5"), r"--loss_scale=0.5: give dynamic, none or a number >= 1"),
])
def test_device_flag_mistakes(tiny_dataset, overrides, fragment):
    with pytest.raises(UserError, match=fragment):
        env_lib.load_env(flag_values(dataset_dir=tiny_dataset, max_train_steps=5,
                                           train_image_size=32, batch_size=2, **overrides), {})


@pytest.mark.parametrize("text, value", [("dynamic", "dynamic"), ("none", None),
                                         ("1024", 1024.0), ("DYNAMIC", "dynamic")])
def test_loss_scale_values(tiny_dataset, text, value):
    env = env_lib.load_env(flag_values(dataset_dir=tiny_dataset, max_train_steps=5,
                                             train_image_size=32, batch_size=2,
                                             loss_scale=text), {})
    assert env.loss_scale == value


def test_labels_offset_and_explicit_classes(tiny_dataset):
    base = dict(dataset_dir=tiny_dataset, max_train_steps=5, train_image_size=32, batch_size=2)
    assert env_lib.load_env(flag_values(labels_offset=1, **base), {}).num_classes == 2
    assert env_lib.load_env(flag_values(num_classes=7, **base), {}).num_classes == 7


@pytest.mark.parametrize("overrides, fragment", [
    (dict(max_epoch=None, max_train_steps=None), "exactly one of --max_epoch"),
    (dict(max_epoch=2, max_train_steps=10), "exactly one of --max_epoch"),
    (dict(max_train_steps=-1), "--max_train_steps=-1 must be positive"),
    (dict(max_train_steps=5, batch_size=0), "--batch_size=0 must be positive"),
    (dict(max_train_steps=5, batch_size=10000), "exceeds the"),
    (dict(max_train_steps=5, model_name="resnet_9000"), "mobilenet_v2"),
    (dict(max_train_steps=5, train_image_size=50), "50"),
    (dict(max_train_steps=5, bn_decay=1.5), "--bn_decay"),
    (dict(max_train_steps=5, warmup_epochs=100.0), "--warmup_epochs"),
    (dict(max_train_steps=5, dataset_dir=None), "--dataset_dir is required"),
    (dict(max_train_steps=5, dataset_dir="/nonexistent/data"), "/nonexistent/data"),
])
def test_bad_flags_raise_one_clear_error(tiny_dataset, overrides, fragment):
    values = dict(dataset_dir=tiny_dataset, train_image_size=32, batch_size=2)
    values.update(overrides)
    with pytest.raises(UserError) as err:
        env_lib.load_env(flag_values(**values), environ={})
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("environ", [{"RANK_SIZE": "x"}, {"RANK_SIZE": "2", "RANK_ID": "2"}])
def test_bad_rank_environment(environ):
    with pytest.raises(UserError):
        rank_info_from_environ(environ)


def test_bn_decay_warning_only_for_short_runs():
    short = env_lib.Env(bn_decay=0.999, max_train_steps=1000)
    long_run = env_lib.Env(bn_decay=0.999, max_train_steps=10000)
    assert "--bn_decay=0.9" in short.bn_decay_warning()
    assert long_run.bn_decay_warning() is None
    assert env_lib.Env(bn_decay=0.9, max_train_steps=100).bn_decay_warning() is None
    already_low = env_lib.Env(bn_decay=0.9, max_train_steps=10).bn_decay_warning()
    assert "train longer or lower --bn_decay" in already_low and "0.9 or lower" not in already_low


def schedule_env(kind, warmup_steps=0, **extra):
    fields = dict(lr_decay_type=kind, learning_rate=0.8, end_learning_rate=0.0,
                  warmup_steps=warmup_steps, max_train_steps=1000, decay_factor=0.94,
                  decay_steps=100)
    fields.update(extra)
    return env_lib.Env(**fields)


def evaluate_schedule(env, steps):
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        lr = optimization.learning_rate(env, step)
        with tf.Session() as sess:
            return np.array([sess.run(lr, {step: s}) for s in steps])


STEPS = [0, 1, 49, 50, 51, 100, 250, 499, 500, 999, 1000]


def closed_form(kind, step, warmup, peak=0.8, end=0.0, total=1000):
    if step < warmup:
        return peak * step / warmup
    t = min((step - warmup) / float(total - warmup), 1.0)
    if kind == "fixed":
        return peak
    if kind == "exponential":
        return peak * 0.94 ** math.floor((step - warmup) / 100.0)
    if kind == "polynomial":
        return (peak - end) * (1 - t) + end
    return (peak - end) * 0.5 * (1 + math.cos(math.pi * t)) + end


@pytest.mark.parametrize("kind", env_lib.LR_DECAY_TYPES)
@pytest.mark.parametrize("warmup", [0, 50])
def test_learning_rate_schedules_match_closed_forms(kind, warmup):
    got = evaluate_schedule(schedule_env(kind, warmup), STEPS)
    want = [closed_form(kind, s, warmup) for s in STEPS]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_cosine_reaches_end_learning_rate():
    got = evaluate_schedule(schedule_env("cosine", 10, end_learning_rate=0.01), [10, 1000])
    np.testing.assert_allclose(got, [0.8, 0.01], rtol=1e-5)


@pytest.mark.parametrize("name, cls", [("sgd", "GradientDescentOptimizer"),
                                       ("momentum", "MomentumOptimizer"),
                                       ("rmsprop", "RMSPropOptimizer"),
                                       ("adam", "AdamOptimizer")])
def test_optimizers(name, cls):
    env = env_lib.Env(optimizer_name=name, momentum=0.9, rmsprop_decay=0.9, opt_epsilon=1.0)
    assert type(optimization.build_optimizer(env, 0.1)).__name__ == cls


def test_label_smoothing_loss_closed_form():
    env = env_lib.Env(num_classes=4, label_smoothing=0.1)
    with tf.Graph().as_default():
        logits = tf.constant([[2.0, 0.0, 0.0, 0.0]])
        loss = optimization.classification_loss(env, logits, tf.constant([0]))
        with tf.Session() as sess:
            value = sess.run(loss)
    log_p = np.log(np.exp([2.0, 0, 0, 0]) / np.exp([2.0, 0, 0, 0]).sum())
    target = np.array([0.9 + 0.025, 0.025, 0.025, 0.025])
    assert abs(value - float(-(target * log_p).sum())) < 1e-5


def test_env_fields_are_declared_and_misspellings_fail(tiny_dataset):
    env = env_lib.load_env(flag_values(dataset_dir=tiny_dataset, batch_size=4,
                                             max_train_steps=5, train_image_size=32),
                                 environ={})
    declared = [field.name for field in env_lib.FIELDS]
    assert len(declared) == len(set(declared))
    for name in declared:  # from_flags sets every declared field
        getattr(env, name)
    with pytest.raises(AttributeError):
        env.trian_dir  # noqa: B018, a misspelt read
    with pytest.raises(AttributeError):
        env.trian_dir = "elsewhere"
    with pytest.raises(TypeError, match="no field bn_decy"):
        env_lib.Env(bn_decy=0.9)
    with pytest.raises(AttributeError):  # declared but not given: an error, not None
        env_lib.Env(bn_decay=0.9).max_train_steps


def test_every_train_flag_is_consumed_by_from_flags():
    """Each flag env.py defines is copied by a FIELDS row or read in env.py by name."""
    source = open(env_lib.__file__).read()
    copied = set(field.flag for field in env_lib.FIELDS if field.flag)
    defined = [flag.name for flag in flags.FLAGS.get_flags_for_module(env_lib.__name__)]
    assert len(defined) >= 59
    assert [name for name in defined
            if name not in copied and "f.%s" % name not in source] == []


def test_graph_settings_leave_out_only_the_loop(tiny_dataset):
    env = env_lib.load_env(flag_values(dataset_dir=tiny_dataset, batch_size=4,
                                             max_train_steps=5, train_image_size=32),
                                 environ={})
    shaping = set(name for name, _ in env.graph_settings())
    assert set(field.name for field in env_lib.FIELDS) - shaping == {
        "train_dir", "over_dump_path", "log_every_n_steps", "eval_every_steps",
        "save_checkpoints_steps", "save_checkpoints_secs", "verbose", "preflight",
        "restore_dry_run", "graph_cache_dir", "allow_fresh_start",
        # Ascend's session options and HCCL's fusion: the graph stays the same
        "op_compiler_cache_mode", "op_compiler_cache_dir", "hccl_timeout", "profiling_dir",
        "allreduce_split"}


def test_describe_counts_every_replica():
    """One process on two GPUs (--num_gpus=2): 2 replicas, not the 1 rank."""
    from tests.flag_helpers import imagenet_facts, parse_train_flags
    f = parse_train_flags("--dataset_dir=/nowhere", "--max_epoch=1", "--num_gpus=2",
                          "--device=gpu")
    facts = imagenet_facts(device="gpu")._replace(visible_gpus=2)
    env = env_lib.Env.from_flags(f, facts, {})
    assert (env.rank_size, env.local_replicas) == (1, 2)
    assert "batch=32 x 2 devices = 64," in env.describe()
