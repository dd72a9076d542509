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


# ----------------------------------------------------------------------------- releases

@pytest.mark.parametrize("branch, parameters, saver_keeps", [
    ("master", 76, True), ("r3.2.0", 75, False), ("r1.11.0", 68, False)])
def test_each_branch_shows_its_own_signatures(npu_bridge, tmp_path, monkeypatch, branch,
                                              parameters, saver_keeps):
    """inspect sees the branch's NPURunConfig (76 / 75 / 68 parameters, counted in the
    real npu_config.py) and NPUSaver: max_to_keep from r1.14.0 on, NPUSaver() before and on
    r3.x, which the estimator then builds without keep_checkpoint_max."""
    import inspect
    monkeypatch.setenv("NPU_STUB_BRANCH", branch)
    from npu_bridge.estimator.npu import npu_config, npu_saver
    names = list(inspect.signature(npu_config.NPURunConfig.__init__).parameters)
    assert names[:3] == ["self", "iterations_per_loop", "profiling_config"]
    assert len(names) - 1 == parameters
    assert ("deterministic" in names) == (branch != "r1.11.0")
    init = vars(npu_saver.NPUSaver)["__init__"]
    assert ("max_to_keep" in inspect.signature(init).parameters) == saver_keeps
    hooks = training_hooks(npu_estimator(npu_bridge, tmp_path, monkeypatch,
                                         keep_checkpoint_max=2))
    assert "NPUCheckpointSaverHook" in hooks
    saver, = [r["arguments"] for r in npu_bridge.RECORDS if r["api"] == "NPUSaver"]
    assert saver == {"max_to_keep": 2 if saver_keeps else 5}


def ge_options(stub):
    """The options of the last "GePlugin.Init" record."""
    return [r["arguments"] for r in stub.RECORDS if r["api"] == "GePlugin.Init"][-1]


@pytest.mark.parametrize("branch, written", [("master", None),
                                              ("r1.11.0", "allow_fp32_to_fp16")])
def test_the_precision_mode_without_one_given(npu_bridge, tmp_path, monkeypatch, branch,
                                              written):
    """r1.11.0's NPUEstimator writes allow_fp32_to_fp16 when no precision_mode is given;
    from r1.13.0 none is written and GE's own default applies. r1.11.0 passes any text on
    to GE, whose modes then were five: a bf16 mode stops the run there."""
    monkeypatch.setenv("NPU_STUB_BRANCH", branch)
    training_hooks(npu_estimator(npu_bridge, tmp_path / "a", monkeypatch))
    assert ge_options(npu_bridge).get("ge.exec.precision_mode") == written
    bf16 = npu_estimator(npu_bridge, tmp_path / "b", monkeypatch,
                         precision_mode="allow_mix_precision_bf16")
    if branch == "r1.11.0":
        with pytest.raises(tf.errors.InvalidArgumentError, match="allow_mix_precision_bf16"):
            training_hooks(bf16)
    else:
        training_hooks(bf16)


def test_aoe_mode_before_r1_12_runs_one_step_per_loop(npu_bridge, monkeypatch):
    monkeypatch.setenv("NPU_STUB_BRANCH", "r1.11.0")
    from npu_bridge.estimator.npu import npu_config
    assert npu_config.NPURunConfig(iterations_per_loop=10).iterations_per_loop == 10
    monkeypatch.setenv("AOE_MODE", "")  # set at all
    assert npu_config.NPURunConfig(iterations_per_loop=10).iterations_per_loop == 1


# ----------------------------------------------------------------------------- environment

