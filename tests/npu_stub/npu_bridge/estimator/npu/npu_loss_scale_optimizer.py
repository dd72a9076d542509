"""Stand-in for npu_bridge/estimator/npu/npu_loss_scale_optimizer.py (master, r1.15.0 and
r3.2.0 are the same).

The real optimizer learns of an overflow from the device's float-status register, read
after the gradients (set by any operator that overflowed in the step, the forward pass
included) and, with is_distributed, summed over the ranks by an HCCL all-reduce, so all
ranks skip the same steps. The stand-in looks at the gradients instead (the check TF's
contrib optimizer makes, and npu_bridge's own in the device's INF/NaN mode): a step is
skipped when a gradient is not finite."""
from npu_bridge import _contrib_mixed_precision as lso
from npu_bridge import record
from npu_bridge.estimator.npu.npu_loss_scale_manager import FixedLossScaleManager
from npu_bridge.hccl import hccl_ops
from utils.tf_compat import tf


class NPULossScaleOptimizer(lso.LossScaleOptimizer):
    """NPU implemented loss scale optimizer"""

    def __init__(self, opt, loss_scale_manager, is_distributed=False):
        record("NPULossScaleOptimizer", opt=type(opt).__name__,
               loss_scale_manager=loss_scale_manager, is_distributed=is_distributed)
        self._opt = opt
        self._loss_scale_manager = loss_scale_manager
        self._float_status = tf.constant([0.0], dtype=tf.float32)
        self._is_distributed = is_distributed
        # sic: the real one formats the optimizer module's type, "module".
        self._name = "NPULossScaleOptimizermodule"
        super(NPULossScaleOptimizer, self).__init__(opt=opt,
                                                    loss_scale_manager=loss_scale_manager)

    def __getattr__(self, attr):
        return getattr(self._opt, attr)

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """The wrapped optimizer's step only when no overflow; the manager updates either
        way. A skipped step leaves the weights and the global step as they were."""
        if self._enable_overflow_check():
            with tf.name_scope(self._name):
                status = tf.cast(tf.logical_not(tf.reduce_all(
                    [tf.reduce_all(tf.is_finite(g)) for g, _ in grads_and_vars
                     if g is not None])), tf.float32)
                if self._is_distributed:  # every rank's status, summed
                    status = hccl_ops.allreduce([status], "sum", fusion=0)[0]
                finite = tf.reduce_all(tf.equal(status, 0.0),
                                       name="overflow_status_reduce_all")
        else:
            finite = tf.constant(True, dtype=tf.bool)
        return self._apply_if(finite, grads_and_vars, global_step, name)

    def _enable_overflow_check(self):
        if isinstance(self._loss_scale_manager, FixedLossScaleManager):
            return self._loss_scale_manager.get_enable_overflow_check()
        return True
