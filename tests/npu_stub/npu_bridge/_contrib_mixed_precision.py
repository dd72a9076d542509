"""Not part of npu_bridge: TF 1.15's tensorflow/contrib/mixed_precision/python/
loss_scale_manager.py and loss_scale_optimizer.py as npu_bridge's loss scaling inherits
them (TF 2.x has no tf.contrib): the managers' variables and update rule, the optimizer's
scaled loss and unscaled gradients."""
from utils.tf_compat import tf


class LossScaleManager(object):
    def get_loss_scale(self):
        raise NotImplementedError

    def update_loss_scale(self, finite_grads):
        raise NotImplementedError


class FixedLossScaleManager(LossScaleManager):
    """A constant scale (a float32 tensor); update_loss_scale is a no-op."""

    def __init__(self, loss_scale):
        if loss_scale < 1:
            raise ValueError("loss scale must be at least 1.")
        self._loss_scale = tf.convert_to_tensor(loss_scale, dtype=tf.float32)

    def get_loss_scale(self):
        return self._loss_scale

    def update_loss_scale(self, finite_grads):
        del finite_grads
        return tf.no_op()


class ExponentialUpdateLossScaleManager(LossScaleManager):
    """The scale, a non-trainable float32 variable named loss_scale (saved in checkpoints,
    with good_steps and bad_steps), times incr_ratio after incr_every_n_steps finite steps
    in a row, times decr_ratio (not below 1) after decr_every_n_nan_or_inf non-finite steps
    (not necessarily in a row). Either change resets both counts."""

    def __init__(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2,
                 incr_ratio=2, decr_ratio=0.8):
        self._incr_every_n_steps = incr_every_n_steps
        self._decr_every_n_nan_or_inf = decr_every_n_nan_or_inf
        self._incr_ratio = incr_ratio
        self._decr_ratio = decr_ratio
        self._loss_scale = tf.Variable(tf.convert_to_tensor(init_loss_scale, tf.float32),
                                       name="loss_scale", dtype=tf.float32, trainable=False)
        self._num_good_steps = tf.Variable(0, name="good_steps", dtype=tf.int32,
                                           trainable=False)
        self._num_bad_steps = tf.Variable(0, name="bad_steps", dtype=tf.int32,
                                          trainable=False)

    def _reset_stats(self):
        return tf.group(tf.assign(self._num_good_steps, 0), tf.assign(self._num_bad_steps, 0))

    def get_loss_scale(self):
        return self._loss_scale

    def update_loss_scale(self, finite_grads):
        return tf.cond(finite_grads, self._after_finite, self._after_overflow)

    def _may_increase(self):
        """Whether the larger scale is still a float32 (npu_bridge tests it otherwise)."""
        return tf.is_finite(self._loss_scale * self._incr_ratio)

    def _after_finite(self):
        def increase():
            larger = tf.cond(self._may_increase(), lambda: self._loss_scale * self._incr_ratio,
                             lambda: self._loss_scale)
            return tf.group(tf.assign(self._loss_scale, larger), self._reset_stats())
        return tf.cond(self._num_good_steps + 1 >= self._incr_every_n_steps, increase,
                       lambda: tf.assign_add(self._num_good_steps, 1).op)

    def _after_overflow(self):
        def decrease():
            smaller = tf.maximum(1.0, self._loss_scale * self._decr_ratio)
            return tf.group(tf.assign(self._loss_scale, smaller), self._reset_stats())

        def count():
            return tf.group(tf.assign_add(self._num_bad_steps, 1),
                            tf.assign(self._num_good_steps, 0))
        return tf.cond(self._num_bad_steps + 1 >= self._decr_every_n_nan_or_inf, decrease,
                       count)


class LossScaleOptimizer(tf.train.Optimizer):
    """Scales the loss by the manager's scale before the wrapped optimizer's
    compute_gradients and unscales the gradients after; applies them only when all are
    finite, and updates the manager either way. Like the original, it does not call
    Optimizer.__init__."""

    def __init__(self, opt, loss_scale_manager):
        self._opt = opt
        self._loss_scale_manager = loss_scale_manager

    def compute_gradients(self, loss, var_list=None,
                          gate_gradients=tf.train.Optimizer.GATE_OP,
                          aggregation_method=None, colocate_gradients_with_ops=False,
                          grad_loss=None):
        loss_scale = self._loss_scale_manager.get_loss_scale()
        loss_value = loss() if callable(loss) else loss
        scaled = loss_value * tf.cast(loss_scale, loss_value.dtype.base_dtype)
        grads_and_vars = self._opt.compute_gradients(
            scaled, var_list=var_list, gate_gradients=gate_gradients,
            aggregation_method=aggregation_method,
            colocate_gradients_with_ops=colocate_gradients_with_ops, grad_loss=grad_loss)
        return self._down_scale(grads_and_vars, loss_scale)

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        finite = tf.reduce_all([tf.reduce_all(tf.is_finite(g)) for g, _ in grads_and_vars])
        return self._apply_if(finite, grads_and_vars, global_step, name)

    def _apply_if(self, finite, grads_and_vars, global_step, name):
        """Applies the gradients (and advances the global step) only when ``finite``."""
        update = tf.cond(finite,
                         lambda: self._opt.apply_gradients(grads_and_vars, global_step, name),
                         tf.no_op)
        return tf.group(update, self._loss_scale_manager.update_loss_scale(finite))

    def _down_scale(self, grads_and_vars, loss_scale):
        inverse = tf.reciprocal(loss_scale)
        return [(g * tf.cast(inverse, g.dtype.base_dtype) if g is not None else None, v)
                for g, v in grads_and_vars]
