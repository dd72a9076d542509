"""The npu_bridge stand-in (tests/npu_stub) against what the real tf_adapter does on the host
(README.md there names the source of each behaviour): real signatures only, NPURunConfig's
defaults and checks, the hooks NPUEstimator adds, the iterations_per_loop loop, its saver,
JOB_ID, and what the device refuses. Tiny models of one variable: each test takes a second
or two."""
import os

import pytest

from utils.tf_compat import tf

BRANCHES = ("master", "r3.2.0")


def features_and_labels(batch, drop_remainder=True):
    """Batch k holds the images (i, i, i) and labels i for i in [batch*k, batch*(k+1))."""
    def input_fn():
        numbers = tf.data.Dataset.range(10 ** 6).map(
            lambda i: (tf.fill([3], tf.cast(i, tf.float32)), tf.cast(i, tf.int32)))
        return numbers.batch(batch, drop_remainder=drop_remainder)
    return input_fn


def model_fn(features, labels, mode, params):
    """One weight vector; last_label keeps the newest label seen, so the batches read can
    be counted."""
    weight = tf.get_variable("weight", [3], initializer=tf.zeros_initializer())
    loss = tf.reduce_mean(tf.square(features * 1e-3 - weight))
    last_label = tf.get_variable("last_label", [], tf.int32, trainable=False,
                                 initializer=tf.constant_initializer(-1))
    global_step = tf.train.get_or_create_global_step()
    step = tf.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=global_step)
    with tf.control_dependencies([step]):
        train_op = tf.assign(last_label, tf.reduce_max(labels)).op
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


class StepRecorder(tf.train.SessionRunHook):
    """The global step after each session.run the Estimator makes."""

    def __init__(self):
        self.steps = []

    def begin(self):
        self._step = tf.train.get_global_step()

    def after_run(self, run_context, run_values):
        self.steps.append(int(run_context.session.run(self._step)))


class SaveRecorder(tf.train.CheckpointSaverListener):
    def __init__(self):
        self.steps = []

    def after_save(self, session, global_step_value):
        self.steps.append(int(global_step_value))


def npu_estimator(stub, model_dir, monkeypatch, **config):
    from npu_bridge.estimator.npu import npu_config, npu_estimator as estimator_lib
    monkeypatch.setenv("JOB_ID", "10087")
    return estimator_lib.NPUEstimator(model_fn=model_fn, config=npu_config.NPURunConfig(
        model_dir=str(model_dir), **config))


@pytest.mark.parametrize("branch", BRANCHES)
def test_only_the_real_keywords_and_defaults(npu_bridge, monkeypatch, branch):
    monkeypatch.setenv("NPU_STUB_BRANCH", branch)
    from npu_bridge.estimator.npu import npu_config, npu_optimizer
    from npu_bridge.estimator.npu import npu_loss_scale_manager as managers
    from npu_bridge.estimator.npu import npu_loss_scale_optimizer as scaling
    with pytest.raises(TypeError, match="keep_checkpoints_max"):
        npu_config.NPURunConfig(keep_checkpoints_max=3)  # a misspelling fails as it would
    config = npu_config.NPURunConfig()
    assert (config.iterations_per_loop, config.save_checkpoints_steps,
            config.keep_checkpoint_max, config.save_summary_steps,
            config.log_step_count_steps, config._hcom_parallel,
            config.enable_data_pre_proc, config.horovod_mode) == (
                1, 100, 5, 0, 100, True, True, False)
    assert config.enable_exception_dump == (0 if branch == "r3.2.0" else 2)
    if branch == "r3.2.0":
        with pytest.raises(TypeError, match="ac_parallel_enable"):
            npu_config.NPURunConfig(ac_parallel_enable="1")
    else:
        npu_config.NPURunConfig(ac_parallel_enable="1")
    with pytest.raises(TypeError):
        npu_config.NPURunConfig(iterations_per_loop=2.0)
    with pytest.raises(ValueError, match="must be positive"):
        npu_config.NPURunConfig(iterations_per_loop=0)
    with pytest.raises(ValueError):
        npu_config.NPURunConfig(save_checkpoints_steps=10, save_checkpoints_secs=60)
    with pytest.raises(ValueError, match="DumpConfig"):
        npu_config.NPURunConfig(dump_config={"dump_path": "/tmp"})
    with pytest.raises(TypeError):
        npu_config.DumpConfig(enable_overflow_dump=True)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:1"]}}')
    with pytest.raises(ValueError, match="ps mode"):
        npu_config.NPURunConfig()
    with tf.Graph().as_default():
        optimizer = tf.train.GradientDescentOptimizer(0.1)
        with pytest.raises(TypeError):
            npu_optimizer.NPUDistributedOptimizer(optimizer, average=True)
        with pytest.raises(ValueError, match="at least 1"):
            managers.FixedLossScaleManager(loss_scale=0.5)
        with pytest.raises(TypeError):
            managers.ExponentialUpdateLossScaleManager(init_loss_scale=2.0 ** 15)
        manager = managers.FixedLossScaleManager(1024)
        with pytest.raises(TypeError):
            scaling.NPULossScaleOptimizer(optimizer, manager, distributed=True)


