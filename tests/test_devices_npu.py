"""The Ascend path, wired against the npu_bridge stand-in in tests/npu_stub (the real
one installs only in Huawei's image; the stand-in follows its sources, see its README):
what NPURunConfig, NPUEstimator, the optimizers and the loss-scale managers are given, the
hooks the estimator ends up with, a run's iterations_per_loop loop, and that
tf.distribute stays out of it."""
import json
import logging
import os
import re
import sys

import numpy as np
import pytest

import env as env_lib
import estimator_impl
from tests.cli_helpers import ROOT, run_python
from tests.conftest import ListHandler, STUB
from tests.qat_checks import LOGITS, assert_ranges_learned, changed, moving_statistics
from tests.run_helpers import model_fn_for, train
from tests.test_env_schedules import flag_values
from utils.errors import UserError
from utils.tf_compat import tf

PROGRESS_STEP = re.compile(r"^step:(\d+) ")


def two_device_rank_table(path):
    table = {"status": "completed", "group_count": "1", "group_list": [{
        "group_name": "hccl_world_group", "device_count": "2", "instance_count": "2",
        "instance_list": [
            {"pod_name": str(i), "server_id": "10.0.0.1", "rank_id": str(i),
             "devices": [{"device_id": str(i), "device_ip": "192.168.10%d.101" % i}]}
            for i in range(2)]}]}
    with open(path, "w") as handle:
        json.dump(table, handle)
    return path


def npu_env(dataset, train_dir, environ, **overrides):
    values = dict(dataset_dir=dataset, train_dir=str(train_dir), device="npu",
                  model_name="mobilenet_v2_035", train_image_size=32, batch_size=4,
                  max_train_steps=4, iterations_per_loop=2)
    values.update(overrides)
    return env_lib.load_env(flag_values(**values), environ)


def records(stub, api):
    return [r["arguments"] for r in stub.RECORDS if r["api"] == api]


def build_training_graph(model, estimator=None):
    """model_fn in TRAIN mode on a real batch shape, in a fresh graph: ours, or with
    ``estimator`` the one NPUEstimator wraps around it (which adds its hooks)."""
    with tf.Graph().as_default():
        images = tf.zeros([model.env.batch_size, 32, 32, 3])
        labels = tf.zeros([model.env.batch_size], tf.int32)
        if estimator is None:
            return model(images, labels, tf.estimator.ModeKeys.TRAIN)
        tf.train.get_or_create_global_step()  # the Estimator makes it before model_fn
        return estimator.model_fn(images, labels, tf.estimator.ModeKeys.TRAIN,
                                  estimator.config)


def two_ranks(tmp_path, monkeypatch, rank_id):
    """The environment of rank ``rank_id`` of 2, in os.environ too (npu_bridge reads it)."""
    table = two_device_rank_table(str(tmp_path / "2p.json"))
    environ = {"RANK_SIZE": "2", "RANK_ID": str(rank_id), "DEVICE_ID": str(rank_id),
               "RANK_TABLE_FILE": table}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


