"""The Ascend path, wired against the npu_bridge stand-in in tests/npu_stub (the real
one installs only in Huawei's image): what NPURunConfig, the optimizers, the loss-scale
managers and the broadcast hook are given, and that tf.distribute stays out of it."""
import json
import os

import pytest

import env as env_lib
from estimator_impl import EstimatorImpl
from tests.cli_helpers import ROOT, run_python
from tests.conftest import STUB
from tests.test_env_schedules import flag_values
from utils.errors import UserError
from utils.tf_compat import tf



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
    return env_lib.Env.from_flags(flag_values(**values), environ)


def records(stub, api):
    return [r["arguments"] for r in stub.RECORDS if r["api"] == api]


def build_training_graph(impl):
    """model_fn in TRAIN mode on a real batch shape, in a fresh graph."""
    with tf.Graph().as_default():
        images = tf.zeros([impl.env.batch_size, 32, 32, 3])
        labels = tf.zeros([impl.env.batch_size], tf.int32)
        return impl.model_fn(images, labels, tf.estimator.ModeKeys.TRAIN)


def test_two_rank_wiring(npu_bridge, npu_dataset, tmp_path):
    table = two_device_rank_table(str(tmp_path / "2p.json"))
    environ = {"RANK_SIZE": "2", "RANK_ID": "1", "DEVICE_ID": "1", "RANK_TABLE_FILE": table}
    env = npu_env(npu_dataset, tmp_path / "train", environ)
    impl = EstimatorImpl(env)
    impl.device.build_estimator(impl.estimator_model_fn())
    spec = build_training_graph(impl)

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
        {"optimizer": "MomentumOptimizer", "name": None}]
    scaler, = records(npu_bridge, "NPULossScaleOptimizer")
    assert scaler["opt"] == "NPUDistributedOptimizer" and scaler["is_distributed"] is True
    assert scaler["loss_scale_manager"] == {
        "type": "ExponentialUpdateLossScaleManager",
        "arguments": {"init_loss_scale": 2 ** 32, "incr_every_n_steps": 1000,
                      "decr_every_n_nan_or_inf": 2, "incr_ratio": 2, "decr_ratio": 0.5}}
    assert records(npu_bridge, "NPUBroadcastGlobalVariablesHook") == [
        {"root_rank": 0, "index": 1}]
    assert len(spec.training_hooks) == 2
    assert env.global_batch == 8 and env.device_id == "1"


@pytest.mark.parametrize("overrides, manager", [
    (dict(loss_scale="1024"), {"type": "FixedLossScaleManager",
                               "arguments": {"loss_scale": 1024.0,
                                             "enable_overflow_check": True}}),
    (dict(precision_mode="force_fp32"), None),
    (dict(loss_scale="none"), None),
])
def test_one_rank_loss_scaling(npu_bridge, npu_dataset, tmp_path, overrides, manager):
    env = npu_env(npu_dataset, tmp_path / "train", {}, **overrides)
    impl = EstimatorImpl(env)
    build_training_graph(impl)
    assert records(npu_bridge, "NPUDistributedOptimizer") == []
    assert records(npu_bridge, "NPUBroadcastGlobalVariablesHook") == []
    scalers = records(npu_bridge, "NPULossScaleOptimizer")
    assert [s["loss_scale_manager"] for s in scalers] == ([manager] if manager else [])


def test_overflow_dump_config(npu_bridge, npu_dataset, tmp_path):
    env = npu_env(npu_dataset, tmp_path / "train", {}, over_dump=True)
    impl = EstimatorImpl(env)
    impl.device.build_estimator(impl.estimator_model_fn())
    config, = records(npu_bridge, "NPURunConfig")
    assert config["model_dir"] == str(tmp_path / "train")
    assert config["dump_config"]["arguments"]["enable_dump_debug"] is True
    assert config["dump_config"]["arguments"]["dump_path"] == os.path.join(
        str(tmp_path / "train"), "overflow_dump")


@pytest.mark.parametrize("environ, fragment", [
    ({"RANK_SIZE": "2", "RANK_ID": "0"}, "needs RANK_TABLE_FILE"),
    ({"RANK_SIZE": "4", "RANK_ID": "0", "RANK_TABLE_FILE": "TABLE"}, "RANK_SIZE=4"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'},
     "unset TF_CONFIG"),
])
def test_npu_environment_mistakes(npu_bridge, npu_dataset, tmp_path, environ, fragment):
    table = two_device_rank_table(str(tmp_path / "2p.json"))
    environ = {k: v.replace("TABLE", table) for k, v in environ.items()}
    with pytest.raises(UserError, match=fragment):
        npu_env(npu_dataset, tmp_path / "train", environ)


def test_train_py_on_the_stand_in(npu_dataset, tmp_path):
    """train.py --device=npu end to end: the stand-in's Estimator trains on the CPU."""
    record = str(tmp_path / "records.jsonl")
    out = run_python("train.py", "--dataset_dir=" + npu_dataset, "--device=npu",
                     "--train_dir=" + str(tmp_path / "train"), "--model_name=mobilenet_v2_035",
                     "--train_image_size=32", "--batch_size=4", "--max_train_steps=3",
                     "--iterations_per_loop=1", "--learning_rate=0.01", "--log_every_n_steps=1",
                     env={"PYTHONPATH": STUB + os.pathsep + ROOT, "NPU_STUB_RECORD": record})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "device: npu (rank 0 of 1, device 0), precision_mode allow_mix_precision" in out.stdout
    assert "step:3 " in out.stdout
    assert tf.train.latest_checkpoint(str(tmp_path / "train")).endswith("model.ckpt-3")
    with open(record) as handle:
        apis = [json.loads(line)["api"] for line in handle]
    assert apis[:2] == ["NPURunConfig", "NPUEstimator"] and "NPULossScaleOptimizer" in apis


def test_default_checkpoint_interval_is_a_whole_number_of_loops(npu_bridge, npu_dataset,
                                                               tmp_path):
    # 24 images / batch 4 = 6 steps per epoch: on npu every save must end a loop.
    assert npu_env(npu_dataset, tmp_path, {}, iterations_per_loop=4).save_checkpoints_steps == 4
    assert npu_env(npu_dataset, tmp_path, {}, iterations_per_loop=10).save_checkpoints_steps == 10
    assert npu_env(npu_dataset, tmp_path, {}, iterations_per_loop=3).save_checkpoints_steps == 6
    assert npu_env(npu_dataset, tmp_path, {}, device="cpu",
                   iterations_per_loop=4).save_checkpoints_steps == 6
