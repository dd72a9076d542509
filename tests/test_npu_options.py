"""The Ascend run against its surroundings, on the npu_bridge stand-in: the vendor's
environment variables that would steer it are refused in one line (train.py) or cleared
(the launcher, tests/test_launcher.py); what the installed tf_adapter knows is read from
its signatures (a precision mode it lacks refused, a saver that keeps 5 checkpoints
warned of, on two stand-in branches each); the compile cache, HCCL's timeout, the
profiler and the all-reduce split reach NPURunConfig and HCCL. No training: each test
builds at most one graph."""
import json
import logging
import os

import pytest

from devices import npu_capabilities, npu_options
import estimator_impl
from tests.conftest import ListHandler
from tests.flag_helpers import train_error_line
from tests.run_helpers import model_fn_for
from tests.test_devices_npu import (build_training_graph, npu_env, records,
                                    two_device_rank_table, two_ranks)
from utils.errors import UserError


def npu_args(dataset, tmp_path, *extra):
    return ["--dataset_dir=" + dataset, "--device=npu", "--train_dir=%s" % (tmp_path / "train"),
            "--model_name=mobilenet_v2_035", "--train_image_size=32", "--batch_size=4",
            "--max_train_steps=4", "--iterations_per_loop=2"] + list(extra)


# ----------------------------------------------------------------------------- environment

ONE_RANK = {"RANK_SIZE": "1", "RANK_ID": "0"}
TWO_RANKS = {"RANK_SIZE": "2", "RANK_ID": "0", "DEVICE_ID": "0", "RANK_TABLE_FILE": "TABLE"}


@pytest.mark.parametrize("environ, line", [
    (dict(ONE_RANK, RESTORE_FROM="/ckpt/model.ckpt-9"),
     "error: RESTORE_FROM=/ckpt/model.ckpt-9 is set: npu_bridge's NPUEstimator would "
     "warm-start every rank whose model_dir holds no checkpoint from it, over --restore_path "
     "or a fresh start; unset RESTORE_FROM (to fine-tune from a checkpoint pass "
     "--restore_path=CHECKPOINT)"),
    (dict(ONE_RANK, RESTORE_FROM=""), "error: RESTORE_FROM= is set: "),
    (dict(ONE_RANK, LOCAL_CHECKPOINT_DIR="/ckpt"), "error: LOCAL_CHECKPOINT_DIR=/ckpt is set: "),
    (dict(ONE_RANK, AOE_MODE="2"),
     "error: AOE_MODE=2 is set: tf_adapter would compile every graph in AOE tuning mode "
     "instead of training (and before r1.12 run one step per loop whatever "
     "--iterations_per_loop says); unset AOE_MODE (tune with CANN's aoe tool in a run of "
     "its own)"),
    (dict(TWO_RANKS, CM_CHIEF_IP="10.0.0.9"), "error: CM_CHIEF_IP=10.0.0.9 is set: "),
    (dict(ONE_RANK, CM_CHIEF_IP="10.0.0.9"), "error: CM_CHIEF_IP=10.0.0.9 is set: "),
    (dict(ONE_RANK, CM_WORKER_SIZE="2"), "error: CM_WORKER_SIZE=2 is set: "),
    (dict(TWO_RANKS, POD_NAME="job-7f9c-0"),
     "error: POD_NAME=job-7f9c-0 is set: with RANK_TABLE_FILE tf_adapter gives HCCL this "
     "name (ge.exec.podName) instead of RANK_ID as this process's identity in the rank "
     "table; unset POD_NAME (python -m devices.launch clears it for the ranks it starts)"),
    (dict(ONE_RANK, ASCEND_DEVICE_ID="3", DEVICE_ID="0"),
     "error: ASCEND_DEVICE_ID=3 and DEVICE_ID=0 name different devices: tf_adapter trains on "
     "ASCEND_DEVICE_ID and ignores DEVICE_ID; set both to the same device or unset one"),
    (dict(ONE_RANK, AOE_MODE="1", RESTORE_FROM="/c", POD_NAME="p", RANK_TABLE_FILE="TABLE"),
     " (also: AOE_MODE, POD_NAME)"),  # before the table's other RANK_SIZE
], ids=["restore_from", "restore_from_empty", "local_checkpoint_dir", "aoe_mode",
        "cm_chief_ip_with_table", "cm_chief_ip", "cm_worker_size", "pod_name_with_table",
        "device_ids_differ", "several"])