def test_two_rank_wiring(npu_bridge, npu_dataset, tmp_path, monkeypatch):
    environ = two_ranks(tmp_path, monkeypatch, 1)
    env = npu_env(npu_dataset, tmp_path / "train", environ)
    model = model_fn_for(env)
    estimator = model.device.build_estimator(estimator_impl.estimator_model_fn(model))
    spec = build_training_graph(model, estimator)

    config, = records(npu_bridge, "NPURunConfig")
    assert config["precision_mode"] == "allow_mix_precision"
    assert config["hcom_parallel"] is True and config["enable_data_pre_proc"] is True
    assert config["iterations_per_loop"] == 2
    # A checkpoint every epoch, rounded down to whole loops of 2 steps: 3 -> 2.
    assert (env.steps_per_epoch, config["save_checkpoints_steps"]) == (3, 2)
    # Rank 1 never writes into the shared train_dir, nor summaries.
    assert config["model_dir"] == os.path.join(str(tmp_path / "train"), "rank_1")
    assert config["save_summary_steps"] == 0 and config["log_step_count_steps"] is None
    assert records(npu_bridge, "NPUEstimator")[0]["train_distribute"] is None
    assert records(npu_bridge, "NPUDistributedOptimizer") == [
        {"optimizer": "MomentumOptimizer", "is_weight_update_sharding": False, "name": None}]
    scaler, = records(npu_bridge, "NPULossScaleOptimizer")
    assert scaler["opt"] == "NPUDistributedOptimizer" and scaler["is_distributed"] is True
    assert scaler["loss_scale_manager"] == {
        "type": "ExponentialUpdateLossScaleManager",
        "arguments": {"init_loss_scale": 2 ** 32, "incr_every_n_steps": 1000,
                      "decr_every_n_nan_or_inf": 2, "incr_ratio": 2, "decr_ratio": 0.5}}
    # NPUEstimator broadcasts by itself when RANK_SIZE > 1: once, ours adds none. Its
    # saver hook is among every rank's training hooks, into this rank's own folder.
    assert records(npu_bridge, "NPUBroadcastGlobalVariablesHook") == [
        {"root_rank": 0, "index": "1"}]
    assert [type(h).__name__ for h in spec.training_hooks] == [
        "NPUBroadcastGlobalVariablesHook", "NPUCheckpointSaverHook", "SetIterationsVarHook",
        "DeviceLoop", "TrainLoggerHook", "StateDigestHook", "RankAgreementHook"]
    assert records(npu_bridge, "NPUCheckpointSaverHook") == [
        {"checkpoint_dir": config["model_dir"], "save_secs": None, "save_steps": 2}]
    assert records(npu_bridge, "NPUSaver") == [{"max_to_keep": 1}]
    assert spec.train_op.name == "IterationOp"
    assert env.global_batch == 8 and env.device_id == "1"


@pytest.mark.slow
def test_a_two_rank_run_loops_and_broadcasts_once(npu_bridge, npu_dataset, tmp_path,
                                                  monkeypatch):
    """Rank 0 of 2 trains 4 steps in loops of 2 on the stand-in: one broadcast when the
    session starts, the progress line at every loop (steps 2 and 4, never 1 or 3), and
    NPUCheckpointSaverHook's checkpoints in train_dir (step 0 at start: TensorFlow's
    saver hook, not ours, runs on Ascend)."""
    environ = two_ranks(tmp_path, monkeypatch, 0)
    train_dir = str(tmp_path / "train")
    env = npu_env(npu_dataset, train_dir, environ, iterations_per_loop=2, max_train_steps=4,
                  save_checkpoints_steps=4, log_every_n_steps=1, learning_rate=0.01)
    log = logging.getLogger("test_devices_npu")
    lines = ListHandler()
    log.handlers[:] = [lines]
    log.setLevel(logging.INFO)
    train(env, log)
    assert [int(m.group(1)) for m in map(PROGRESS_STEP.match, lines.lines) if m] == [2, 4]
    assert len(records(npu_bridge, "NPUBroadcastGlobalVariablesHook")) == 1
    assert records(npu_bridge, "NPUBroadcastGlobalVariablesHook.run") == [{"root_rank": 0}]
    state = tf.train.get_checkpoint_state(train_dir)
    assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["0", "4"]
    reader = tf.train.load_checkpoint(state.model_checkpoint_path)
    assert reader.get_tensor("global_step") == 4 and reader.get_tensor("steps_run") == 4
    assert reader.get_tensor("loss_scale") == 2.0 ** 32  # the dynamic manager's variable


def test_save_checkpoints_secs_with_several_ranks_is_refused(npu_bridge, npu_dataset,
                                                             tmp_path, monkeypatch):
    environ = two_ranks(tmp_path, monkeypatch, 0)
    env = npu_env(npu_dataset, tmp_path / "train", environ, save_checkpoints_secs=60)
    with pytest.raises(UserError, match="use --save_checkpoints_steps"):
        model_fn_for(env)


@pytest.mark.parametrize("overrides, manager", [
    (dict(loss_scale="1024"), {"type": "FixedLossScaleManager",
                               "arguments": {"loss_scale": 1024.0,
                                             "enable_overflow_check": True}}),
    (dict(precision_mode="force_fp32"), None),
    (dict(loss_scale="none"), None),
])
def test_one_rank_loss_scaling(npu_bridge, npu_dataset, tmp_path, overrides, manager):
    env = npu_env(npu_dataset, tmp_path / "train", {}, **overrides)
    build_training_graph(model_fn_for(env))
    assert records(npu_bridge, "NPUDistributedOptimizer") == []
    assert records(npu_bridge, "NPUBroadcastGlobalVariablesHook") == []
    scalers = records(npu_bridge, "NPULossScaleOptimizer")
    assert [s["loss_scale_manager"] for s in scalers] == ([manager] if manager else [])


