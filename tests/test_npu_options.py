"""The Ascend run against its surroundings, on the npu_bridge stand-in: the vendor's
environment variables that would steer it are refused in one line (train.py) or cleared
(the launcher, tests/test_launcher.py). No training."""
import pytest

from tests.flag_helpers import train_error_line
from tests.test_devices_npu import npu_env, two_device_rank_table


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
