"""The npu_bridge stand-in's HCCL between real rank processes (NPU_STUB_HCCL_PORT; its
README, "HCCL"): all-reduce, broadcast and all-gather results against numpy over 2 and 4
plain Python ranks, the graph ops and the stand-in's optimizer and broadcast hook against
a plain Python rank, every failure (a timeout, ranks that disagree, a rank gone, a rank
never there) ending every process with one message in bounded time. A real 2-rank NPU
training launch is tests/test_npu_resume.py's."""
import re

import numpy as np
import pytest

from tests.hccl_helpers import finish_peers, free_port, peer_call, start_peers
from utils.tf_compat import tf

AR, BC, AG = "HcomAllReduce", "HcomBroadcast", "HcomAllGather"
BOUND_S = 15  # a failure is seen within this (the timeouts given + a process start)


def errors(finished):
    """Each rank's one error line (after "error: "), checking it failed."""
    lines = []
    for code, stderr, _, _ in finished:
        found = [l[len("error: "):] for l in stderr.splitlines() if l.startswith("error: ")]
        assert code == 1 and len(found) == 1, (code, stderr[-2000:])
        lines.append(found[0])
    return lines


@pytest.mark.parametrize("rank_size", [2, 4])
def test_collectives_between_plain_python_ranks(tmp_path, rank_size):
    rng = np.random.RandomState(rank_size)
    root = rank_size - 1
    values = [dict(sum=rng.randint(-50, 50, (2, 3)).astype(np.float32),
                   prod=rng.randint(1, 4, (3,)).astype(np.int32),
                   max=rng.randint(-9, 9, (2, 2)).astype(np.int32),
                   min=rng.uniform(-1, 1, (4,)).astype(np.float16),
                   bcast=[rng.uniform(size=(2,)).astype(np.float32),
                          rng.randint(0, 9, (1, 2)).astype(np.int32)],
                   gather=rng.randint(0, 99, (2, 2)).astype(np.float32))
              for _ in range(rank_size)]
    plans = []
    for mine in values:
        plans.append([peer_call(AR, "HcomAllReduce", [mine["sum"].tolist()], "float32",
                                reduction="sum"),
                      peer_call(AR, "HcomAllReduce_1", [mine["prod"].tolist()], "int32",
                                reduction="prod"),
                      peer_call(AR, "scope/HcomAllReduce", [mine["max"].tolist()], "int32",
                                reduction="max"),
                      peer_call(AR, "HcomAllReduce", [mine["min"].tolist()], "float16",
                                reduction="min"),  # the same op again: its call 2
                      peer_call(BC, "HcomBroadcast", [mine["bcast"][0].tolist()], "float32",
                                root_rank=root),
                      peer_call(BC, "HcomBroadcast_1", [mine["bcast"][1].tolist()], "int32",
                                root_rank=root),
                      peer_call(AG, "HcomAllGather", [mine["gather"].tolist()], "float32",
                                rank_size=rank_size)])
    finished = finish_peers(start_peers(tmp_path, plans))

    def each(name):
        return np.stack([v[name] for v in values])
    expected = [each("sum").sum(axis=0), each("prod").prod(axis=0, dtype=np.int32),
                each("max").max(axis=0),
                each("min").min(axis=0), values[root]["bcast"][0], values[root]["bcast"][1],
                np.concatenate([v["gather"] for v in values])]
    for code, stderr, results, _ in finished:
        assert code == 0, stderr[-2000:]
        assert len(results) == len(expected)
        for (value, dtype), want in zip([r[0] for r in results], expected):
            assert dtype == want.dtype.name
            np.testing.assert_array_equal(np.array(value, dtype), want)


