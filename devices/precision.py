"""Loss scaling: GPU mixed precision, and the telemetry every loss-scaled run shares.

TF's auto-mixed-precision graph rewrite casts the network's math to float16 on the GPU
(a slim model cannot be rebuilt in float16 by hand without renaming its variables), and
TF's loss-scale optimizer multiplies the loss so float16 gradients do not underflow.
A step whose gradients overflow is skipped (weights and global step unchanged) and the
dynamic scale halves; the training log and TensorBoard count those skips.

The same optimizer also runs over float32 (an explicit --loss_scale on CPU or GPU): the
overflow mechanics are the same, so a loss-scaled run can be rehearsed without float16.
TF 2.15 (tf.compat.v1) and TF 1.15 name the optimizer differently; nothing outside this
module touches TF's loss-scaling API.
"""
from utils.tf_compat import tf


def enable_float16_rewrite(session_config):
    """``session_config`` with TensorFlow's automatic mixed-precision graph rewrite on."""
    options = session_config.graph_options.rewrite_options
    options.auto_mixed_precision = options.ON
    return session_config


def loss_scale_optimizer(optimizer, loss_scale):
    """Wraps ``optimizer``; loss_scale is 'dynamic' (TF's DynamicLossScale: starts at
    2**15, halves on an overflow but never below 1, doubles after 2000 good steps) or a
    fixed float. A fixed scale also skips overflowing steps, as npu_bridge's
    FixedLossScaleManager does: it is a DynamicLossScale whose multiplier is 1, because
    TF's own FixedLossScale applies Inf/NaN gradients to the weights. Works under
    MirroredStrategy and MultiWorkerMirroredStrategy (overflow is agreed by all replicas)."""
    wrapper = getattr(getattr(tf, "mixed_precision", None),
                      "MixedPrecisionLossScaleOptimizer", None)
    if wrapper is None:  # TF 1.15 (whose tf.compat.v1 may lack mixed_precision)
        wrapper = tf.train.experimental.MixedPrecisionLossScaleOptimizer
    if loss_scale != "dynamic":
        loss_scale = tf.train.experimental.DynamicLossScale(
            initial_loss_scale=float(loss_scale), multiplier=1.0)
    return wrapper(optimizer, loss_scale)


def current_loss_scale(optimizer):
    """The loss scale of a loss_scale_optimizer as a float32 tensor, read where this is
    called (TF keeps it private: ``_loss_scale()`` makes a fresh read each call); None
    for an optimizer without loss scaling."""
    scale = getattr(optimizer, "_loss_scale", None)
    return tf.cast(scale(), tf.float32) if callable(scale) else None


def overflow_telemetry(train_op, read_loss_scale, global_step):
    """Counts the steps loss scaling skipped; returns (train_op, after), ``after`` being
    {"loss_scale": float32, "overflow_steps": int64} read once the step is done.

    A skipped step is one that did not advance the global step (TF's optimizer and
    npu_bridge's both leave it alone on an overflow), so a checkpointed counter of the
    steps run gives skipped = steps_run - global_step, on every device, for every
    iteration of an Ascend device loop, whichever optimizer checks for the overflow.
    Checkpointed like the global step, the count is the run's whole history up to the
    checkpoint a run resumes from (skips after it are lost with the steps after it).
    ``read_loss_scale()`` must read the scale afresh where it is called: here, after the
    step, which has updated it.
    """
    steps_run = tf.get_variable(
        "steps_run", shape=[], dtype=tf.int64, initializer=tf.zeros_initializer(),
        trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    with tf.control_dependencies([train_op]):
        counted = steps_run.assign_add(1)
    with tf.control_dependencies([counted]):
        scale = read_loss_scale()
        if isinstance(scale, tf.Variable):  # npu_bridge's manager hands out its variable
            scale = scale.read_value()
        after = {"loss_scale": tf.identity(tf.cast(scale, tf.float32),
                                           name="loss_scale_after_step"),
                 "overflow_steps": tf.subtract(counted, global_step.read_value(),
                                               name="overflow_steps_after_step")}
    return tf.group(train_op, counted), after


def overflow_tolerant_loss(loss):
    """The loss to hand the Estimator under loss scaling: NaN passed on as +Inf.

    The Estimator always adds a NanTensorHook, which ends the run on a NaN loss; under
    loss scaling a NaN loss is an overflow like Inf, and the optimizer skips that step.
    DivergenceHook stops the run when such overflows persist (the loss scale collapses).
    """
    return tf.where(tf.is_nan(loss), tf.constant(float("inf"), loss.dtype), loss,
                    name="overflow_tolerant_loss")
