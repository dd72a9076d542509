"""devices.launch: one process per rank with its own environment, all stopped together.

The launched program is a tiny fake (no TensorFlow) that records its environment."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from devices import launch
from tests.cli_helpers import ROOT, _env, run_bash, single_error_line
from utils.errors import UserError

TABLES = os.path.join(ROOT, "rank_tables")
FAKE = r'''
import json, os, signal, sys, time
out, rank = sys.argv[1], os.environ["RANK_ID"]
names = ("RANK_ID", "RANK_SIZE", "DEVICE_ID", "TF_CONFIG", "CUDA_VISIBLE_DEVICES",
         "ASCEND_DEVICE_ID", "RESTORE_FROM", "AOE_MODE", "POD_NAME", "CM_CHIEF_IP",
         "CM_CHIEF_PORT")
if rank in os.environ.get("FAKE_IGNORE_TERM", "").split(","):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(os.path.join(out, rank + ".tmp"), "w") as handle:
    json.dump(dict({n: os.environ.get(n) for n in names}, pid=os.getpid()), handle)
os.rename(os.path.join(out, rank + ".tmp"), os.path.join(out, rank + ".json"))
print("fake rank %s says hello" % rank, flush=True)
if rank == os.environ.get("FAKE_FAIL_RANK"):
    size = int(os.environ["RANK_SIZE"])  # fail once every rank has written its pid
    while len([f for f in os.listdir(out) if f.endswith(".json")]) < size:
        time.sleep(0.05)
    print("fake rank %s fails" % rank, flush=True)
    sys.exit(3)
time.sleep(float(os.environ.get("FAKE_SLEEP_S", "0")))
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake.py"
    path.write_text(FAKE)
    (tmp_path / "out").mkdir()
    return [sys.executable, str(path), str(tmp_path / "out")]


def launcher(*args, **env):
    """The command line of python -m devices.launch args, and its environment."""
    environ = _env(env)
    for name in ("RANK_SIZE", "RANK_ID", "TF_CONFIG"):  # as a user's shell has them
        environ.pop(name, None)
    return [sys.executable, "-m", "devices.launch"] + list(args), environ


def run_launcher(*args, **env):
    command, environ = launcher(*args, **env)
    return subprocess.run(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


def recorded(tmp_path, rank):
    with open(str(tmp_path / "out" / ("%d.json" % rank))) as handle:
        return json.load(handle)


def plan(*args, **environ):
    args = launch.parse_args(list(args) + ["--", "true"])
    return launch.plan_ranks(args.device, args, environ)


def is_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_npu_plan_follows_the_8p_table():
    relative = os.path.relpath(os.path.join(TABLES, "8p.json"))
    ranks = plan("--device=npu", "--rank_table=" + relative, JOB_ID="7")
    assert [(rank, device) for rank, device, _ in ranks] == [(i, str(i)) for i in range(8)]
    for rank, device, env in ranks:
        assert (env["RANK_ID"], env["RANK_SIZE"], env["DEVICE_ID"], env["ASCEND_DEVICE_ID"],
                env["JOB_ID"]) == (str(rank), "8", device, device, "7")
        assert env["RANK_TABLE_FILE"] == os.path.join(TABLES, "8p.json")
        assert "TF_CONFIG" not in env
    assert plan("--device=npu")[0][2]["JOB_ID"] == "10087"  # default table and job id


def test_npu_plan_starts_this_servers_ranks_of_a_cluster_table():
    table = os.path.join(TABLES, "16p_2servers.json")
    ranks = plan("--device=npu", "--server_id=10.0.0.2", RANK_TABLE_FILE=table, RANK_SIZE="16")
    assert [rank for rank, _, _ in ranks] == list(range(8, 16))
    assert [device for _, device, _ in ranks] == [str(i) for i in range(8)]
    assert set(env["RANK_SIZE"] for _, _, env in ranks) == {"16"}
    with pytest.raises(UserError, match="SERVER_ID"):
        plan("--device=npu", RANK_TABLE_FILE=table)
    with pytest.raises(UserError, match="10.9.9.9"):
        plan("--device=npu", RANK_TABLE_FILE=table, SERVER_ID="10.9.9.9")


VENDOR = {"RESTORE_FROM": "/ckpt/model.ckpt-9", "LOCAL_CHECKPOINT_DIR": "/ckpt",
          "AOE_MODE": "", "POD_NAME": "job-7f9c-0", "CM_CHIEF_IP": "10.0.0.9",
          "CM_CHIEF_PORT": "29500", "CM_WORKER_SIZE": "8"}


def test_npu_ranks_start_without_the_vendors_variables():
    """The launcher makes each rank's environment: on npu it clears what npu_bridge would
    read behind the flags (devices.ascend_environment), one line each; gpu / cpu ranks
    keep them (nothing there reads them)."""
    ranks = plan("--device=npu", KEEP="me", **VENDOR)
    for _, _, env in ranks:
        assert not set(VENDOR) & set(env) and env["KEEP"] == "me"
    base, lines = launch.rank_environment("npu", dict(VENDOR, TF_CONFIG="{}"))
    assert base == {}
    assert [line.split(" for the ranks: ")[0] for line in lines] == [
        "launcher: cleared RESTORE_FROM=/ckpt/model.ckpt-9",
        "launcher: cleared LOCAL_CHECKPOINT_DIR=/ckpt", "launcher: cleared AOE_MODE=",
        "launcher: cleared CM_CHIEF_IP=10.0.0.9", "launcher: cleared CM_WORKER_SIZE=8",
        "launcher: cleared POD_NAME=job-7f9c-0", "launcher: cleared CM_CHIEF_PORT=29500"]
    assert lines[5] == (
        "launcher: cleared POD_NAME=job-7f9c-0 for the ranks: with RANK_TABLE_FILE "
        "tf_adapter gives HCCL this name (ge.exec.podName) instead of RANK_ID as this "
        "process's identity in the rank table")
    assert launch.rank_environment("cpu", VENDOR) == (VENDOR, [])


def test_npu_ranks_run_with_the_tables_devices_and_nothing_else(tmp_path, fake):
    table = tmp_path / "2p.json"
    table.write_text(json.dumps({"status": "completed", "group_count": "1", "group_list": [{
        "group_name": "hccl_world_group", "device_count": "2", "instance_count": "2",
        "instance_list": [{"pod_name": str(i), "server_id": "10.0.0.1", "rank_id": str(i),
                           "devices": [{"device_id": str(i + 4),
                                        "device_ip": "192.168.10%d.101" % i}]}
                          for i in range(2)]}]}))
    out = run_launcher("--device=npu", "--rank_table=" + str(table),
                       "--result_dir=" + str(tmp_path / "result"), "--", *fake,
                       PYTHONPATH=os.path.join(ROOT, "tests", "npu_stub"), ASCEND_DEVICE_ID="0",
                       **VENDOR)
    assert out.returncode == 0, out.stdout + out.stderr
    cleared = [line for line in out.stdout.splitlines() if line.startswith("launcher: ")]
    assert len(cleared) == len(VENDOR)
    for rank in range(2):
        env = recorded(tmp_path, rank)
        assert (env["DEVICE_ID"], env["ASCEND_DEVICE_ID"]) == (str(rank + 4), str(rank + 4))
        assert [env[name] for name in VENDOR if name in env] == [None] * 5


def test_npu_plan_refuses_a_rank_size_the_table_does_not_have():
    with pytest.raises(UserError, match="RANK_SIZE=4"):
        plan("--device=npu", RANK_SIZE="4")
    with pytest.raises(UserError, match="RANK_SIZE=2"):
        plan("--device=npu", "--rank_size=2")


def test_gpu_plan_gives_each_rank_one_visible_gpu(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nfor i in 0 1 2 3; do echo \"GPU $i: Fake (UUID: GPU-$i)\"; done\n")
    smi.chmod(0o755)
    path = str(tmp_path)
    assert launch.detect_device("auto", {"PATH": path}) == "gpu"
    ranks = plan("--device=gpu", "--base_port=5000", PATH=path, CUDA_VISIBLE_DEVICES="1,3",
                 TF_CONFIG="inherited")
    assert [(rank, env["CUDA_VISIBLE_DEVICES"], env["DEVICE_ID"]) for rank, _, env in ranks] \
        == [(0, "1", "1"), (1, "3", "3")]
    assert [json.loads(env["TF_CONFIG"]) for _, _, env in ranks][1] == {
        "cluster": {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]},
        "task": {"type": "worker", "index": 1}}
    assert len(plan("--device=gpu", PATH=path)) == 4
    assert "TF_CONFIG" not in plan("--device=gpu", PATH=path, RANK_SIZE="1")[0][2]
    with pytest.raises(UserError, match="only 4 GPU"):
        plan("--device=gpu", "--rank_size=5", PATH=path)
    with pytest.raises(UserError, match="no GPU"):
        launch.detect_device("gpu", {"PATH": str(tmp_path / "none")})


def test_three_cpu_ranks_run_with_their_own_environment(tmp_path, fake):
    result = tmp_path / "result"
    out = run_launcher("--device=cpu", "--rank_size=3", "--result_dir=" + str(result),
                       "--", *fake)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("all 3 ranks finished")
    assert "fake rank 0 says hello" in out.stdout and "rank 1 says" not in out.stdout
    envs = [recorded(tmp_path, rank) for rank in range(3)]
    workers = json.loads(envs[0]["TF_CONFIG"])["cluster"]["worker"]
    assert len(set(workers)) == 3 and all(w.startswith("127.0.0.1:") for w in workers)
    for rank, env in enumerate(envs):
        log = result / str(rank) / "train.log"
        assert "fake rank %d says hello" % rank in log.read_text()
        assert "rank %d: device %d, pid %d, log %s" % (rank, rank, env["pid"], log) in out.stdout
        assert (env["RANK_ID"], env["RANK_SIZE"], env["DEVICE_ID"],
                env["CUDA_VISIBLE_DEVICES"]) == (str(rank), "3", str(rank), "")
        assert json.loads(env["TF_CONFIG"]) == {"cluster": {"worker": workers},
                                                "task": {"type": "worker", "index": rank}}
    # A second launch into the same result_dir (a resumed run) appends to the logs, and
    # echoes only its own output.
    again = run_launcher("--device=cpu", "--rank_size=3", "--result_dir=" + str(result),
                         "--", *fake)
    assert again.returncode == 0 and again.stdout.count("fake rank 0 says hello") == 1
    assert (result / "0" / "train.log").read_text().count("fake rank 0 says hello") == 2


def test_a_failing_rank_stops_the_others(tmp_path, fake):
    result = tmp_path / "result"
    began = time.time()
    out = run_launcher("--device=cpu", "--rank_size=3", "--grace_s=2",
                       "--result_dir=" + str(result), "--", *fake,
                       FAKE_FAIL_RANK="1", FAKE_SLEEP_S="120", FAKE_IGNORE_TERM="2")
    assert out.returncode == 1 and time.time() - began < 20, out.stdout + out.stderr
    assert out.stderr.startswith("error: rank 1 (device 1) exited with code 3; its log: %s\n"
                                 % (result / "1" / "train.log")), out.stderr
    assert "    fake rank 1 fails" in out.stderr and "Traceback" not in out.stderr
    for rank in (0, 2):  # rank 2 ignored SIGTERM: it got SIGKILL after the grace
        assert is_gone(recorded(tmp_path, rank)["pid"])


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                           (signal.SIGKILL, -signal.SIGKILL)])
def test_a_signalled_launcher_leaves_no_rank_behind(tmp_path, fake, signum, code):
    command, environ = launcher("--device=cpu", "--rank_size=2", "--result_dir=" +
                                str(tmp_path / "result"), "--", *fake, FAKE_SLEEP_S="120")
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True)
    try:
        deadline = time.time() + 30
        while not all(os.path.exists(str(tmp_path / "out" / ("%d.json" % rank)))
                      for rank in (0, 1)) and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signum)
        assert process.wait(timeout=30) == code
    finally:
        process.kill()
        process.communicate()
    pids = [recorded(tmp_path, rank)["pid"] for rank in (0, 1)]
    deadline = time.time() + 10  # SIGKILL: the kernel kills the orphans (PDEATHSIG)
    while not all(is_gone(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert all(is_gone(pid) for pid in pids)


@pytest.mark.parametrize("args, env, says", [
    (["--device=cpu"], {}, "no command"),
    (["--device=cpu", "--rank_size=0", "--", "true"], {}, "at least one rank"),
    (["--device=tpu", "--", "true"], {}, "invalid choice"),
    (["--device=npu", "--", "true"], {"PYTHONPATH": "/nonexistent"}, "npu_bridge"),
])
def test_bad_input_is_one_error_line(args, env, says):
    assert says in single_error_line(run_launcher(*args, **env))


def test_a_broken_rank_table_is_one_error_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"status": "completed", "group_list": [')
    stub = os.path.join(ROOT, "tests", "npu_stub")  # npu_bridge found: auto picks npu
    line = single_error_line(run_launcher("--", "true", RANK_TABLE_FILE=str(broken),
                                          PYTHONPATH=stub))
    assert str(broken) in line and "not valid JSON" in line


def test_run_8p_without_dataset_says_how(tmp_path):
    line = single_error_line(run_bash("run_8p.sh", str(tmp_path / "missing")))
    assert line.startswith("error: dataset dir")
    assert "usage: bash scripts/run_8p.sh" in single_error_line(run_bash("run_8p.sh",
                                                                        DATA_DIR=""))
