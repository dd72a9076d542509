"""Real multi-rank jobs of the npu_bridge stand-in, whose HCCL then exchanges tensors
between the rank processes (tests/npu_stub/README.md, "HCCL"): the NPU training launch
(run_8p.sh, one train.py per rank) and plain Python ranks that call the exchange
directly (a second each, no TensorFlow)."""
import json
import os
import socket
import subprocess
import sys
import time

from rank_tables import table as rank_table
from tests.cli_helpers import ROOT, run_bash
from tests.conftest import STUB

# A plain Python rank: runs the collectives its plan lists (JSON: {"calls": [...]}, each
# {"op", "name", "meta", "values", "dtype" (or one per value)}, or {"sleep": s}, or
# {"exit": code}) and writes
# what each returned to the results file; a failure is one "error:" line and exit 1.
PEER = r'''
import json, sys, time
import numpy as np
from npu_bridge.hccl import _exchange
with open(sys.argv[1]) as handle:
    plan = json.load(handle)
results = []
try:
    for call in plan["calls"]:
        if "sleep" in call:
            time.sleep(call["sleep"])
            continue
        if "exit" in call:
            sys.exit(call["exit"])
        dtypes = call["dtype"] if isinstance(call["dtype"], list) else \
            [call["dtype"]] * len(call["values"])
        arrays = [np.array(v, dtype=d) for v, d in zip(call["values"], dtypes)]
        out = _exchange.client().collective(call["op"], call["name"], call["meta"], arrays)
        results.append([[a.tolist(), a.dtype.name] for a in out])
except _exchange.HcclError as err:
    sys.stderr.write("error: %s\n" % err)
    sys.exit(1)
finally:
    with open(sys.argv[2], "w") as handle:
        json.dump(results, handle)
'''
WORLD = "hccl_world_group"


def free_port():
    """A TCP port nothing listens on now, for NPU_STUB_HCCL_PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_rank_table(path, rank_size):
    """A one-server legacy rank table of devices 0..rank_size-1 (HCCL takes 1, 2, 4 or 8
    of a server's devices, 2 or 4 from one ring): what RANK_TABLE_FILE names when fewer
    ranks than rank_tables/8p.json lists are launched, as on a real server."""
    ranks = [rank_table.Rank(i, "10.0.0.1", i, "192.168.%d.101" % (100 + i))
             for i in range(rank_size)]
    with open(path, "w") as handle:
        json.dump(rank_table.to_json(ranks, "legacy"), handle, indent=1)
    return path


def hccl_environ(rank_size, port=None, **extra):
    """The environment a job of rank_size real ranks needs on top of the test's: the
    stand-in first on PYTHONPATH, NPU_STUB_HCCL_PORT (a free port unless given)."""
    env = {"PYTHONPATH": STUB + os.pathsep + ROOT, "RANK_SIZE": str(rank_size),
           "NPU_STUB_HCCL_PORT": str(port or free_port())}
    env.update(extra)
    return env


def launch_npu_ranks(data_dir, result_dir, rank_size, *flags, **env):
    """``RANK_SIZE=rank_size bash scripts/run_8p.sh data_dir --device=npu flags`` as a user
    runs it, on the stand-in with real HCCL exchange: one train.py per rank (devices.launch
    copies this environment to each), rank k's log in result_dir/k/train.log, train_dir
    result_dir/train (rank k > 0's checkpoints in train/rank_k). The rank table is
    written to result_dir/<rank_size>p.json. Returns the CompletedProcess."""
    os.makedirs(result_dir, exist_ok=True)
    table = write_rank_table(os.path.join(result_dir, "%dp.json" % rank_size), rank_size)
    environ = hccl_environ(rank_size, RANK_TABLE_FILE=table, RESULT_DIR=result_dir,
                           JOB_ID="4242")
    environ.update(env)
    return run_bash("run_8p.sh", data_dir, "--device=npu", *flags, **environ)


def peer_call(op, name, values, dtype, **meta):
    """One step of a PEER plan: collective ``op`` (HcomAllReduce, HcomBroadcast,
    HcomAllGather) of the graph op ``name`` on tensors ``values`` (nested lists) of
    ``dtype`` (a numpy name, or a list of one per tensor)."""
    return {"op": op, "name": name, "values": values, "dtype": dtype,
            "meta": dict(meta, group=WORLD)}


def start_peers(tmp_path, plans, ranks=None, port=None, **env):
    """Starts one PEER process per plan (ranks 0.. unless ``ranks`` names them) of a job of
    ``len(plans)`` ranks, or RANK_SIZE given in env; returns [Popen] with .results_path."""
    os.makedirs(str(tmp_path), exist_ok=True)
    script = os.path.join(str(tmp_path), "peer.py")
    with open(script, "w") as handle:
        handle.write(PEER)
    ranks = list(range(len(plans))) if ranks is None else ranks
    environ = dict(os.environ, **hccl_environ(env.pop("RANK_SIZE", len(plans)), port,
                                              JOB_ID="4242"))
    environ.update(env)
    peers = []
    for rank, plan in zip(ranks, plans):
        plan_path = os.path.join(str(tmp_path), "plan_%d.json" % rank)
        with open(plan_path, "w") as handle:
            json.dump({"calls": plan}, handle)
        results = os.path.join(str(tmp_path), "results_%d.json" % rank)
        process = subprocess.Popen(
            [sys.executable, script, plan_path, results], cwd=ROOT,
            env=dict(environ, RANK_ID=str(rank)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, universal_newlines=True)
        process.results_path = results
        peers.append(process)
    return peers


def finish_peers(peers, timeout=60):
    """Waits for every peer (killing those left after ``timeout`` s); returns, per peer,
    (exit code, stderr, results, seconds it took from the first wait)."""
    began, finished = time.time(), []
    for process in peers:
        try:
            _, stderr = process.communicate(timeout=max(0.1, began + timeout - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        results = None
        if os.path.exists(process.results_path):
            with open(process.results_path) as handle:
                results = json.load(handle)
        finished.append((process.returncode, stderr, results, time.time() - began))
    return finished
