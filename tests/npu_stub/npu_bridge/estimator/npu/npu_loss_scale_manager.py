"""Stand-in for npu_bridge/estimator/npu/npu_loss_scale_manager.py (master, r1.15.0 and
r3.2.0 are the same): TF 1.15 contrib's loss-scale managers, the fixed one with an
overflow-check switch, the exponential one with the NPU's own increase test."""
from npu_bridge import _contrib_mixed_precision as lsm_lib
from npu_bridge import record
from utils.tf_compat import tf

# The largest scale npu_bridge still multiplies by incr_ratio: about float32's maximum.
_FLOAT32_MAX = 3.4e+38


class FixedLossScaleManager(lsm_lib.FixedLossScaleManager):
    """A constant scale; below 1 is a ValueError. enable_overflow_check=False makes
    NPULossScaleOptimizer apply every step's gradients, finite or not."""

    def __init__(self, loss_scale, enable_overflow_check=True):
        self.stub_arguments = dict(loss_scale=loss_scale,
                                   enable_overflow_check=enable_overflow_check)
        if loss_scale < 1:
            raise ValueError("loss scale must be at least 1.")
        self._enable_overflow_check = enable_overflow_check
        super(FixedLossScaleManager, self).__init__(loss_scale=loss_scale)

    def get_enable_overflow_check(self):
        return self._enable_overflow_check

    def get_loss_scale(self):
        record("FixedLossScaleManager.get_loss_scale")
        return super(FixedLossScaleManager, self).get_loss_scale()


class ExponentialUpdateLossScaleManager(lsm_lib.ExponentialUpdateLossScaleManager):
    """contrib's manager; the scale grows only while it stays below 3.4e38 / incr_ratio."""

    def __init__(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2,
                 incr_ratio=2, decr_ratio=0.8):
        self.stub_arguments = dict(init_loss_scale=init_loss_scale,
                                   incr_every_n_steps=incr_every_n_steps,
                                   decr_every_n_nan_or_inf=decr_every_n_nan_or_inf,
                                   incr_ratio=incr_ratio, decr_ratio=decr_ratio)
        super(ExponentialUpdateLossScaleManager, self).__init__(
            init_loss_scale=init_loss_scale, incr_every_n_steps=incr_every_n_steps,
            decr_every_n_nan_or_inf=decr_every_n_nan_or_inf, incr_ratio=incr_ratio,
            decr_ratio=decr_ratio)

    def get_loss_scale(self):
        record("ExponentialUpdateLossScaleManager.get_loss_scale")
        return super(ExponentialUpdateLossScaleManager, self).get_loss_scale()

    def _may_increase(self):
        return tf.less(self._loss_scale, _FLOAT32_MAX / self._incr_ratio)
