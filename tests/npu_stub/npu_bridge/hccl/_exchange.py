"""Stand-in only (npu_bridge has no such module): how the HCCL stand-in's collectives reach
the other rank processes, over loopback TCP. Standard library and numpy only, no
TensorFlow, so a plain Python process can be a rank too (the peers of
tests/test_npu_hccl.py).

The job. With NPU_STUB_HCCL_PORT set and more than one rank (RANK_SIZE, else
CM_WORKER_SIZE, as npu_bridge counts them), this process is rank RANK_ID of a real
multi-process job; otherwise (``settings()`` is None) hccl_ops plays every rank in one
process, as before.

Rendezvous. Rank 0 hosts the Coordinator: daemon threads listening on
127.0.0.1:NPU_STUB_HCCL_PORT. Every rank, rank 0 included, is a Client: at its first
collective it connects (retrying until rank 0 listens), says hello (rank, RANK_SIZE,
JOB_ID) and waits until every rank has, all within HCCL_CONNECT_TIMEOUT seconds (HCCL's
link set-up timeout; default 120 s, as HCCL's).

Matching. A contribution is keyed by (op name, call number): the op's name in its graph
(``DistributedMomentumOptimizer_Allreduce/HcomAllReduce_3``) and how many times this
process has run an op of that name, from 1. Ranks build the same graph, so the same key
means the same collective on every rank, whatever order TensorFlow happens to run
independent ops in. Once every rank has contributed to a key, the ranks must agree on the
op, its attributes (reduction, root rank...), and the shapes and dtypes; then each gets
the result (the reduction in rank order, the root's tensors, the concatenation in rank
order), else every rank gets an error naming what differs.

Timeouts and failures. A rank waits in a collective at most HCCL_EXEC_TIMEOUT seconds
(NPURunConfig's hccl_timeout, when NPUEstimator was given one, comes first; default here
120 s, HCCL's is 1836 s; 0 waits for ever, as on Atlas A2). The stand-in takes any number
of seconds, where HCCL on Atlas training cards rounds down to a multiple of 68 and waits
at least 68. A timeout names the op, the call, the ranks that waited and the missing ones
(and where those are instead); a rank whose connection closes (its process ended) fails at
once every collective waiting for it. The first failure aborts the job: every rank's
waiting and later collectives raise HcclError with its message, so every process ends
instead of hanging.

Messages are pickled (loopback only, between the processes of one test job).
"""
import collections
import os
import pickle
import socket
import struct
import threading
import time

import numpy as np

from npu_bridge import record

HOST = "127.0.0.1"
PORT_VARIABLE = "NPU_STUB_HCCL_PORT"
WORLD_GROUP = "hccl_world_group"
# HCCL's own defaults: 120 s to connect, 1836 s to execute (CANN 7.0 on; 1800 s in 6.3,
# 600 s in 6.0.RC1). The stand-in's execution default is short so that a test that goes
# wrong ends in minutes.
DEFAULT_CONNECT_TIMEOUT_S = 120.0
DEFAULT_EXEC_TIMEOUT_S = 120.0
# Session options given to NPUEstimator that HCCL reads (NPURunConfig's hccl_timeout,
# ge.exec.hcclExecuteTimeOut): the stand-in's NPUEstimator fills it, per process as GE.
SESSION_OPTIONS = {}

REDUCTIONS = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}
ALLREDUCE, BROADCAST, ALLGATHER = "HcomAllReduce", "HcomBroadcast", "HcomAllGather"

_POLL_S = 0.05
_LATE_S = 5.0  # a client gives up this long after the coordinator should have answered
_HEADER = struct.Struct("!Q")
# What every rank must agree on, in the order it is checked, and how an error names it.
_AGREED = (("op", "op"), ("group", "group"), ("reduction", "reduction"),
           ("root_rank", "root rank"), ("rank_size", "rank_size"), ("shapes", "shapes"),
           ("dtypes", "dtypes"))

