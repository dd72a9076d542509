"""Stand-in for npu_bridge/hccl/hccl_ops.py. There is no HCCL here and only one process:
each collective returns what it would if every rank of RANK_SIZE held this process's
value (data-parallel replicas that start equal and see equal data), so the numbers
downstream (an all-reduced mean, a broadcast) are the ones a real run of identical ranks
computes. The ops are named after the real ones (HcomAllReduce, HcomBroadcast, ...)."""
from npu_bridge.estimator.npu import util
from utils.tf_compat import tf


def _rank_size():
    size = util.get_ranksize()
    return int(size) if size.isdigit() else 1


def allreduce(tensor, reduction, fusion=1, fusion_id=-1, group="hccl_world_group"):
    if reduction not in ("sum", "prod", "max", "min"):
        raise ValueError("reduction must be sum, prod, max or min, got %s" % reduction)
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
    with tf.name_scope("HcomBroadcast"):
        return [tf.identity(t) for t in tensor]


def allgather(tensor, rank_size, group="hccl_world_group", fusion=0, fusion_id=-1):
    with tf.name_scope("HcomAllGather"):
        return tf.concat([tensor] * rank_size, axis=0)