def test_a_rank_in_another_collective_times_out_every_rank(tmp_path):
    """Rank 1 never calls HcomAllReduce 'a' a second time: it waits in a broadcast
    instead. With HCCL_EXEC_TIMEOUT=2 both processes end, each with the message naming
    the op, the call, the rank that waited and the missing one (and where it is)."""
    one = [0.5]
    plans = [[peer_call(AR, "a", [one], "float32", reduction="sum")] * 2,
             [peer_call(AR, "a", [one], "float32", reduction="sum"), {"sleep": 0.5},
              peer_call(BC, "b", [one], "float32", root_rank=0)]]
    finished = finish_peers(start_peers(tmp_path, plans, HCCL_EXEC_TIMEOUT="2"))
    first, second = errors(finished)
    assert first == second
    assert re.match(r"HCCL stand-in: HcomAllReduce 'a' call 2 timed out after 2\.\d s "
                    r"\(HCCL_EXEC_TIMEOUT / hccl_timeout\): rank 0 waited in it, rank 1 "
                    r"never joined it \(rank 1 is waiting in HcomBroadcast 'b' call 1\)$",
                    first), first
    assert max(seconds for _, _, _, seconds in finished) < BOUND_S


@pytest.mark.parametrize("odd, says", [
    (dict(values=[[1.0, 2.0, 3.0]]),
     "shapes: rank 0 [(2, 3)], rank 1 [(2, 3)], rank 2 [(3,)]"),
    (dict(dtype="int32"), "dtypes: rank 0 [float32], rank 1 [float32], rank 2 [int32]"),
    (dict(meta=dict(reduction="max", group="hccl_world_group")),
     "reduction: rank 0 sum, rank 1 sum, rank 2 max"),
    (dict(op=BC, meta=dict(root_rank=0, group="hccl_world_group")),
     "op: rank 0 HcomAllReduce, rank 1 HcomAllReduce, rank 2 HcomBroadcast"),
])
def test_ranks_that_disagree_fail_every_rank_at_once(tmp_path, odd, says):
    """The same op and call with another shape, dtype, reduction or op on rank 2: every
    rank fails as soon as all have come, not after the (long) timeout."""
    values = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]
    plans = [[peer_call(AR, "grads/HcomAllReduce", values, "float32", reduction="sum")]
             for _ in range(3)]
    plans[2][0] = dict(plans[2][0], **odd)
    finished = finish_peers(start_peers(tmp_path, plans, HCCL_EXEC_TIMEOUT="60"))
    lines = errors(finished)
    assert lines == [lines[0]] * 3
    assert re.match(r"HCCL stand-in: Hcom\w+ 'grads/HcomAllReduce' call 1: the ranks "
                    r"disagree on its ", lines[0]) and lines[0].endswith(says), lines[0]
    assert max(seconds for _, _, _, seconds in finished) < BOUND_S


def test_a_rank_that_ends_fails_the_others_at_once(tmp_path):
    one = [1.0]
    plans = [[peer_call(AR, "a", [one], "float32", reduction="sum")] * 2,
             [peer_call(AR, "a", [one], "float32", reduction="sum"), {"exit": 0}]]
    finished = finish_peers(start_peers(tmp_path, plans, HCCL_EXEC_TIMEOUT="60"))
    assert finished[1][0] == 0 and finished[1][2] == [[[[2.0], "float32"]]]
    line, = errors(finished[:1])
    assert line.startswith("HCCL stand-in: HcomAllReduce 'a' call 2: ") and (
        "rank 1, which left the job" in line or "rank 1 left the job" in line), line
    assert finished[0][3] < BOUND_S


def test_a_rank_that_never_comes_is_a_connect_timeout(tmp_path):
    """HCCL_CONNECT_TIMEOUT=1: rank 0 alone says which rank never connected; rank 1
    alone that rank 0 is not there."""
    alone = [[peer_call(AR, "a", [[1.0]], "float32", reduction="sum")]]
    zero_port, one_port = free_port(), free_port()
    peers = (start_peers(tmp_path / "zero", alone, RANK_SIZE=2, port=zero_port,
                         HCCL_CONNECT_TIMEOUT="1")
             + start_peers(tmp_path / "one", alone, ranks=[1], RANK_SIZE=2, port=one_port,
                           HCCL_CONNECT_TIMEOUT="1"))
    zero, one = errors(finish_peers(peers))
    assert zero == ("HCCL stand-in: connect timeout (HCCL_CONNECT_TIMEOUT): rank 0 waited for "
                    "rank 1 to connect to 127.0.0.1:%d (NPU_STUB_HCCL_PORT)" % zero_port)
    assert one.startswith("HCCL stand-in: connect timeout (HCCL_CONNECT_TIMEOUT 1.0 s): rank 1 "
                          "could not reach rank 0's coordinator on 127.0.0.1:%d" % one_port)