def test_the_vendors_variables_are_refused_in_one_line(npu_bridge, npu_dataset, tmp_path,
                                                       environ, line):
    table = two_device_rank_table(str(tmp_path / "2p.json"))
    environ = dict((k, v.replace("TABLE", table)) for k, v in environ.items())
    found = train_error_line(npu_args(npu_dataset, tmp_path), environ)
    assert found is not None and "\n" not in found, found
    assert found.startswith(line) if line.startswith("error:") else found.endswith(line), found
    name = line.split(": ")[1].split("=")[0] if line.startswith("error:") else None
    if name and name != "ASCEND_DEVICE_ID":
        assert "; unset %s (" % name in found


@pytest.mark.parametrize("environ", [
    dict(ONE_RANK, POD_NAME="job-7f9c-0"),  # read only with a rank table
    dict(ONE_RANK, CM_CHIEF_PORT="29500"),  # read only once CM_CHIEF_IP is set
    dict(ONE_RANK, ASCEND_DEVICE_ID="3"),
    dict(ONE_RANK, ASCEND_DEVICE_ID="0", DEVICE_ID="4", ASCEND_VISIBLE_DEVICES="4-7"),
], ids=["pod_name_without_table", "cm_chief_port_alone", "ascend_device_id_alone",
        "visible_devices_renumber"])
def test_what_does_not_steer_the_run_passes(npu_bridge, npu_dataset, tmp_path, environ):
    assert train_error_line(npu_args(npu_dataset, tmp_path), environ) is None


def test_the_device_id_follows_tf_adapter(npu_bridge, npu_dataset, tmp_path):
    env = npu_env(npu_dataset, tmp_path, dict(ONE_RANK, ASCEND_DEVICE_ID="3"))
    assert env.device_id == "3"  # what tf_adapter trains on, and the log shows
    env = npu_env(npu_dataset, tmp_path, dict(ONE_RANK, DEVICE_ID="2"))
    assert env.device_id == "2"


# ----------------------------------------------------------------------------- releases

@pytest.mark.parametrize("branch", ["master", "r1.11.0"])
def test_a_precision_mode_the_installed_tf_adapter_lacks(npu_bridge, npu_dataset, tmp_path,
                                                         monkeypatch, branch):
    """bf16 mixed precision came with tf_adapter r1.12.0, as did NPURunConfig's
    ``deterministic``: the stand-in's r1.11.0 lacks both, and the run stops before any
    graph; master takes it, and every run passes its precision_mode explicitly."""
    monkeypatch.setenv("NPU_STUB_BRANCH", branch)
    env = npu_env(npu_dataset, tmp_path / "train", {},
                  precision_mode="allow_mix_precision_bf16")
    if branch == "r1.11.0":
        with pytest.raises(UserError) as raised:
            model_fn_for(env)
        assert str(raised.value) == (
            "--precision_mode=allow_mix_precision_bf16 is not known to the installed "
            "tf_adapter (older than r1.12: its NPURunConfig has no 'deterministic' "
            "parameter); choose one of force_fp32, allow_fp32_to_fp16, force_fp16, "
            "must_keep_origin_dtype, allow_mix_precision, or update CANN and its tf_adapter")
        env = npu_env(npu_dataset, tmp_path / "train", {})  # allow_mix_precision: known
    model = model_fn_for(env)
    model.device.build_estimator(estimator_impl.estimator_model_fn(model))
    config, = records(npu_bridge, "NPURunConfig")
    assert config["precision_mode"] == env.precision_mode


