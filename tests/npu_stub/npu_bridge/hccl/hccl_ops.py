"""Stand-in for npu_bridge/hccl/hccl_ops.py (master and r1.15.0): allreduce, broadcast and
allgather with the real signatures, in two modes.

One process (NPU_STUB_HCCL_PORT unset, or one rank): there is no HCCL and each collective
returns what it would if every rank of RANK_SIZE held this process's value (data-parallel
replicas that start equal and see equal data), so the numbers downstream (an all-reduced
mean, a broadcast) are the ones a real run of identical ranks computes.

Several processes (NPU_STUB_HCCL_PORT set, RANK_SIZE > 1, RANK_ID each rank's): each
collective is a tf.numpy_function op that sends this rank's tensors to rank 0's
coordinator over loopback TCP and returns the real result of every rank's (_exchange.py:
rendezvous, matching, timeouts). The ops keep the real names (HcomAllReduce,
HcomBroadcast, HcomAllGather), and HcomAllReduce keeps the real gradient (an all-reduced
sum of the incoming gradient).

Order. A collective blocks the TensorFlow thread that runs it until every rank has run
it, and the inter-op pool is small (one thread per core). Ranks that ran many independent
collectives in different orders could each fill their pool with ones the other ranks
have not reached: a deadlock, where HCCL on the device runs them in the order GE compiled
them. So the stand-in's own callers, which make many at once (NPUDistributedOptimizer, one
per gradient; broadcast_global_variables, one per variable, fused on the device), make
them inside ``in_creation_order()``: each waits by a control dependency for the one made
before it, so one rank runs them one at a time, in the same order as every other rank.
Only there: a chain across unrelated collectives would make running one run the others.
The exchange itself matches contributions by op name and call number, not by arrival, so
independent collectives that do run concurrently still meet their own kind.
"""
import contextlib
import threading

from npu_bridge.estimator.npu import util
from npu_bridge.hccl import _exchange
from tensorflow.python.framework import ops
from utils.tf_compat import tf

REDUCTIONS = ("sum", "prod", "max", "min")
_GRADIENT = "NpuStubHcomAllReduce"
_ORDER = threading.local()


def _rank_size():
    size = util.get_ranksize()
    return int(size) if size.isdigit() else 1


def allreduce(tensor, reduction, fusion=1, fusion_id=-1, group="hccl_world_group"):
    if reduction not in REDUCTIONS:
        raise ValueError("reduction must be sum, prod, max or min, got %s" % reduction)
    if _exchange.settings() is not None:
        # A list of one tensor, as callers pass, becomes one tensor (as in the real op).
        return _exchanged(_exchange.ALLREDUCE, [tf.convert_to_tensor(tensor)],
                          dict(reduction=reduction), group)[0]
    size = _rank_size()
    with tf.name_scope("HcomAllReduce"):
        tensor = tf.convert_to_tensor(tensor)  # a list of one tensor, as callers pass
        if reduction == "sum":
            return tf.multiply(tensor, tf.cast(size, tensor.dtype))
        if reduction == "prod":
            return tf.pow(tensor, tf.cast(size, tensor.dtype))
        return tf.identity(tensor)


def broadcast(tensor, root_rank, fusion=2, fusion_id=0, group="hccl_world_group"):
    """``tensor`` is a list, as in the real op; returns the list of broadcast values."""
    job = _exchange.settings()
    if job is not None:
        if not 0 <= root_rank < job.size:
            raise ValueError("root_rank %s is not a rank of RANK_SIZE=%d" % (root_rank,
                                                                            job.size))
        return _exchanged(_exchange.BROADCAST, [tf.convert_to_tensor(t) for t in tensor],
                          dict(root_rank=root_rank), group)
    with tf.name_scope("HcomBroadcast"):
        return [tf.identity(t) for t in tensor]


def allgather(tensor, rank_size, group="hccl_world_group", fusion=0, fusion_id=-1):
    job = _exchange.settings()
    if job is not None:
        tensor = tf.convert_to_tensor(tensor)
        if rank_size != job.size:
            raise ValueError("allgather's rank_size is %s but the job has RANK_SIZE=%d"
                             % (rank_size, job.size))
        if tensor.shape.ndims == 0:
            raise ValueError("allgather concatenates along the first dimension: %s is a "
                             "scalar" % tensor.name)
        return _exchanged(_exchange.ALLGATHER, [tensor], dict(rank_size=rank_size),
                          group)[0]
    with tf.name_scope("HcomAllGather"):
        return tf.concat([tensor] * rank_size, axis=0)


@contextlib.contextmanager
def in_creation_order():
    """Stand-in only: the collectives made inside run one after the other, in the order
    they were made (see the module's docstring); nothing changes in one-process mode."""
    outer = getattr(_ORDER, "chain", None)
    _ORDER.chain = []
    try:
        yield
    finally:
        _ORDER.chain = outer


def _exchanged(op_type, tensors, attributes, group):
    """The output tensors of one collective op over the real ranks: a tf.numpy_function
    named ``op_type`` whose Python side hands this rank's values to _exchange.client()."""
    if tf.executing_eagerly():
        raise RuntimeError("npu_bridge stand-in: the HCCL ops are graph ops; build them in a "
                           "graph (tf.Graph().as_default())")
    if group != _exchange.WORLD_GROUP:
        raise NotImplementedError("npu_bridge stand-in: only %s, no group %r"
                                  % (_exchange.WORLD_GROUP, group))
    meta = dict(attributes, group=group)
    named = []

    def run(*arrays):
        return _exchange.client().collective(op_type, named[0], meta, arrays)

    chain = getattr(_ORDER, "chain", None)
    graph = tf.get_default_graph()
    previous = [chain[-1]] if chain and chain[-1].graph is graph else []
    overrides = {"PyFunc": _GRADIENT} if op_type == _exchange.ALLREDUCE else {}
    with tf.control_dependencies(previous), graph.gradient_override_map(overrides):
        outputs = tf.numpy_function(run, tensors, [t.dtype for t in tensors], name=op_type)
    named.append(outputs[0].op.name)
    if chain is not None:
        chain.append(outputs[0].op)
    for output, given in zip(outputs, tensors):
        dims = given.shape.as_list() if given.shape.ndims is not None else None
        if op_type == _exchange.ALLGATHER and dims is not None and dims[0] is not None:
            dims[0] *= attributes["rank_size"]
        output.set_shape(dims)
    return outputs


def _allreduce_grad(op, grad):
    """The real one's: the gradient all-reduced (sum, not fused). It looks the module up
    afresh, since tests import the stand-in again while the registration stays."""
    from npu_bridge.hccl import hccl_ops
    return hccl_ops.allreduce(grad, "sum", fusion=0)


try:
    ops.RegisterGradient(_GRADIENT)(_allreduce_grad)
except KeyError:  # registered by an earlier import of the stand-in in this process
    pass