def test_the_job_and_its_clocks_come_from_the_environment(npu_bridge):
    from npu_bridge.hccl import _exchange
    job = dict(RANK_SIZE="4", RANK_ID="3", NPU_STUB_HCCL_PORT="29500", JOB_ID="7")
    assert _exchange.settings(job) == _exchange.Settings(3, 4, 29500, "7")
    assert _exchange.settings(dict(job, NPU_STUB_HCCL_PORT="")) is None  # one process
    assert _exchange.settings(dict(job, RANK_SIZE="1", RANK_ID="0")) is None
    with pytest.raises(ValueError, match="RANK_ID='4' is not one of 0-3"):
        _exchange.settings(dict(job, RANK_ID="4"))
    with pytest.raises(ValueError, match="NPU_STUB_HCCL_PORT='http'"):
        _exchange.settings(dict(job, NPU_STUB_HCCL_PORT="http"))
    assert _exchange.exec_timeout({}) == 120.0 and _exchange.connect_timeout({}) == 120.0
    assert _exchange.exec_timeout({"HCCL_EXEC_TIMEOUT": "2.5"}) == 2.5
    assert _exchange.exec_timeout({"HCCL_EXEC_TIMEOUT": "0"}) is None  # never
    assert _exchange.connect_timeout({"HCCL_CONNECT_TIMEOUT": "3"}) == 3.0
    with pytest.raises(ValueError, match="HCCL_EXEC_TIMEOUT='soon'"):
        _exchange.exec_timeout({"HCCL_EXEC_TIMEOUT": "soon"})


def test_npurunconfig_hccl_timeout_comes_first(npu_bridge, tmp_path, monkeypatch):
    from npu_bridge.hccl import _exchange
    from tests.test_npu_stub import npu_estimator
    from npu_bridge.estimator.npu.npu_estimator import _npu_options
    estimator = npu_estimator(npu_bridge, tmp_path, monkeypatch, hccl_timeout=7)
    assert _npu_options(estimator.config.session_config)["hccl_timeout"].i == 7
    assert _exchange.exec_timeout({"HCCL_EXEC_TIMEOUT": "2"}) == 7.0


@pytest.fixture
def rank_1(npu_bridge, monkeypatch):
    """This test process is rank 1 of 2 (the port in NPU_STUB_HCCL_PORT); its connection
    is closed afterwards."""
    port = free_port()
    for name, value in dict(RANK_SIZE="2", RANK_ID="1", JOB_ID="4242", HCCL_EXEC_TIMEOUT="30",
                            HCCL_CONNECT_TIMEOUT="30", NPU_STUB_HCCL_PORT=str(port)).items():
        monkeypatch.setenv(name, value)
    from npu_bridge.hccl import _exchange
    yield port
    _exchange.shutdown()