@pytest.mark.parametrize("branch, keep, warned", [
    ("master", 2, False), ("r3.2.0", 2, True), ("r3.2.0", 5, False), ("r1.11.0", 3, True)])
def test_a_saver_that_keeps_five_is_warned_of(npu_bridge, npu_dataset, tmp_path, monkeypatch,
                                              branch, keep, warned):
    monkeypatch.setenv("NPU_STUB_BRANCH", branch)
    logger = logging.getLogger("test_npu_options")
    handler = ListHandler()
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        model_fn_for(npu_env(npu_dataset, tmp_path / "train", {}, keep_checkpoint_max=keep),
                     logger)
    finally:
        logger.removeHandler(handler)
    lines = [line for line in handler.lines if line.startswith("warning: the installed")]
    assert lines == ([
        "warning: the installed tf_adapter saves with NPUSaver() (before r1.14, and r2.1 / "
        "r3.x), which keeps the newest 5 checkpoints in %s, not the %d asked for "
        "(--keep_checkpoint_max; 1 on ranks > 0): plan the disk for 5"
        % (tmp_path / "train", keep)] if warned else [])


def test_a_keyword_the_installed_npurunconfig_lacks_is_one_line():
    capabilities = npu_capabilities.Capabilities(frozenset(["model_dir"]), (), True)
    npu_capabilities.check_run_config_kwargs(capabilities, {"model_dir": "m"}, {})
    with pytest.raises(UserError, match="no 'profiling_config' parameter, which "
                                        "--profiling_dir needs"):
        npu_capabilities.check_run_config_kwargs(
            capabilities, {"model_dir": "m", "profiling_config": 1},
            {"profiling_config": "--profiling_dir"})


# ----------------------------------------------------------------------------- options

def test_cache_profiling_timeout_and_split_reach_npu_bridge(npu_bridge, npu_dataset, tmp_path,
                                                            monkeypatch):
    """Rank 0 of 2 evaluating every epoch: the compile cache in train_dir, the profiler's
    JSON options, HCCL's timeout sized for the evaluation (HCCL's 1836 s covers this tiny
    validation split) in NPURunConfig and HCCL_EXEC_TIMEOUT alike, and the all-reduce
    split through HCCL's API; GE is handed each of them."""
    environ = two_ranks(tmp_path, monkeypatch, 0)
    train_dir = str(tmp_path / "train")
    env = npu_env(npu_dataset, train_dir, environ, profiling_dir=str(tmp_path / "profile"),
                  allreduce_split="idx:20,100,159", eval_every_n_epochs=1)
    model = model_fn_for(env)
    estimator = model.device.build_estimator(estimator_impl.estimator_model_fn(model))
    build_training_graph(model, estimator)
    config, = records(npu_bridge, "NPURunConfig")
    cache = os.path.join(train_dir, "op_compiler_cache")
    assert (config["op_compiler_cache_mode"], config["op_compiler_cache_dir"]) == (
        "enable", cache)
    assert os.path.isdir(cache) and os.path.isdir(str(tmp_path / "profile"))
    profiling = config["profiling_config"]
    assert profiling["type"] == "ProfilingConfig"
    assert profiling["arguments"]["enable_profiling"] is True
    assert json.loads(profiling["arguments"]["profiling_options"]) == {
        "output": str(tmp_path / "profile"), "training_trace": "on", "task_trace": "on",
        "hccl": "on", "aicpu": "on", "aic_metrics": "PipeUtilization"}
    assert config["hccl_timeout"] == 1836 and os.environ["HCCL_EXEC_TIMEOUT"] == "1836"
    assert records(npu_bridge, "hccl.set_split_strategy_by_idx") == [
        {"idxList": [20, 100, 159], "group": "hccl_world_group"}]
    ge, = records(npu_bridge, "GePlugin.Init")
    assert (ge["ge.op_compiler_cache_mode"], ge["ge.op_compiler_cache_dir"],
            ge["ge.exec.hcclExecuteTimeOut"], ge["ge.exec.profilingMode"],
            ge["ge.exec.rankId"]) == ("enable", cache, "1836", "1", "0")