def test_overflow_dump_config_and_job_id(npu_bridge, npu_dataset, tmp_path):
    env = npu_env(npu_dataset, tmp_path / "train", {}, over_dump=True)
    model = model_fn_for(env)
    model.device.build_estimator(estimator_impl.estimator_model_fn(model))
    config, = records(npu_bridge, "NPURunConfig")
    assert config["model_dir"] == str(tmp_path / "train")
    dump_path = os.path.join(str(tmp_path / "train"), "overflow_dump")
    assert config["dump_config"]["arguments"]["enable_dump_debug"] is True
    assert config["dump_config"]["arguments"]["dump_path"] == dump_path
    assert os.path.isdir(dump_path)  # tf_adapter refuses a dump_path that is no folder
    # NPUEstimator refuses to start without a job: a one-device run gets the launcher's.
    assert os.environ["JOB_ID"] == "10087"


@pytest.mark.parametrize("environ, fragment", [
    ({"RANK_SIZE": "2", "RANK_ID": "0"}, "needs RANK_TABLE_FILE"),
    ({"RANK_SIZE": "4", "RANK_ID": "0", "RANK_TABLE_FILE": "TABLE"}, "RANK_SIZE=4"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'},
     "unset TF_CONFIG"),
    ({"CM_WORKER_SIZE": "2"}, "unset CM_WORKER_SIZE"),
])
def test_npu_environment_mistakes(npu_bridge, npu_dataset, tmp_path, environ, fragment):
    table = two_device_rank_table(str(tmp_path / "2p.json"))
    environ = {k: v.replace("TABLE", table) for k, v in environ.items()}
    with pytest.raises(UserError, match=fragment):
        npu_env(npu_dataset, tmp_path / "train", environ)


@pytest.mark.slow
def test_train_py_on_the_stand_in(npu_dataset, tmp_path, monkeypatch):
    """train.py --device=npu end to end, without JOB_ID (as run_1p.sh starts it): the
    stand-in's Estimator trains on the CPU, 2 steps per session.run."""
    monkeypatch.delenv("JOB_ID", raising=False)  # Ascend machines often export one
    record = str(tmp_path / "records.jsonl")
    out = run_python("train.py", "--dataset_dir=" + npu_dataset, "--device=npu",
                     "--train_dir=" + str(tmp_path / "train"), "--model_name=mobilenet_v2_035",
                     "--train_image_size=32", "--batch_size=4", "--max_train_steps=4",
                     "--iterations_per_loop=2", "--learning_rate=0.01", "--log_every_n_steps=1",
                     env={"PYTHONPATH": STUB + os.pathsep + ROOT, "NPU_STUB_RECORD": record})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "device: npu (rank 0 of 1, device 0), precision_mode allow_mix_precision" in out.stdout
    logged = [int(step) for step in re.findall(r"^step:(\d+) ", out.stdout, re.M)]
    assert logged == [2, 4]
    assert tf.train.latest_checkpoint(str(tmp_path / "train")).endswith("model.ckpt-4")
    with open(record) as handle:
        apis = [json.loads(line)["api"] for line in handle]
    assert apis[:2] == ["NPURunConfig", "NPUEstimator"] and "NPULossScaleOptimizer" in apis
    assert "NPUCheckpointSaverHook" in apis and "NPUBroadcastGlobalVariablesHook" not in apis


def test_default_checkpoint_interval_is_a_whole_number_of_loops(npu_bridge, npu_dataset,
                                                               tmp_path):
    # 24 images / batch 4 = 6 steps per epoch: on npu every save must end a loop.
    assert npu_env(npu_dataset, tmp_path, {}, iterations_per_loop=4).save_checkpoints_steps == 4
    assert npu_env(npu_dataset, tmp_path, {}, iterations_per_loop=10).save_checkpoints_steps == 10
    assert npu_env(npu_dataset, tmp_path, {}, iterations_per_loop=3).save_checkpoints_steps == 6
    assert npu_env(npu_dataset, tmp_path, {}, device="cpu",
                   iterations_per_loop=4).save_checkpoints_steps == 6


