"""One training process per device (rank), started and supervised together.

    python -m devices.launch [--device=auto|npu|gpu|cpu] [--rank_table=FILE]
        [--server_id=ID] [--rank_size=N] [--base_port=P] [--result_dir=DIR]
        [--grace_s=S] -- COMMAND [ARGS...]

Each rank runs COMMAND ARGS with its own RANK_ID / RANK_SIZE / DEVICE_ID (npu: also
ASCEND_DEVICE_ID, RANK_TABLE_FILE, JOB_ID from the HCCL rank table; gpu / cpu: TF_CONFIG
naming every worker on 127.0.0.1) and writes stdout + stderr to <result_dir>/<rank>/train.log;
on npu the vendor's variables that would steer the ranks behind their flags (RESTORE_FROM,
AOE_MODE, POD_NAME, CM_*...: devices.ascend_environment) are cleared, one line each;
rank 0's log is copied to this console as it grows. When one rank fails, or this launcher
gets SIGINT / SIGTERM, every rank is stopped: a collective job with a dead member only hangs.

Standard library only (and the project's rank table reader): no TensorFlow, so it starts at
once.
"""
import argparse
import collections
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from devices import ascend_environment
from rank_tables import table as rank_table
from utils.errors import EXIT_USER_ERROR, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RANK_TABLE = os.path.join(ROOT, "rank_tables", "8p.json")
DEFAULT_CPU_RANKS = 2
DEFAULT_JOB_ID = "10087"
POLL_S = 0.2
TAIL_LINES = 10
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# One started rank: its plan (rank_id, device_id), its Popen and its log file.
Rank = collections.namedtuple("Rank", "rank_id device_id process log log_start")


