from npu_bridge import record
from utils.tf_compat import tf


class _Manager(object):
    def get_loss_scale(self):
        """The scale the manager was given, as a tensor named npu_stub_loss_scale: the
        stand-in neither scales the loss nor checks for overflow, so it never moves."""
        record(type(self).__name__ + ".get_loss_scale")
        return tf.constant(float(self._initial), tf.float32, name="npu_stub_loss_scale")


class FixedLossScaleManager(_Manager):
    def __init__(self, loss_scale, enable_overflow_check=True):
        self.stub_arguments = dict(loss_scale=loss_scale,
                                   enable_overflow_check=enable_overflow_check)
        self._initial = loss_scale


class ExponentialUpdateLossScaleManager(_Manager):
    def __init__(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2,
                 incr_ratio=2, decr_ratio=0.8):
        self.stub_arguments = dict(init_loss_scale=init_loss_scale,
                                   incr_every_n_steps=incr_every_n_steps,
                                   decr_every_n_nan_or_inf=decr_every_n_nan_or_inf,
                                   incr_ratio=incr_ratio, decr_ratio=decr_ratio)
        self._initial = init_loss_scale