@pytest.mark.parametrize("environ, expected", [
    ({}, {"ge.exec.deviceId": "0", "ge.exec.isUseHcom": "0"}),
    ({"ASCEND_DEVICE_ID": "3", "DEVICE_ID": "1"}, {"ge.exec.deviceId": "3"}),
    ({"DEVICE_ID": "1"}, {"ge.exec.deviceId": "1"}),
    ({"RANK_TABLE_FILE": "t.json", "RANK_ID": "1"},
     {"ge.exec.isUseHcom": "1", "ge.exec.rankTableFile": "t.json", "ge.exec.rankId": "1"}),
    ({"RANK_TABLE_FILE": "t.json", "RANK_ID": "1", "POD_NAME": "job-7f9c"},
     {"ge.exec.rankTableFile": "t.json", "ge.exec.podName": "job-7f9c",
      "ge.exec.rankId": None}),
    ({"RANK_TABLE_FILE": "t.json", "RANK_ID": "1", "CM_CHIEF_IP": "10.0.0.9"},
     {"ge.exec.isUseHcom": "0", "ge.exec.rankTableFile": None}),
    ({"AOE_MODE": "2"}, {"ge.jobType": "2", "ge.buildMode": "tuning"}),
])
def test_what_the_environment_hands_ge(npu_bridge, tmp_path, monkeypatch, environ, expected):
    """tf_adapter's GePlugin::Init as the stand-in emulates it: ASCEND_DEVICE_ID beats
    DEVICE_ID, POD_NAME replaces RANK_ID as the rank's identity in the table, CM_CHIEF_IP
    beside RANK_TABLE_FILE leaves HCCL without its table, AOE_MODE builds for tuning."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    training_hooks(npu_estimator(npu_bridge, tmp_path, monkeypatch))
    options = ge_options(npu_bridge)
    assert dict((name, options.get(name)) for name in expected) == expected


def test_restore_from_warm_starts_a_fresh_model_dir(npu_bridge, tmp_path, monkeypatch):
    """NPUEstimator hands LOCAL_CHECKPOINT_DIR, else RESTORE_FROM, to tf.estimator as
    warm_start_from: a model_dir without a checkpoint starts from it; RESTORE_FROM set but
    empty stops the constructor (tf.estimator refuses an empty warm-start path)."""
    source = npu_estimator(npu_bridge, tmp_path / "source", monkeypatch)
    source.train(features_and_labels(2), max_steps=3)
    trained = source.get_variable_value("weight")
    monkeypatch.setenv("RESTORE_FROM", str(tmp_path / "source"))
    fresh = npu_estimator(npu_bridge, tmp_path / "fresh", monkeypatch)
    assert fresh._warm_start_settings.ckpt_to_initialize_from == str(tmp_path / "source")
    fresh.train(features_and_labels(2), max_steps=3)  # trains 3 steps from ``trained``
    initial = tf.train.load_checkpoint(str(tmp_path / "fresh" / "model.ckpt-0"))
    assert (initial.get_tensor("weight") == trained).all() and trained.any()
    from npu_bridge.estimator.npu import npu_common
    monkeypatch.setattr(npu_common.NPUBasics, "_instance", None)  # a new process's job
    monkeypatch.setenv("LOCAL_CHECKPOINT_DIR", str(tmp_path / "other"))
    assert npu_estimator(npu_bridge, tmp_path / "x", monkeypatch)._warm_start_settings \
        .ckpt_to_initialize_from == str(tmp_path / "other")
    monkeypatch.delenv("LOCAL_CHECKPOINT_DIR")
    monkeypatch.setattr(npu_common.NPUBasics, "_instance", None)
    monkeypatch.setenv("RESTORE_FROM", "")
    with pytest.raises(ValueError, match="ckpt_to_initialize_from"):  # tf.estimator's
        npu_estimator(npu_bridge, tmp_path / "y", monkeypatch)


def test_session_options_reach_ge(npu_bridge, tmp_path, monkeypatch):
    from npu_bridge.estimator.npu import npu_config
    profiling = npu_config.ProfilingConfig(enable_profiling=True,
                                           profiling_options='{"output":"/p"}')
    training_hooks(npu_estimator(npu_bridge, tmp_path, monkeypatch, hccl_timeout=2720,
                                 op_compiler_cache_mode="enable",
                                 op_compiler_cache_dir="/cache", profiling_config=profiling))
    options = ge_options(npu_bridge)
    assert (options["ge.exec.hcclExecuteTimeOut"], options["ge.op_compiler_cache_mode"],
            options["ge.op_compiler_cache_dir"], options["ge.exec.profilingMode"],
            options["ge.exec.profilingOptions"]) == (
                "2720", "enable", "/cache", "1", '{"output":"/p"}')


def test_hccls_split_api_checks_as_the_real_one(npu_bridge):
    from hccl.split import api
    api.set_split_strategy_by_size([96.54, 3.46])
    api.set_split_strategy_by_idx([107, 159], "hccl_world_group")
    assert [(r["api"], r["arguments"]) for r in npu_bridge.RECORDS] == [
        ("hccl.set_split_strategy_by_size",
         {"dataSizeList": [96.54, 3.46], "group": "hccl_world_group"}),
        ("hccl.set_split_strategy_by_idx", {"idxList": [107, 159], "group": "hccl_world_group"})]
    for call, match in ((lambda: api.set_split_strategy_by_size([60, 30]), "not 100"),
                        (lambda: api.set_split_strategy_by_idx([5, 5]), "not ascending"),
                        (lambda: api.set_split_strategy_by_idx((1, 2)), "python list"),
                        (lambda: api.set_split_strategy_by_idx([1], ""), "empty")):
        with pytest.raises(ValueError, match=match):
            call()
