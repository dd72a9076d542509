"""GPU mixed precision for TF-Slim graphs: float16 compute, float32 weights.

TF's auto-mixed-precision graph rewrite casts the network's math to float16 on the GPU
(a slim model cannot be rebuilt in float16 by hand without renaming its variables), and
TF's loss-scale optimizer multiplies the loss so float16 gradients do not underflow.
A step whose gradients overflow is skipped (weights and global step unchanged) and the
dynamic scale halves; the training log counts those skips.
"""
from utils.tf_compat import tf


def enable_float16_rewrite(session_config):
    options = session_config.graph_options.rewrite_options
    options.auto_mixed_precision = options.ON
    return session_config


def loss_scale_optimizer(optimizer, loss_scale):
    """Wraps ``optimizer``; loss_scale is 'dynamic' or a fixed float. Works under
    MirroredStrategy and MultiWorkerMirroredStrategy (overflow is agreed by all replicas)."""
    wrapper = getattr(tf.mixed_precision, "MixedPrecisionLossScaleOptimizer", None)
    if wrapper is None:  # TF 1.15
        wrapper = tf.train.experimental.MixedPrecisionLossScaleOptimizer
    return wrapper(optimizer, loss_scale if loss_scale == "dynamic" else float(loss_scale))


def current_loss_scale(optimizer):
    """The loss scale as a tensor, for the progress line (TF keeps it private)."""
    scale = getattr(optimizer, "_loss_scale", None)
    return tf.cast(scale(), tf.float32) if callable(scale) else None