Settings = collections.namedtuple("Settings", "rank size port job_id")


class HcclError(RuntimeError):
    """A collective that cannot complete (a timeout, ranks that disagree, a rank gone).
    Raised inside the op, so session.run fails with it (tf.errors.UnknownError)."""


def settings(environ=None):
    """This process's place in a multi-process job, or None: one process plays every rank
    (NPU_STUB_HCCL_PORT unset or empty, or a single rank). A bad value is a ValueError."""
    environ = os.environ if environ is None else environ
    port = environ.get(PORT_VARIABLE, "").strip()
    size = _rank_size(environ)
    if not port or size <= 1:
        return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("%s=%r: give the TCP port rank 0 listens on, 1-65535"
                         % (PORT_VARIABLE, port))
    rank = environ.get("RANK_ID", "").strip()
    if not rank.isdigit() or int(rank) >= size:
        raise ValueError("%s is set, so this process is one rank of RANK_SIZE=%d, but "
                         "RANK_ID=%r is not one of 0-%d" % (PORT_VARIABLE, size, rank,
                                                             size - 1))
    return Settings(int(rank), size, int(port), environ.get("JOB_ID", ""))


def _rank_size(environ):
    """npu_bridge's count (estimator/npu/util.get_ranksize): RANK_SIZE, else
    CM_WORKER_SIZE, else 1."""
    if environ.get("CM_WORKER_SIZE") is not None and environ.get("RANK_SIZE") is not None:
        raise ValueError("RANK_SIZE and CM_WORK_SIZE cannot be configured at the same time")
    value = environ.get("RANK_SIZE", environ.get("CM_WORKER_SIZE", "1"))
    return int(value) if value.isdigit() else 1