def test_the_estimator_needs_its_config_and_a_job(npu_bridge, tmp_path, monkeypatch):
    from npu_bridge.estimator.npu import npu_config, npu_estimator as estimator_lib
    with pytest.raises(ValueError, match="NPUConfigs"):
        estimator_lib.NPUEstimator(model_fn=model_fn,
                                   config=tf.estimator.RunConfig(model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="JOB_ID"):
        estimator_lib.NPUEstimator(model_fn=model_fn, config=npu_config.NPURunConfig(
            model_dir=str(tmp_path)))


def training_hooks(estimator):
    """The training hooks NPUEstimator's model_fn returns (its own first)."""
    with tf.Graph().as_default():
        features, labels = features_and_labels(2)().make_one_shot_iterator().get_next()
        tf.train.get_or_create_global_step()
        spec = estimator.model_fn(features, labels, tf.estimator.ModeKeys.TRAIN,
                                  estimator.config)
    return [type(h).__name__ for h in spec.training_hooks]


@pytest.mark.parametrize("environ, config, broadcasts", [
    ({}, {}, 0),
    ({"RANK_SIZE": "1"}, {}, 0),
    ({"RANK_SIZE": "2", "RANK_ID": "1"}, {}, 1),
    ({"CM_WORKER_SIZE": "8"}, {}, 1),
    ({"RANK_SIZE": "2"}, dict(horovod_mode=True), 0),
])
def test_the_broadcast_hook_follows_rank_size(npu_bridge, tmp_path, monkeypatch, environ,
                                              config, broadcasts):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    hooks = training_hooks(npu_estimator(npu_bridge, tmp_path, monkeypatch,
                                         iterations_per_loop=2, **config))
    expected = ["NPUBroadcastGlobalVariablesHook"] * broadcasts + [
        "NPUCheckpointSaverHook", "SetIterationsVarHook", "DeviceLoop"]
    assert hooks == expected
    made = [r["arguments"] for r in npu_bridge.RECORDS
            if r["api"] == "NPUBroadcastGlobalVariablesHook"]
    assert made == [{"root_rank": 0, "index": environ.get("RANK_ID", "")}] * broadcasts


def test_rank_size_and_cm_worker_size_together_are_refused(npu_bridge, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK_SIZE", "2")
    monkeypatch.setenv("CM_WORKER_SIZE", "2")
    with pytest.raises(ValueError, match="cannot be configured at the same time"):
        training_hooks(npu_estimator(npu_bridge, tmp_path, monkeypatch))


@pytest.mark.parametrize("branch, kept", [("master", 1), ("r3.2.0", 3)])
def test_the_device_loop_and_the_saver(npu_bridge, tmp_path, monkeypatch, branch, kept):
    """Two session.runs of 3 steps each: hooks see the global step jump by 3, six batches
    are read, and NPUCheckpointSaverHook (given the saving listeners) saves at start and
    every 3 steps with max_to_keep from keep_checkpoint_max, but 5 on r3.2.0."""
    monkeypatch.setenv("NPU_STUB_BRANCH", branch)
    estimator = npu_estimator(npu_bridge, tmp_path, monkeypatch, iterations_per_loop=3,
                              save_checkpoints_steps=3, keep_checkpoint_max=1)
    runs, saves = StepRecorder(), SaveRecorder()
    estimator.train(features_and_labels(2), max_steps=6, hooks=[runs],
                    saving_listeners=[saves])
    assert runs.steps == [3, 6]
    assert saves.steps == [0, 3, 6]
    assert estimator.get_variable_value("last_label") == 11  # batches 0..5 of 2 labels
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert len(state.all_model_checkpoint_paths) == kept
    assert state.model_checkpoint_path.endswith("model.ckpt-6")


def test_a_dynamic_batch_is_refused_on_the_device(npu_bridge, tmp_path, monkeypatch):
    estimator = npu_estimator(npu_bridge, tmp_path / "sunk", monkeypatch)
    with pytest.raises(tf.errors.InternalError, match="static batch shape"):
        estimator.train(features_and_labels(2, drop_remainder=False), max_steps=1)
    host = npu_estimator(npu_bridge, tmp_path / "host", monkeypatch,
                         enable_data_pre_proc=False)
    host.train(features_and_labels(2, drop_remainder=False), max_steps=1)


def test_session_options_the_device_refuses(npu_bridge, tmp_path, monkeypatch):
    from npu_bridge.estimator.npu import npu_config
    bad_mode = npu_estimator(npu_bridge, tmp_path / "a", monkeypatch, precision_mode="fp16")
    with pytest.raises(tf.errors.InvalidArgumentError, match="precision_mode fp16"):
        bad_mode.train(features_and_labels(2), max_steps=1)
    missing = str(tmp_path / "no_such_folder")
    dump = npu_config.DumpConfig(enable_dump_debug=True, dump_path=missing)
    no_folder = npu_estimator(npu_bridge, tmp_path / "b", monkeypatch, dump_config=dump)
    with pytest.raises(tf.errors.InternalError, match="is not directory"):
        no_folder.train(features_and_labels(2), max_steps=1)
    os.makedirs(missing)
    options = no_folder.config.session_config.graph_options.rewrite_options
    custom, = [c for c in options.custom_optimizers if c.name == "NpuOptimizer"]
    assert custom.parameter_map["dump_path"].s.decode() == missing
    no_folder.train(features_and_labels(2), max_steps=1)
