"""Stand-in for npu_bridge/estimator/npu/npu_optimizer.py's NPUDistributedOptimizer and
allreduce (master, r1.15.0 and r3.2.0 are the same). NPUDistributedOptimizer is a
tf.train.Optimizer of its own, not a proxy: besides compute_gradients and apply_gradients
it passes on only get_slot, get_slot_names and variables."""
from npu_bridge import record
from npu_bridge.estimator.npu import util
from npu_bridge.estimator.npu.npu_common import NPUBasics
from npu_bridge.hccl import hccl_ops
from utils.tf_compat import tf


def allreduce(tensor, average=True):
    """The sum over the ranks (divided by the job's rank count when ``average``); the
    count comes from the job NPUBasics read, so an all-reduce needs one (JOB_ID). An
    IndexedSlices is all-gathered instead, its values and its indices."""
    size = NPUBasics("").size()
    if isinstance(tensor, tf.IndexedSlices):
        values = hccl_ops.allgather(tensor.values, size)
        indices = hccl_ops.allgather(tensor.indices, size)
        if average:
            values = tf.div(values, tf.cast(size, tensor.values.dtype))
        return tf.IndexedSlices(values, indices, dense_shape=tensor.dense_shape)
    summed = hccl_ops.allreduce(tensor, "sum")
    return tf.div(summed, tf.cast(size, dtype=tensor.dtype)) if average else summed


class NPUDistributedOptimizer(tf.train.Optimizer):
    """Averages the gradients over the ranks (HCCL all-reduce) in compute_gradients, when
    RANK_SIZE > 1 at graph build; otherwise the wrapped optimizer's gradients as they are."""

    def __init__(self, optimizer, is_weight_update_sharding=False, name=None):
        record("NPUDistributedOptimizer", optimizer=type(optimizer).__name__,
               is_weight_update_sharding=is_weight_update_sharding, name=name)
        if is_weight_update_sharding:
            raise NotImplementedError("npu_bridge stand-in: no weight-update sharding")
        if name is None:
            name = "Distributed{}".format(type(optimizer).__name__)
        self._optimizer = optimizer
        self._is_weight_update_sharding = is_weight_update_sharding
        super(NPUDistributedOptimizer, self).__init__(name=name, use_locking=False)

    def compute_gradients(self, *args, **kwargs):
        gradients = self._optimizer.compute_gradients(*args, **kwargs)
        rank_size = util.get_ranksize()
        if rank_size is None or int(rank_size) <= 1:
            return gradients
        # One collective per gradient: one after the other (hccl_ops explains why).
        with tf.name_scope(self._name + "_Allreduce"), hccl_ops.in_creation_order():
            return [(allreduce(grad, True) if grad is not None else None, var)
                    for grad, var in gradients]

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        return self._optimizer.apply_gradients(grads_and_vars, global_step, name)

    def get_slot(self, *args, **kwargs):
        return self._optimizer.get_slot(*args, **kwargs)

    def get_slot_names(self, *args, **kwargs):
        return self._optimizer.get_slot_names(*args, **kwargs)

    def variables(self, *args, **kwargs):
        return self._optimizer.variables(*args, **kwargs)