@pytest.mark.slow
def test_quantization_aware_training_on_the_stand_in(npu_bridge, npu_dataset, tmp_path):
    """QAT from scratch through the NPU path (NPUEstimator, device loops of 2, mixed
    precision's loss scaling), one loop, then resumed for one more: the quantization step
    counts every step of every loop and goes on from the checkpoint, so
    --freeze_bn_delay=3 holds the batch-norm statistics through the resumed loop, after
    the first loop moved them; the ranges are learned ones."""
    train_dir = str(tmp_path / "train")
    statistics = []
    for steps in (2, 4):
        env = npu_env(npu_dataset, train_dir, {}, quantize_delay=1, freeze_bn_delay=3,
                      save_checkpoints_steps=2, learning_rate=0.01,
                      learning_rate_decay_type="fixed", max_train_steps=steps)
        train(env, logging.getLogger("test_devices_npu"))
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(train_dir))
        assert reader.get_tensor("global_step") == steps
        assert reader.get_tensor("fake_quantization_step") == steps
        statistics.append(moving_statistics(reader))
    initial = moving_statistics(tf.train.load_checkpoint(os.path.join(train_dir,
                                                                      "model.ckpt-0")))
    assert changed(initial, statistics[0]) == sorted(initial)  # steps 1-2 updated each
    assert changed(statistics[0], statistics[1]) == []  # steps 3-4 held them
    # No step was skipped, so step 4 ended with Momentum's w -= lr * accumulation: the
    # weights it read were w + lr * accumulation.
    assert reader.get_tensor("steps_run") == 4
    read = (reader.get_tensor(LOGITS + "weights")
            + np.float32(0.01) * reader.get_tensor(LOGITS + "weights/Momentum"))
    assert_ranges_learned(reader, read, steps=4)
    assert len(records(npu_bridge, "NPUEstimator")) == 2


# ----------------------------------------------------------------------------- evaluation

def ascend_nodes(folder, *names):
    """A stand-in /dev holding ``names`` (empty files) for devices.placement to list."""
    os.makedirs(folder)
    for name in names:
        open(os.path.join(folder, name), "w").close()
    return folder


def test_the_eval_device_needs_npu_bridge_and_a_visible_device(npu_bridge, tmp_path,
                                                               monkeypatch):
    from devices import placement
    bare = ascend_nodes(str(tmp_path / "bare"), "davinci_manager", "devmm_svm", "hisi_hdc")
    chips = ascend_nodes(str(tmp_path / "chips"), "davinci_manager", "davinci3", "davinci0")
    assert placement.visible_ascend_devices(bare) == []
    assert placement.visible_ascend_devices(chips) == ["davinci0", "davinci3"]
    assert placement.visible_ascend_devices(str(tmp_path / "absent")) == []
    assert placement.resolve_eval_device("auto", chips) == ("npu", None)
    assert placement.resolve_eval_device("npu", chips) == ("npu", None)
    assert placement.resolve_eval_device("host", chips) == ("host", None)
    assert placement.resolve_eval_device("auto", bare) == (
        "host", "no Ascend device is visible (no %s/davinci<N>)" % bare)
    with pytest.raises(UserError, match=r"^--eval_device=npu but no Ascend device is "
                                        r"visible .*, or pass --eval_device=host$"):
        placement.resolve_eval_device("npu", bare)
    monkeypatch.setitem(sys.modules, "npu_bridge", None)  # as where it is not installed
    assert placement.resolve_eval_device("auto", chips) == (
        "host", "npu_bridge does not import")
    with pytest.raises(UserError, match="^--eval_device=npu but npu_bridge does not import; "
                                        "run inside Ascend's TensorFlow image"):
        placement.resolve_eval_device("npu", chips)
    assert placement.ascend_device_id({"DEVICE_ID": "2", "ASCEND_DEVICE_ID": "5"}) == "5"
    assert placement.ascend_device_id({"DEVICE_ID": "2"}) == "2"
    assert placement.ascend_device_id({}) == "0"