def test_graph_ops_against_a_plain_python_rank_0(rank_1, tmp_path):
    """The graph ops of rank 1 (this process) meet rank 0's plain Python calls by op name:
    results as numpy's, the all-reduce's gradient all-reduced too."""
    from npu_bridge.hccl import hccl_ops
    mine, theirs = np.float32([[1, 2, 3], [4, 5, 6]]), np.float32([[10, 20, 30], [0, 0, 7]])
    with tf.Graph().as_default():
        summed = hccl_ops.allreduce([tf.constant(mine)], "sum")  # a list of one, as callers
        biggest = hccl_ops.allreduce(tf.constant(mine[0]), "max")
        cast = hccl_ops.broadcast([tf.constant(mine), tf.constant([1, 1], tf.int64)], 0)
        gathered = hccl_ops.allgather(tf.constant(mine[:1]), 2)
        weights = tf.Variable([1.0, 2.0])
        loss = tf.reduce_sum(hccl_ops.allreduce(weights * 3.0, "sum"))
        gradient, = tf.gradients(loss, weights)
        names = [op.name for op in tf.get_default_graph().get_operations()
                 if op.type == "PyFunc"]
        assert names == ["HcomAllReduce", "HcomAllReduce_1", "HcomBroadcast", "HcomAllGather",
                         "HcomAllReduce_2", "gradients/HcomAllReduce_2_grad/HcomAllReduce"]
        plan = [peer_call(AR, names[0], [[theirs.tolist()]], "float32", reduction="sum"),
                peer_call(AR, names[1], [theirs[0].tolist()], "float32", reduction="max"),
                peer_call(BC, names[2], [theirs.tolist(), [5, 6]], ["float32", "int64"],
                          root_rank=0),
                peer_call(AG, names[3], [theirs[:1].tolist()], "float32", rank_size=2),
                peer_call(AR, names[4], [[0.0, 0.0]], "float32", reduction="sum"),
                peer_call(AR, names[5], [[1.0, 1.0]], "float32", reduction="sum")]
        peers = start_peers(tmp_path, [plan], port=rank_1, RANK_SIZE=2)
        with tf.Session() as session:
            session.run(weights.initializer)
            # One run each, in the peer's order: a plain Python rank waits in one at a time
            # (the all-reduce and its gradient together: the gradient may not need it).
            got = [session.run(t) for t in (summed, biggest, cast, gathered)]
            got += session.run([loss, gradient])
    (code, stderr, results, _), = finish_peers(peers)
    assert code == 0, stderr[-2000:]
    np.testing.assert_array_equal(got[0], [mine + theirs])
    np.testing.assert_array_equal(got[1], np.maximum(mine[0], theirs[0]))
    np.testing.assert_array_equal(got[2][0], theirs)
    assert got[2][1].dtype == np.int64 and got[2][1].tolist() == [5, 6]
    np.testing.assert_array_equal(got[3], np.concatenate([theirs[:1], mine[:1]]))
    assert got[4] == 3 * (1 + 2)  # rank 0 gave zeros
    np.testing.assert_array_equal(got[5], [6.0, 6.0])  # 3 x (1 + 1 from rank 0)
    assert results[0][0][0] == (mine + theirs)[None].tolist()


def test_optimizer_and_broadcast_hook_against_a_plain_python_rank_0(rank_1, tmp_path):
    """Rank 1 (this process) starts from its own weights, gets rank 0's from
    NPUBroadcastGlobalVariablesHook, then NPUDistributedOptimizer applies the mean of the
    two ranks' gradients, each from its own data."""
    from npu_bridge.estimator.npu.npu_hook import NPUBroadcastGlobalVariablesHook
    from npu_bridge.estimator.npu.npu_optimizer import NPUDistributedOptimizer
    rng = np.random.RandomState(0)
    data = [(rng.randn(4, 3).astype(np.float32), rng.randn(4).astype(np.float32))
            for _ in range(2)]
    own, root = np.float32([1, 1, 1]), np.float32([0.5, -1.0, 2.0])

    def gradient(x, y, w):  # of mean((x.w - y)^2)
        return (2.0 / len(y) * x.T.dot(x.dot(w) - y)).astype(np.float32)
    with tf.Graph().as_default():
        weights = tf.Variable(own)
        x, y = data[1]
        loss = tf.reduce_mean(tf.square(tf.linalg.matvec(tf.constant(x), weights) - y))
        train = NPUDistributedOptimizer(tf.train.GradientDescentOptimizer(0.1)).minimize(loss)
        hook = NPUBroadcastGlobalVariablesHook(0, "1")
        hook.begin()  # the broadcast ops, made now to name them to rank 0
        names = [op.name for op in tf.get_default_graph().get_operations()
                 if op.type == "PyFunc"]
        assert names == ["DistributedGradientDescentOptimizer_Allreduce/HcomAllReduce",
                         "HcomBroadcast"]
        theirs = gradient(data[0][0], data[0][1], root)
        peers = start_peers(tmp_path, [[
            peer_call(BC, names[1], [root.tolist()], "float32", root_rank=0),
            peer_call(AR, names[0], [theirs.tolist()], "float32", reduction="sum")]],
            port=rank_1, RANK_SIZE=2)
        with tf.train.SingularMonitoredSession(hooks=[hook]) as session:
            broadcast = session.run(weights)
            session.run(train)
            trained = session.run(weights)
    (code, stderr, _, _), = finish_peers(peers)
    assert code == 0, stderr[-2000:]
    np.testing.assert_array_equal(broadcast, root)
    mean = (theirs + gradient(x, y, root)) / 2
    np.testing.assert_allclose(trained, root - 0.1 * mean, rtol=1e-6)