def parse_args(argv):
    """Options before ``--``, the command after it; a mistake is a one-line UserError
    (argparse would print usage and its own prefix)."""
    parser = argparse.ArgumentParser(
        prog="python -m devices.launch",
        usage="%(prog)s [options] -- COMMAND [ARGS...]",
        description="Start COMMAND once per device with its rank's environment.")
    parser.add_argument("--device", default="auto", choices=("auto", "npu", "gpu", "cpu"),
                        help="auto: npu when npu_bridge is installed, else gpu when "
                             "nvidia-smi lists one, else cpu")
    parser.add_argument("--rank_table", help="npu: the HCCL rank table (default "
                        "$RANK_TABLE_FILE, else rank_tables/8p.json)")
    parser.add_argument("--server_id", help="npu: this server's id in the rank table "
                        "(default $SERVER_ID; not needed for a one-server table)")
    parser.add_argument("--rank_size", type=int, help="gpu / cpu: processes to start "
                        "(default $RANK_SIZE, else every GPU / 2 on cpu); npu: checked "
                        "against the table")
    parser.add_argument("--base_port", type=int, help="gpu / cpu: rank k listens on "
                        "127.0.0.1:base_port+k (default: free ports)")
    parser.add_argument("--result_dir", default=os.path.join("result", "8p"),
                        help="rank k logs to RESULT_DIR/k/train.log (default result/8p)")
    parser.add_argument("--grace_s", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping ranks")

    def error(message):
        raise UserError(message)
    parser.error = error
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    if not args.command:
        raise UserError("no command to launch; usage: python -m devices.launch [options] "
                        "-- COMMAND [ARGS...]")
    if args.grace_s < 0:
        raise UserError("--grace_s=%s must be >= 0" % args.grace_s)
    return args


def list_gpus(environ):
    """The GPUs a rank may be given: CUDA_VISIBLE_DEVICES' entries when set, else the
    indices nvidia-smi -L lists; capped at the number nvidia-smi lists."""
    nvidia_smi = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if not nvidia_smi:
        return []
    try:
        listing = subprocess.run([nvidia_smi, "-L"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, universal_newlines=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [entry.strip() for entry in visible.split(",") if entry.strip()][:count]


def detect_device(requested, environ):
    """The device kind to launch on; a kind that is not there is a UserError."""
    has_npu = importlib.util.find_spec("npu_bridge") is not None
    if requested == "auto":
        if has_npu:
            return "npu"
        return "gpu" if list_gpus(environ) else "cpu"
    if requested == "npu" and not has_npu:
        raise UserError("--device=npu but npu_bridge is not installed; run inside Ascend's "
                        "TensorFlow image with the CANN environment sourced, or pass "
                        "--device=auto")
    if requested == "gpu" and not list_gpus(environ):
        raise UserError("--device=gpu but nvidia-smi lists no GPU (check the driver and "
                        "CUDA_VISIBLE_DEVICES), or pass --device=cpu")
    return requested


def rank_environment(device, environ):
    """(the environment every rank starts from, the lines saying what was cleared): no
    inherited TF_CONFIG (it would override our cluster); on npu none of the vendor's
    variables that would steer a rank behind its flags (ascend_environment)."""
    base = dict(environ)
    base.pop("TF_CONFIG", None)
    if device != "npu":
        return base, []
    return ascend_environment.without_vendor_variables(base)


def plan_ranks(device, args, environ):
    """[(rank_id, device_id, env)] of the ranks this server starts, env being the whole
    environment of that rank's process."""
    base, _ = rank_environment(device, environ)
    if device == "npu":
        return _plan_npu(args, environ, base)
    if device == "gpu":
        gpus = list_gpus(environ)
        rank_size = _rank_size(args, environ, len(gpus))
        if rank_size > len(gpus):
            raise UserError("%d ranks asked for but only %d GPU(s) are visible (%s); lower "
                            "--rank_size / RANK_SIZE" % (rank_size, len(gpus),
                                                         ",".join(gpus) or "none"))
        devices = gpus[:rank_size]
    else:
        devices = [str(rank) for rank in range(_rank_size(args, environ, DEFAULT_CPU_RANKS))]
    workers = ["127.0.0.1:%d" % port for port in _ports(args.base_port, len(devices))]
    plan = []
    for rank, device_id in enumerate(devices):
        env = dict(base, RANK_ID=str(rank), RANK_SIZE=str(len(devices)), DEVICE_ID=device_id,
                   CUDA_VISIBLE_DEVICES=device_id if device == "gpu" else "")
        if len(devices) > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                           "task": {"type": "worker", "index": rank}})
        plan.append((rank, device_id, env))
    return plan


def _plan_npu(args, environ, base):
    """This server's ranks of the HCCL rank table; each rank finds the others through the
    table, so every rank's RANK_SIZE is the table's total."""
    path = os.path.abspath(args.rank_table or environ.get("RANK_TABLE_FILE")
                           or DEFAULT_RANK_TABLE)
    table = rank_table.load(path)
    rank_size = _rank_size(args, environ, None)
    if rank_size is not None:
        rank_table.check_rank_size(table, rank_size)
    server_id = args.server_id or environ.get("SERVER_ID")
    if server_id:
        ranks = table.ranks_on(server_id)
    elif len(table.servers) == 1:
        ranks = table.ranks
    else:
        raise UserError("rank table %s lists %d servers (%s); set SERVER_ID or --server_id "
                        "to this server's id and run the launcher on each of them"
                        % (path, len(table.servers), ", ".join(table.servers)))
    plan = []
    for rank in ranks:
        device_id = str(int(rank.device_id))
        env = dict(base, RANK_ID=str(int(rank.rank_id)), RANK_SIZE=str(table.rank_size),
                   DEVICE_ID=device_id, ASCEND_DEVICE_ID=device_id, RANK_TABLE_FILE=path,
                   JOB_ID=environ.get("JOB_ID") or DEFAULT_JOB_ID)
        plan.append((int(rank.rank_id), device_id, env))
    return plan


def _rank_size(args, environ, default):
    """--rank_size, else RANK_SIZE, else the default; at least 1."""
    if args.rank_size is not None:
        value, name = args.rank_size, "--rank_size"
    elif environ.get("RANK_SIZE", "").strip():
        try:
            value, name = int(environ["RANK_SIZE"]), "RANK_SIZE"
        except ValueError:
            raise UserError("RANK_SIZE=%s is not a whole number; set it to the number of "
                            "devices or unset it" % environ["RANK_SIZE"])
    else:
        return default
    if value < 1:
        raise UserError("%s=%d: need at least one rank" % (name, value))
    return value


def _ports(base_port, count):
    """Ports for the workers' gRPC servers: base_port.. or, by default, ones the kernel
    says are free now (all sockets held open together so the ports differ)."""
    if base_port is not None:
        if not 1 <= base_port <= 65536 - count:
            raise UserError("--base_port=%d: ports %d-%d must lie in 1-65535"
                            % (base_port, base_port, base_port + count - 1))
        return [base_port + rank for rank in range(count)]
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start(plan, command, result_dir, stopping):
    """Starts every rank in its own process group (so stopping it reaches its children);
    once ``stopping()`` reports a signal no further rank is started."""
    ranks, preexec = [], _die_with_launcher()
    for rank_id, device_id, env in plan:
        if stopping():
            break
        log = os.path.join(result_dir, str(rank_id), "train.log")
        try:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            # Appended: a resumed run keeps the earlier runs' logs.
            log_start = os.path.getsize(log) if os.path.exists(log) else 0
            with open(log, "ab") as out:
                process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True, preexec_fn=preexec)
        except OSError as err:
            stop(ranks, 0)
            raise UserError("cannot start rank %d (%s): %s" % (rank_id, " ".join(command), err))
        ranks.append(Rank(rank_id, device_id, process, log, log_start))
        print("rank %d: device %s, pid %d, log %s" % (rank_id, device_id, process.pid, log),
              flush=True)
    return ranks