@pytest.fixture
def npu_init_undone(npu_bridge, monkeypatch):
    """Lets a test import the stand-in's npu_bridge.npu_init, whose import replaces the
    session constructors as the real one does: they are put back afterwards."""
    from tensorflow.python.client import session as session_lib
    for cls in (session_lib.Session, session_lib.InteractiveSession):
        monkeypatch.setattr(cls, "__init__", cls.__init__)
    return npu_bridge


def test_the_npu_eval_session_config_is_npu_bridges(npu_init_undone, tmp_path):
    """Field by field, our NPU evaluation config is npu_bridge's own for a session it does
    not make itself (npu_init.npu_config_proto), plus three options of NpuOptimizer:
    use_off_line as NPUEstimator sets it, graph_run_mode 0 (inference), and the
    precision_mode asked for."""
    from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig
    from tensorflow.python.client import session as session_lib

    from devices import inference
    original_init = session_lib.Session.__init__
    from npu_bridge import npu_init  # replaces it (npu_init_undone puts it back)
    from npu_bridge.estimator.npu import npu_config, npu_estimator
    assert session_lib.Session.__init__ is not original_init
    ours = inference.npu_inference_config("must_keep_origin_dtype")
    theirs = npu_init.npu_config_proto()

    def custom_optimizers(config):
        return config.graph_options.rewrite_options.custom_optimizers
    assert [o.name for o in custom_optimizers(ours)] == ["NpuOptimizer"]
    assert [o.name for o in custom_optimizers(theirs)] == ["NpuOptimizer"]
    ours_map = custom_optimizers(ours)[0].parameter_map
    assert dict(custom_optimizers(theirs)[0].parameter_map) == {}
    assert sorted(ours_map) == ["graph_run_mode", "precision_mode", "use_off_line"]
    assert (ours_map["use_off_line"].b, ours_map["graph_run_mode"].i,
            ours_map["precision_mode"].s) == (True, 0, b"must_keep_origin_dtype")
    for field in ("remapping", "memory_optimization"):
        assert getattr(ours.graph_options.rewrite_options, field) == getattr(
            theirs.graph_options.rewrite_options, field) == RewriterConfig.OFF, field
    assert (ours.allow_soft_placement, ours.log_device_placement) == (
        theirs.allow_soft_placement, theirs.log_device_placement) == (True, False)
    assert (ours.graph_options.optimizer_options.global_jit_level
            == theirs.graph_options.optimizer_options.global_jit_level
            == tf.OptimizerOptions.OFF)
    # Nothing else differs: theirs with our three options is ours, byte for byte.
    for name in ours_map:
        custom_optimizers(theirs)[0].parameter_map[name].CopyFrom(ours_map[name])
    assert theirs == ours
    # The patched tf.Session gives every session npu_config_proto's config.
    _, kwargs = npu_config.set_npu_default_config(original_init, (), {})
    assert kwargs["config"] == npu_init.npu_config_proto()
    # use_off_line as NPUEstimator's own session has it; and the device takes our options
    # (the checks tf_adapter makes when the session starts).
    estimator_config = npu_estimator._load_graph_optimizers(
        npu_config.NPURunConfig(model_dir=str(tmp_path)))
    estimator_map = custom_optimizers(estimator_config.session_config)[0].parameter_map
    assert estimator_map["use_off_line"] == ours_map["use_off_line"]
    npu_estimator._check_session_options(ours)
    for mode in ("force_fp16", "allow_mix_precision"):
        config = inference.npu_inference_config(mode)
        assert custom_optimizers(config)[0].parameter_map["precision_mode"].s == mode.encode()
        npu_estimator._check_session_options(config)