def connect_timeout(environ=None):
    """HCCL_CONNECT_TIMEOUT in seconds (HCCL: 120 by default, 120-7200; here any positive
    number)."""
    return _seconds(environ, "HCCL_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S) or \
        DEFAULT_CONNECT_TIMEOUT_S


def exec_timeout(environ=None):
    """Seconds a rank waits in a collective, None for ever: NPURunConfig's hccl_timeout,
    else HCCL_EXEC_TIMEOUT, else 120; 0 means for ever."""
    if SESSION_OPTIONS.get("hccl_timeout") is not None:
        return float(SESSION_OPTIONS["hccl_timeout"]) or None
    return _seconds(environ, "HCCL_EXEC_TIMEOUT", DEFAULT_EXEC_TIMEOUT_S) or None


def _seconds(environ, name, default):
    environ = os.environ if environ is None else environ
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError("%s=%r: give a number of seconds" % (name, value))
    return seconds


def describe(op, key):
    """How messages name a collective: HcomAllReduce 'name' call 3."""
    return "%s '%s' call %d" % (op, key[0], key[1])


def _ranks(ranks):
    ranks = sorted(ranks)
    return "rank%s %s" % ("s" if len(ranks) > 1 else "", ", ".join(str(r) for r in ranks))


# ----------------------------------------------------------------------------- the wire

class _Peer(object):
    """One end of a connection: frames (an 8-byte length, then a pickle) sent whole even
    when several threads send."""

    def __init__(self, sock):
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, message, quiet=False):
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        try:
            with self._lock:
                self.sock.sendall(_HEADER.pack(len(data)))
                self.sock.sendall(data)
        except OSError:
            if not quiet:
                raise

    def receive(self):
        """The next message, or None once the connection has ended."""
        try:
            header = self._exactly(_HEADER.size)
            data = None if header is None else self._exactly(_HEADER.unpack(header)[0])
            return None if data is None else pickle.loads(data)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None

    def _exactly(self, count):
        chunks = []
        while count:
            chunk = self.sock.recv(min(count, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _daemon(target, name, *args):
    thread = threading.Thread(target=target, name=name, args=args)
    thread.daemon = True  # a rank's process never waits for these to end
    thread.start()
    return thread


# ----------------------------------------------------------------------------- rank 0

class _Gathering(object):
    """One collective (one key) as the ranks arrive: what each sent, when each came and
    the time each gives up (None: never)."""

    def __init__(self):
        self.meta, self.arrays, self.arrived, self.deadlines = {}, {}, {}, {}

    def op(self):
        return self.meta[min(self.meta)]["op"]


class Coordinator(object):
    """Rank 0's rendezvous: a thread accepting connections, one reading each rank, one
    watching the clocks. Contributions are matched by key; once every rank has
    contributed, each gets the result (rank 0 last, so that rank 0's process cannot end
    before the others have theirs). The first failure aborts the job."""

    def __init__(self, size, port, job_id):
        self.size, self.port, self.job_id = size, port, job_id
        self._lock = threading.Lock()
        self._peers = {}  # rank -> _Peer, while connected
        self._connect_deadlines = {}
        self._ready = False
        self._left = set()
        self._pending = {}  # key -> _Gathering
        self._failure = None
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((HOST, port))
            self._listener.listen(size + 8)
        except OSError as err:
            self._listener.close()
            raise HcclError("HCCL stand-in: rank 0 cannot listen on %s:%d (%s): %s; set %s "
                            "to a free port" % (HOST, port, PORT_VARIABLE,
                                                err.strerror or err, PORT_VARIABLE))
        _daemon(self._accept, "hccl-stub-accept")
        _daemon(self._watch, "hccl-stub-watch")

    def close(self):
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            peers = list(self._peers.values())
        for peer in peers:
            peer.close()

    def _accept(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:  # closed
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _daemon(self._serve, "hccl-stub-rank", _Peer(sock))

    def _serve(self, peer):
        hello = peer.receive()
        rank = self._join(peer, hello[1]) if hello and hello[0] == "hello" else None
        if rank is None:
            peer.close()
            return
        while True:
            message = peer.receive()
            if message is None:
                break
            try:
                sends = self._contribute(rank, *message[1:])
            except Exception as err:  # a bug here must end the job, not hang it
                with self._lock:
                    sends = self._abort("HCCL stand-in: rank 0's coordinator failed: %r" % err)
            self._send(sends)
        self._send(self._leave(rank))

    @staticmethod
    def _send(sends):
        for peer, message in sends:
            peer.send(message, quiet=True)  # a peer gone is seen by its reader

    def _join(self, peer, hello):
        rank = hello["rank"]
        with self._lock:
            problem = self._refusal(hello)
            if problem is None:
                self._peers[rank] = peer
                self._connect_deadlines[rank] = time.time() + hello["connect_timeout"]
                self._ready = len(self._peers) == self.size
                everyone = list(self._peers.values()) if self._ready else []
        if problem is not None:
            peer.send(("error", None, "HCCL stand-in: " + problem), quiet=True)
            return None
        self._send([(p, ("ready",)) for p in everyone])
        return rank

    def _refusal(self, hello):
        rank = hello["rank"]
        if self._failure is not None:
            return self._failure
        if hello["size"] != self.size:
            return ("rank %d has RANK_SIZE=%d but rank 0 has %d; every rank needs the same "
                    "RANK_SIZE" % (rank, hello["size"], self.size))
        if hello["job_id"] != self.job_id:
            return ("rank %d of JOB_ID %r reached rank 0 of JOB_ID %r on %s:%d: two jobs "
                    "share %s" % (rank, hello["job_id"], self.job_id, HOST, self.port,
                                  PORT_VARIABLE))
        if rank in self._peers or rank in self._left or self._ready:
            return "rank %d connected twice (two processes with RANK_ID=%d?)" % (rank, rank)
        return None

    def _contribute(self, rank, key, meta, arrays, timeout):
        now = time.time()
        with self._lock:
            if self._failure is not None:
                return [(self._peers[rank], ("abort", self._failure))]
            gathering = self._pending.setdefault(key, _Gathering())
            gathering.meta[rank], gathering.arrays[rank] = meta, arrays
            gathering.arrived[rank] = now
            gathering.deadlines[rank] = None if timeout is None else now + timeout
            gone = self._left - set(gathering.meta)
            if gone:
                return self._abort("HCCL stand-in: %s: %s waited for %s, which left the job "
                                   "(process ended or connection closed) without joining it"
                                   % (describe(meta["op"], key), _ranks(gathering.meta),
                                      _ranks(gone)))
            if len(gathering.meta) < self.size:
                return []
            del self._pending[key]
            try:
                results = combine(key, gathering.meta, gathering.arrays, self.size)
            except HcclError as err:
                return self._abort(str(err))
            return [(self._peers[r], ("result", key, results))
                    for r in sorted(self._peers, reverse=True)]

    def _leave(self, rank):
        with self._lock:
            self._peers.pop(rank, None)
            self._left.add(rank)
            stranded = [(key, g) for key, g in sorted(self._pending.items())
                        if rank not in g.meta]
            if self._failure is not None or not stranded:
                return []
            key, gathering = stranded[0]
            return self._abort("HCCL stand-in: %s: rank %d left the job (process ended or "
                               "connection closed) while %s waited for it"
                               % (describe(gathering.op(), key), rank,
                                  _ranks(gathering.meta)))

    def _abort(self, message):
        """Called with the lock held: the job fails with ``message``; every connected rank
        is told (its waiting and later collectives raise it)."""
        if self._failure is None:
            self._failure = message
        self._pending.clear()
        return [(self._peers[r], ("abort", self._failure))
                for r in sorted(self._peers, reverse=True)]  # rank 0 last, as results

    def _watch(self):
        while not self._closed:
            time.sleep(_POLL_S)
            with self._lock:
                message = None if self._failure else self._overdue(time.time())
                sends = self._abort(message) if message else []
            self._send(sends)

    def _overdue(self, now):
        """The message of the first clock that ran out, or None."""
        if not self._ready:
            late = [r for r, deadline in self._connect_deadlines.items() if now > deadline]
            if late:
                return ("HCCL stand-in: connect timeout (HCCL_CONNECT_TIMEOUT): %s waited "
                        "for %s to connect to %s:%d (%s)" % (
                            _ranks(self._peers), _ranks(set(range(self.size)) -
                                                        set(self._peers)),
                            HOST, self.port, PORT_VARIABLE))
            return None
        for key, gathering in sorted(self._pending.items()):
            late = [r for r, deadline in gathering.deadlines.items()
                    if deadline is not None and now > deadline]
            if late:
                return self._timeout_message(key, gathering, late[0], now)
        return None

    def _timeout_message(self, key, gathering, rank, now):
        missing = sorted(set(range(self.size)) - set(gathering.meta))
        waited = now - gathering.arrived[rank]
        return ("HCCL stand-in: %s timed out after %.1f s (HCCL_EXEC_TIMEOUT / hccl_timeout): "
                "%s waited in it, %s never joined it (%s)" % (
                    describe(gathering.op(), key), waited, _ranks(gathering.meta),
                    _ranks(missing), "; ".join(self._whereabouts(r) for r in missing)))

    def _whereabouts(self, rank):
        """Where a missing rank is instead, from what the coordinator has seen."""
        if rank in self._left:
            return "rank %d left the job" % rank
        if rank not in self._peers:
            return "rank %d never connected" % rank
        elsewhere = [describe(g.op(), key) for key, g in sorted(self._pending.items())
                     if rank in g.meta]
        if elsewhere:
            return "rank %d is waiting in %s" % (rank, ", ".join(elsewhere))
        return "rank %d is in no collective: busy elsewhere or done" % rank


def combine(key, metas, arrays, size):
    """The result every rank gets, once ranks 0..size-1 have sent ``metas`` (what each
    says the collective is) and ``arrays`` (their tensors; None from a broadcast's
    non-root ranks); HcclError when the ranks disagree."""
    for field, words in _AGREED:
        values = [metas[r].get(field) for r in range(size)]
        if any(value != values[0] for value in values):
            raise HcclError("HCCL stand-in: %s: the ranks disagree on its %s: %s" % (
                describe(metas[0]["op"], key), words,
                ", ".join("rank %d %s" % (r, _show(v)) for r, v in enumerate(values))))
    try:
        return _compute(metas[0], arrays, size)
    except (ValueError, TypeError) as err:
        raise HcclError("HCCL stand-in: %s cannot be computed: %s"
                        % (describe(metas[0]["op"], key), err))


def _compute(meta, arrays, size):
    op = meta["op"]
    if op == ALLREDUCE:
        reduce = REDUCTIONS[meta["reduction"]]
        result = np.array(arrays[0][0], copy=True)
        for rank in range(1, size):  # in rank order, in the tensor's own dtype
            result = reduce(result, arrays[rank][0]).astype(result.dtype, copy=False)
        return [result]
    if op == BROADCAST:
        return arrays[meta["root_rank"]]
    if op == ALLGATHER:
        return [np.concatenate([arrays[r][0] for r in range(size)], axis=0)]
    raise ValueError("%s is not emulated" % op)


def _show(value):
    if isinstance(value, list):
        return "[%s]" % ", ".join(_show(v) for v in value)
    if isinstance(value, tuple):
        return "(%s%s)" % (", ".join(str(v) for v in value), "," if len(value) == 1 else "")
    return str(value)


# ----------------------------------------------------------------------------- every rank

class Client(object):
    """One rank's end of the job: connects (rank 0 first starts the Coordinator), then sends
    each collective's contribution and waits for its result. Several threads may wait at
    once; a daemon thread reads the answers."""

    def __init__(self, job, environ=None):
        self.job = job
        self.coordinator = None
        self._lock = threading.Lock()
        self._waiting = {}  # key -> [Event, answer]
        self._counts = collections.Counter()
        self._broken = None
        started = time.time()
        self._connect_s = connect_timeout(environ)
        if job.rank == 0:
            self.coordinator = Coordinator(job.size, job.port, job.job_id)
        self._peer = self._connect(started + self._connect_s)
        _daemon(self._read, "hccl-stub-client")

    def _connect(self, deadline):
        job = self.job
        while True:
            try:
                sock = socket.create_connection((HOST, job.port), timeout=1.0)
                break
            except OSError as err:
                if time.time() >= deadline:
                    raise HcclError(
                        "HCCL stand-in: connect timeout (HCCL_CONNECT_TIMEOUT %.1f s): rank %d "
                        "could not reach rank 0's coordinator on %s:%d (%s): %s; is rank 0 "
                        "running, with the same %s?" % (
                            self._connect_s, job.rank, HOST, job.port, PORT_VARIABLE,
                            err.strerror or err, PORT_VARIABLE))
                time.sleep(_POLL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _Peer(sock)
        left = max(deadline - time.time(), 0.1)
        peer.send(("hello", {"rank": job.rank, "size": job.size, "job_id": job.job_id,
                             "pid": os.getpid(), "connect_timeout": left}))
        sock.settimeout(left + _LATE_S)
        answer = peer.receive()
        sock.settimeout(None)
        if answer is not None and answer[0] == "ready":
            return peer
        peer.close()
        if answer is not None and answer[0] in ("error", "abort"):
            raise HcclError(answer[-1])
        if time.time() < deadline:
            raise HcclError("HCCL stand-in: rank %d: rank 0's coordinator on %s:%d closed the "
                            "connection before every rank had joined (rank 0's process "
                            "ended?)" % (job.rank, HOST, job.port))
        raise HcclError("HCCL stand-in: connect timeout (HCCL_CONNECT_TIMEOUT %.1f s): rank %d "
                        "reached %s:%d but not every rank joined"
                        % (self._connect_s, job.rank, HOST, job.port))

    def collective(self, op, name, meta, arrays):
        """This rank's result of collective ``op`` (ALLREDUCE, BROADCAST, ALLGATHER) of the
        graph op ``name``, given its input ``arrays`` and attributes ``meta``."""
        timeout = exec_timeout()
        arrays = [np.asarray(a) for a in arrays]
        meta = dict(meta, op=op, shapes=[a.shape for a in arrays],
                    dtypes=[a.dtype.name for a in arrays])
        if op == BROADCAST and meta["root_rank"] != self.job.rank:
            arrays = None  # only the root's tensors travel
        with self._lock:
            self._counts[name] += 1
            key = (name, self._counts[name])
            if self._broken is not None:
                raise HcclError(self._broken)
            slot = self._waiting[key] = [threading.Event(), None]
        try:
            self._peer.send(("call", key, meta, arrays, timeout))
        except OSError as err:
            self._fail("HCCL stand-in: rank %d lost its connection to rank 0's coordinator "
                       "(%s)" % (self.job.rank, err))
        if not slot[0].wait(None if timeout is None else timeout + _LATE_S):
            raise HcclError("HCCL stand-in: rank %d: no answer to %s from rank 0's "
                            "coordinator within %.1f s" % (self.job.rank, describe(op, key),
                                                          timeout + _LATE_S))
        kind, payload = slot[1]
        if kind != "result":
            raise HcclError(payload)
        return payload

    def _read(self):
        while True:
            message = self._peer.receive()
            if message is None:
                self._fail("HCCL stand-in: rank %d lost its connection to rank 0's "
                           "coordinator on %s:%d (rank 0's process ended?)"
                           % (self.job.rank, HOST, self.job.port))
                return
            if message[0] == "abort":
                self._fail(message[1])
            elif message[0] == "result":
                with self._lock:
                    slot = self._waiting.pop(message[1], None)
                if slot is not None:
                    slot[1] = ("result", message[2])
                    slot[0].set()

    def _fail(self, message):
        """Every waiting and later collective of this rank raises ``message``."""
        with self._lock:
            if self._broken is None:
                self._broken = message
            waiting, self._waiting = list(self._waiting.values()), {}
        for slot in waiting:
            slot[1] = ("error", self._broken)
            slot[0].set()

    def close(self):
        self._fail("HCCL stand-in: rank %d's connection was closed" % self.job.rank)
        self._peer.close()
        if self.coordinator is not None:
            self.coordinator.close()


_CLIENT_LOCK = threading.Lock()
_CLIENT = []  # this process's Client, once connected
_FAILED = []  # or why it could not connect: later collectives fail at once with it


def client():
    """This process's Client, connected at the first call (HcclError if it cannot be)."""
    with _CLIENT_LOCK:
        if _FAILED:
            raise HcclError(_FAILED[0])
        if not _CLIENT:
            job = settings()
            if job is None:
                raise HcclError("HCCL stand-in: this process is no rank of a multi-process "
                                "job: set %s and RANK_SIZE > 1" % PORT_VARIABLE)
            try:
                _CLIENT.append(Client(job))
            except HcclError as err:
                _FAILED.append(str(err))
                raise
            record("hccl.Client", rank=job.rank, rank_size=job.size, port=job.port)
        return _CLIENT[0]


def shutdown():
    """Closes this process's Client (and rank 0's Coordinator): for tests that play a rank
    in the test process."""
    with _CLIENT_LOCK:
        for made in _CLIENT:
            made.close()
        del _CLIENT[:], _FAILED[:]
    SESSION_OPTIONS.clear()
