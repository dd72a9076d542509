"""Learning-rate schedules, optimizers, loss and moving averages, built from an Env."""
import math

from utils.tf_compat import tf


# The one constant of the training graph that follows the run's length; named, so the
# graph cache can set it in a graph another run of another length stored.
DECAY_SPAN = "lr_decay_span"


def decay_span(env):
    """Steps from the end of warmup to the end of the run (at least 1)."""
    return float(max(1, env.max_train_steps - env.warmup_steps))


def learning_rate(env, global_step):
    """Linear warmup over env.warmup_steps, then env.lr_decay_type decay to the end.

    Decay schedules count steps from the end of warmup, so the peak LR is reached
    exactly when warmup ends (as the Ascend recipe's cosine-with-warmup).
    """
    step = tf.cast(global_step, tf.float32)
    peak = float(env.learning_rate)
    warmup = float(env.warmup_steps)
    after = tf.maximum(step - warmup, 0.0)
    progress = tf.minimum(after / tf.constant(decay_span(env), name=DECAY_SPAN), 1.0)
    kind = env.lr_decay_type
    if kind == "fixed":
        decayed = tf.constant(peak)
    elif kind == "exponential":
        decayed = peak * tf.pow(float(env.decay_factor), tf.floor(after / env.decay_steps))
    elif kind == "polynomial":
        decayed = (peak - env.end_learning_rate) * (1.0 - progress) + env.end_learning_rate
    elif kind == "cosine":
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        decayed = (peak - env.end_learning_rate) * cosine + env.end_learning_rate
    else:
        raise ValueError("unknown learning_rate_decay_type %r" % kind)
    if env.warmup_steps <= 0:
        return tf.identity(decayed, name="learning_rate")
    warm = peak * step / warmup
    return tf.where(step < warmup, warm, decayed, name="learning_rate")


def build_optimizer(env, lr):
    """The optimizer --optimizer names, with its settings, at learning rate ``lr``."""
    name = env.optimizer_name
    if name == "sgd":
        return tf.train.GradientDescentOptimizer(lr)
    if name == "momentum":
        return tf.train.MomentumOptimizer(lr, momentum=env.momentum)
    if name == "rmsprop":
        return tf.train.RMSPropOptimizer(lr, decay=env.rmsprop_decay, momentum=env.momentum,
                                         epsilon=env.opt_epsilon)
    if name == "adam":
        return tf.train.AdamOptimizer(lr, epsilon=env.opt_epsilon)
    raise ValueError("unknown optimizer %r" % name)


def minimize(optimizer, loss, global_step, var_list, clip_norm=None):
    """``optimizer.minimize``; with ``clip_norm``, its own compute_gradients -> clip to
    that global norm -> its own apply_gradients.

    Calling the (possibly wrapped, see devices) optimizer's two halves keeps what the
    wrappers do there: loss scaling unscales before the clip and checks for overflow
    after it (an inf/NaN norm turns every clipped gradient into NaN, so the step is
    skipped as without clipping); NPUDistributedOptimizer all-reduces inside
    compute_gradients, so the clip sees the global gradient, while tf.distribute
    replicas each clip their own before apply_gradients all-reduces.
    """
    if not clip_norm:
        return optimizer.minimize(loss, global_step=global_step, var_list=var_list)
    grads_and_vars = [(g, v) for g, v in optimizer.compute_gradients(loss, var_list=var_list)
                      if g is not None]
    gradients, variables = zip(*grads_and_vars)
    clipped, _ = tf.clip_by_global_norm(gradients, clip_norm, name="clip_gradient_norm")
    return optimizer.apply_gradients(list(zip(clipped, variables)), global_step=global_step)


def classification_loss(env, logits, labels):
    """Softmax cross-entropy with label smoothing (added to tf.GraphKeys.LOSSES)."""
    one_hot = tf.one_hot(labels, env.num_classes, dtype=tf.float32)
    return tf.losses.softmax_cross_entropy(one_hot, tf.cast(logits, tf.float32),
                                           label_smoothing=env.label_smoothing)


BN_STATISTICS = ("/moving_mean", "/moving_variance")


def moving_average_variables():
    """What TF-Slim averages: trainable weights plus batch-norm moving statistics,
    so the checkpoint's */ExponentialMovingAverage names match published ones.
    (tf-slim on TF 2.x no longer fills tf.moving_average_variables(): match by name.)"""
    statistics = [v for v in tf.global_variables() if v.op.name.endswith(BN_STATISTICS)]
    return tf.trainable_variables() + statistics