def test_a_padded_evaluation_on_the_npu_stand_in(npu_bridge, thousand_and_one, tmp_path,
                                                 monkeypatch):
    """The evaluator's flags on an Ascend host (npu_bridge importable, a /dev/davinci<N>)
    choose the NPU: its session carries devices.inference's config, the 1,001 images of a
    padded evaluation count once each as on the host, the results say where they were
    computed, and npu_bridge.npu_init is never imported (it would reroute every session
    of the process)."""
    from devices import inference, placement
    from evaluation.evaluator import Evaluator, record_result, result_line
    from tensorflow.python.client import session as session_lib
    from tests.cli_helpers import evaluator_config
    from tests.test_evaluator import assert_scores_every_image_once
    monkeypatch.setattr(placement, "DEVICE_NODE_DIR",
                        ascend_nodes(str(tmp_path / "dev"), "davinci_manager", "davinci0"))
    monkeypatch.setenv("ASCEND_DEVICE_ID", "0")
    original_init = session_lib.Session.__init__
    split = thousand_and_one
    config = evaluator_config(
        checkpoint_path=split["checkpoint"], dataset_dir=split["records"],
        model_name="mobilenet_v2_035", num_classes=7, eval_image_size=32, batch_size=64,
        data_threads=1, eval_dir=str(tmp_path / "eval"))
    assert (config.device, config.precision_mode) == ("npu", "must_keep_origin_dtype")
    assert inference.describe(config.device, config.precision_mode) == (
        "on the NPU (device 0, precision_mode must_keep_origin_dtype, graph_run_mode 0)")
    with Evaluator(config, logging.getLogger("test_devices_npu")) as evaluator:
        result = evaluator.evaluate(split["checkpoint"])
        session = evaluator._kept.session
        assert session._config == inference.npu_inference_config("must_keep_origin_dtype")
    assert_scores_every_image_once(result, split)
    assert (result["device"], result["precision_mode"]) == ("npu", "must_keep_origin_dtype")
    assert result_line(result).endswith(
        " images=1001 loss=%.4f device=npu precision_mode=must_keep_origin_dtype"
        % result["loss"])
    record_result(config.eval_dir, result)
    with open(os.path.join(config.eval_dir, "eval_results.json")) as handle:
        recorded = json.load(handle)["results"][0]
    assert (recorded["device"], recorded["precision_mode"]) == ("npu",
                                                                "must_keep_origin_dtype")
    assert "npu_bridge.npu_init" not in sys.modules
    assert [r for r in npu_bridge.RECORDS if r["api"] == "npu_init"] == []
    assert session_lib.Session.__init__ is original_init


def test_where_a_host_session_runs_is_said_as_it_is(monkeypatch):
    """The host is the CPU unless TensorFlow sees a GPU, which it then places ops on."""
    from devices import inference, placement
    monkeypatch.setattr(placement, "visible_gpu_count", lambda: 0)
    assert inference.describe("host") == "on the host CPU"
    monkeypatch.setattr(placement, "visible_gpu_count", lambda: 2)
    assert inference.describe("host") == (
        "on the host, where TensorFlow places it (2 GPUs visible)")
    assert inference.describe("npu", "force_fp16", {"DEVICE_ID": "3"}) == (
        "on the NPU (device 3, precision_mode force_fp16, graph_run_mode 0)")


def test_importing_npu_init_reroutes_every_session(npu_init_undone):
    """Why the pipeline must never import it (the stand-in does what the real one does):
    afterwards a plain tf.Session, made with no config, carries NpuOptimizer too."""
    from npu_bridge import npu_init
    assert [r["api"] for r in npu_init_undone.RECORDS] == ["npu_init"]
    with tf.Graph().as_default(), tf.Session() as session:
        config = session._config
    assert config == npu_init.npu_config_proto()


@pytest.mark.parametrize("args, line", [
    (["--eval_device=npu"], "--eval_device=npu but no Ascend device is visible"),
    (["--eval_device=npu", "--ledger"], "--ledger measures on the host CPU; drop "
                                        "--eval_device=npu"),
])
def test_eval_device_mistakes_on_the_stand_in(npu_bridge, tmp_path, monkeypatch, args,
                                              line):
    """With npu_bridge importable but no Ascend device node, or with --ledger: one line."""
    from devices import placement
    from evaluation import config as config_lib
    from evaluation import sources
    from tests.cli_helpers import evaluator_flags
    monkeypatch.setattr(placement, "DEVICE_NODE_DIR", ascend_nodes(str(tmp_path / "dev")))
    f = evaluator_flags("--checkpoint_path=" + str(tmp_path), "--dataset_dir=/nowhere",
                        *args)
    with pytest.raises(UserError) as err:
        config_lib.check_flags(f)
        sources.read_sources(f)
    assert str(err.value).startswith(line)