def test_one_rank_a_disabled_cache_and_no_evaluation(npu_bridge, npu_dataset, tmp_path):
    env = npu_env(npu_dataset, tmp_path / "train", {}, op_compiler_cache_mode="disable",
                  allreduce_split="size:60,20,20")
    model = model_fn_for(env)
    model.device.build_estimator(estimator_impl.estimator_model_fn(model))
    config, = records(npu_bridge, "NPURunConfig")
    assert config["op_compiler_cache_mode"] == "disable"
    assert "op_compiler_cache_dir" not in config and "hccl_timeout" not in config
    assert "profiling_config" not in config
    assert records(npu_bridge, "hccl.set_split_strategy_by_size") == []  # no all-reduce
    assert not os.path.exists(str(tmp_path / "train" / "op_compiler_cache"))


def test_settings_several_ranks_cannot_hold(npu_bridge, npu_dataset, tmp_path, monkeypatch):
    environ = two_ranks(tmp_path, monkeypatch, 1)
    with pytest.raises(UserError, match="--op_compiler_cache_mode=force with RANK_SIZE=2"):
        npu_env(npu_dataset, tmp_path, environ, op_compiler_cache_mode="force")
    with pytest.raises(UserError, match=r"^--hccl_timeout=30 s cannot cover rank 0's "
                                        r"evaluation of the \d+ validation images"):
        npu_env(npu_dataset, tmp_path, environ, hccl_timeout=30, eval_every_n_epochs=1)
    env = npu_env(npu_dataset, tmp_path, dict(environ, HCCL_EXEC_TIMEOUT="3000"),
                  eval_every_n_epochs=1)
    assert env.hccl_timeout == 3000  # the environment's, checked, when no flag is given


@pytest.mark.parametrize("given, environ_value, ranks, images, expected", [
    (None, None, 8, None, None),  # no evaluation while training: HCCL's default
    (None, None, 1, 50000, None),  # one rank waits for nobody
    (None, None, 8, 50000, 1836),  # ImageNet: 600 + 50000 / 50 = 1600 < HCCL's 1836
    (None, None, 8, 500000, 10600),
    (None, None, 8, 5000000, 17340),  # capped at the Atlas training series' maximum
    (None, "2400", 8, 50000, 2400),
    (900, "2400", 8, 50000, 900),  # the flag wins over the environment
    (110, None, 8, 50000, 110),  # 60 s + 50000 / 1000 images/s: just possible
    (7, None, 1, None, 7),
])
def test_hccl_timeout_sizes(given, environ_value, ranks, images, expected):
    assert npu_options.hccl_timeout(given, environ_value, ranks, images) == expected


@pytest.mark.parametrize("given, environ_value, fragment", [
    (109, None, "--hccl_timeout=109 s cannot cover rank 0's evaluation of the 50000 "
                "validation images while the other 7 ranks wait in HCCL: even at 1000 "
                "images/s and 60 s to restart it takes 110 s; give at least "
                "--hccl_timeout=110"),
    (None, "100", "HCCL_EXEC_TIMEOUT=100 s cannot cover"),
    (None, "soon", "HCCL_EXEC_TIMEOUT=soon is not a whole number of seconds"),
])
def test_hccl_timeouts_refused(given, environ_value, fragment):
    with pytest.raises(UserError) as raised:
        npu_options.hccl_timeout(given, environ_value, 8, 50000)
    assert str(raised.value).startswith(fragment)


@pytest.mark.parametrize("text, parsed", [
    ("size:96.54,3.46", ("size", [96.54, 3.46])), ("size:60,20,20", ("size", [60, 20, 20])),
    ("idx:107,159", ("idx", [107, 159])), ("", None), (None, None)])
def test_allreduce_split_parses(text, parsed):
    assert npu_options.parse_allreduce_split(text) == parsed