def _die_with_launcher():
    """A preexec_fn asking Linux to SIGKILL the rank when the launcher dies, so that even
    a launcher killed by SIGKILL (which it cannot catch) leaves no rank behind; None
    where prctl is missing."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    launcher = os.getpid()

    def preexec():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != launcher:  # the launcher died before prctl took effect
            os._exit(1)
    return preexec


def stop(ranks, grace_s):
    """SIGTERM to every rank's process group, SIGKILL to those left after grace_s; returns
    once every rank has exited."""
    _signal_groups(ranks, signal.SIGTERM)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(rank.process.poll() is None for rank in ranks):
        time.sleep(min(POLL_S, grace_s))
    _signal_groups(ranks, signal.SIGKILL)
    for rank in ranks:
        rank.process.wait()


def _signal_groups(ranks, signum):
    for rank in ranks:
        if rank.process.poll() is None:
            try:
                os.killpg(rank.process.pid, signum)
            except OSError:  # already gone
                pass


def supervise(ranks, grace_s, stopping, echo):
    """Waits for the ranks, echoing rank 0's new output; the launcher's exit code. The
    first rank to fail, or a signal (``stopping()`` returns its number), stops them all."""
    while True:
        echo()
        signum = stopping()
        failed = [rank for rank in ranks if rank.process.poll() not in (None, 0)]
        if signum or failed:
            stop(ranks, grace_s)
            echo()
            if signum:
                sys.stderr.write("stopped all %d ranks on signal %d\n" % (len(ranks), signum))
                return 128 + signum
            _report(failed[0])
            return 1
        if all(rank.process.returncode == 0 for rank in ranks):
            echo()
            print("all %d ranks finished" % len(ranks), flush=True)
            return 0
        time.sleep(POLL_S)


def _report(rank):
    code = rank.process.returncode
    how = ("exited with code %d" % code if code > 0
           else "was killed by signal %d" % -code)
    with open(rank.log, "rb") as handle:
        handle.seek(rank.log_start)
        tail = handle.read().decode("utf-8", "replace").splitlines()[-TAIL_LINES:]
    sys.stderr.write("error: rank %d (device %s) %s; its log: %s\n"
                     % (rank.rank_id, rank.device_id, how, rank.log))
    sys.stderr.writelines("    %s\n" % line for line in tail)
    sys.stderr.flush()


class _Echo(object):
    """Copies what a log file gained since the last call to this process's stdout."""

    def __init__(self, path, start):
        self.handle = open(path, "rb")
        self.handle.seek(start)

    def __call__(self):
        data = self.handle.read()
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()


def main(argv=None):
    """Starts one training process per rank and waits for them all (see the module)."""
    received = []

    def on_signal(signum, frame):
        received.append(signum)

    def stopping():
        return received[0] if received else None

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        device = detect_device(args.device, os.environ)
        plan = plan_ranks(device, args, os.environ)
        for line in rank_environment(device, os.environ)[1]:
            print(line, flush=True)
        result_dir = os.path.abspath(args.result_dir)
        print("launching %d rank(s) on %s: %s" % (len(plan), device, " ".join(args.command)),
              flush=True)
        ranks = start(plan, args.command, result_dir, stopping)
    except UserError as err:
        sys.stderr.write("error: %s\n" % err)
        return EXIT_USER_ERROR
    if not ranks:  # a signal came before the first start
        return 128 + stopping()
    try:
        return supervise(ranks, args.grace_s, stopping, _Echo(ranks[0].log, ranks[0].log_start))
    finally:
        stop(ranks, args.grace_s)  # also when the launcher itself fails


if __name__ == "__main__":
    sys.exit(main())
