"""Folds a batch norm into the convolution before it, the way contrib.quantize does, so
that the weights a phone runs (folded, then quantized) are the ones trained. With
scale = gamma / sigma_mv (sigma_mv = sqrt(moving_variance + epsilon)), per output channel:

  inference:  y = conv(x, w * scale) + beta - mu_mv * scale
  training:   one convolution, y = conv(x, w * scale), the same folded weights (moving
              statistics: they change slowly, so their quantization range does too),
              unfolded back, u = y / scale, and batch-normalized with the batch's own
              moments of u: gamma * (u - mu_b) / sigma_b + beta, which is batch norm
              exactly while the weights are not quantized (PyTorch's QAT ConvBn
              modules do the same). mu_b and sigma_b^2 (times n / (n - 1), as the fused
              op gives them) feed slim's moving-average updates in place of the
              batch-norm op's, so neither the original convolution nor that op runs.
              Once batch norm is frozen the output is the inference fold above, and the
              moving statistics stop updating (they are fed back to their own update in
              place of the batch's).

contrib.quantize (and this module before) ran each such layer twice in training: the
float convolution for the batch moments and the fused batch-norm op for the
moving-average updates, then the folded one. Here the moments are those of the folded,
quantized layer unfolded: the statistics of the convolution the phone runs, with the
true gradient, no gradient override.
"""
import collections

from utils.tf_compat import reroute, tf

FOLDABLE_LAYERS = ("Conv2D", "DepthwiseConv2dNative")
BATCH_NORMS = ("FusedBatchNorm", "FusedBatchNormV3")

# A batch norm to fold: its op, the layer op before it and the variable scope holding
# gamma / beta / moving_mean / moving_variance.
BatchNormMatch = collections.namedtuple("BatchNormMatch", "bn_op layer_op variables")


def _variable(scope, name, required=True):
    found = [v for v in tf.global_variables() if v.op.name == scope + "/" + name]
    if not found and required:
        raise ValueError("no variable %s/%s for the batch norm there" % (scope, name))
    return found[0] if found else None


def find(bn_op, scope_prefix=""):
    """The BatchNormMatch of ``bn_op`` when a foldable layer feeds it, else None.
    ``scope_prefix``: the name scope the network was built in (a tower's), which its
    op names carry and its variable names do not."""
    source = bn_op.inputs[0].op
    while source.type == "Identity":
        source = source.inputs[0].op
    if source.type not in FOLDABLE_LAYERS:
        return None
    scope = bn_op.name.rpartition("/")[0]
    if scope_prefix and scope.startswith(scope_prefix):
        scope = scope[len(scope_prefix):]
    variables = dict((name, _variable(scope, name, required=name != "gamma"))
                     for name in ("gamma", "beta", "moving_mean", "moving_variance"))
    return BatchNormMatch(bn_op, source, variables)


def _clone_layer(layer_op, inputs, weights):
    """``layer_op`` (a conv or depthwise conv) over new weights, same attributes."""
    strides = layer_op.get_attr("strides")
    padding = layer_op.get_attr("padding")
    padding = padding.decode() if isinstance(padding, bytes) else padding
    dilations = layer_op.get_attr("dilations")
    name = layer_op.name.rpartition("/")[2] + "_Fold"
    if layer_op.type == "Conv2D":
        return tf.nn.conv2d(inputs, weights, strides, padding, dilations=dilations, name=name)
    return tf.nn.depthwise_conv2d_native(inputs, weights, strides, padding,
                                         dilations=dilations, name=name)


def _parameters(variables, epsilon):
    """(gamma, beta, moving_mean, 1 / sigma_mv) read from the batch norm's variables;
    gamma 1.0 where batch norm has none (slim's ``scale=False``)."""
    gamma = variables["gamma"].read_value() if variables["gamma"] is not None else 1.0
    beta = variables["beta"].read_value()
    moving_mean = variables["moving_mean"].read_value()
    recip_sigma_mv = tf.rsqrt(variables["moving_variance"].read_value() + epsilon)
    return gamma, beta, moving_mean, recip_sigma_mv


def _folded_layer(layer_op, multiplier, quantize_weights):
    """``layer_op`` over its weights times ``multiplier`` (one factor per output channel),
    quantized by ``quantize_weights`` when given."""
    weights = layer_op.inputs[1]
    if layer_op.type == "DepthwiseConv2dNative":
        # Output channel c * M + m is input channel c's m-th filter: [C * M] -> [C, M].
        multiplier = tf.reshape(multiplier, weights.get_shape().as_list()[2:],
                                name="scale_reshape")
    folded_weights = tf.multiply(weights, multiplier, name="mul_fold")
    layer_weights = quantize_weights(folded_weights) if quantize_weights else folded_weights
    return _clone_layer(layer_op, layer_op.inputs[0], layer_weights)


def _nonzero(scale):
    """``scale`` with exact zeros (a gamma of 0) replaced by 1. The training fold divides
    by its scale; PyTorch divides by zero anyway (NaN). Folding such a channel with 1
    instead gives its batch norm the real conv output, so its moments, its moving
    statistics and gamma's gradient stay those of batch norm; its output is beta either
    way (gamma 0). Its raw weights then count in the layer's weight range, which the
    inference fold reads from the checkpoint as trained. The inference fold multiplies
    only: it keeps the true scale."""
    return tf.where(tf.equal(scale, 0.0), tf.ones_like(scale), scale)


def _batch_moments(values):
    """Mean and biased variance per channel of NHWC ``values``, as tf.nn.moments gives
    them, with a gradient that broadcasts its per-channel vectors onto ``values`` in two
    elementwise ops (d values = values * 2 dv / n + dm / n - mean * 2 dv / n).
    reduce_mean's own gradient tiles each vector to the activation's shape and divides it
    there: in a QAT training step that was the largest single cost of the fold (about a
    seventh of the step's op time on MobileNetV2-CIFAR, benchmarks/qat_speed.py)."""
    @tf.custom_gradient
    def moments(values):
        mean = tf.reduce_mean(values, axis=[0, 1, 2])
        variance = tf.reduce_mean(tf.squared_difference(values, mean), axis=[0, 1, 2])

        def gradient(d_mean, d_variance):
            shape = tf.shape(values)
            count = tf.cast(shape[0] * shape[1] * shape[2], values.dtype)
            slope = 2.0 * d_variance / count
            return values * slope + (d_mean / count - mean * slope)
        return (mean, variance), gradient
    with tf.name_scope("batch_moments"):
        return moments(values)


def _unfolded_moments(folded_output, scale):
    """The batch mean and (biased) variance per channel of ``folded_output / scale``,
    taken from the folded output's own moments: the same numbers without an
    activation-sized division."""
    mean, variance = _batch_moments(folded_output)
    return mean / scale, variance / tf.square(scale)


def _bessel_corrected(variance, layer_output):
    """``variance`` times n / (n - 1), n the values per channel: what a training
    FusedBatchNorm gives its moving-variance update (its outputs[2]), so the moving
    statistics stay those batch norm itself keeps."""
    shape = tf.shape(layer_output)
    count = tf.cast(shape[0] * shape[1] * shape[2], variance.dtype)
    return variance * count / tf.maximum(count - 1.0, 1.0)


def _fold_inference(bn_op, layer_op, variables, quantize_weights, scope):
    """y = conv(x, w * scale) + beta - mu_mv * scale, scale = gamma / sigma_mv."""
    with tf.name_scope(scope + "/BatchNorm_Fold/"):
        gamma, beta, moving_mean, recip_sigma_mv = _parameters(
            variables, bn_op.get_attr("epsilon"))
        multiplier = gamma * recip_sigma_mv
        bias = beta - moving_mean * multiplier
    with tf.name_scope(scope + "/"):
        output = _folded_layer(layer_op, multiplier, quantize_weights)
        return tf.add(output, bias, name="add_fold")


def _fold_training(bn_op, layer_op, variables, bn_frozen, quantize_weights, scope):
    """One convolution, y = conv(x, w * scale), read two ways: batch norm of y / scale
    with the batch's moments, y * gamma / (scale * sigma_b) + beta - mu_b * gamma /
    sigma_b (its moments go to the moving-average updates), or once ``bn_frozen`` the
    inference fold, y + beta - mu_mv * scale. Both are y times one factor per channel
    plus one offset per channel, so the choice is made on those vectors."""
    epsilon = bn_op.get_attr("epsilon")
    with tf.name_scope(scope + "/BatchNorm_Fold/"):
        gamma, beta, moving_mean, recip_sigma_mv = _parameters(variables, epsilon)
        scale = gamma * recip_sigma_mv
        divisor = _nonzero(scale)
    with tf.name_scope(scope + "/"):
        output = _folded_layer(layer_op, divisor, quantize_weights)
    with tf.name_scope(scope + "/BatchNorm_Fold/"):
        mean, variance = _unfolded_moments(output, divisor)
        normalize = gamma * tf.rsqrt(variance + epsilon)
        factor = normalize / divisor
        offset = beta - mean * normalize
        if bn_frozen is not None:
            # scale / divisor: 1 (exactly) where gamma is not 0, so y itself.
            factor = tf.where(bn_frozen, scale / divisor, factor)
            offset = tf.where(bn_frozen, beta - moving_mean * scale, offset)
    _reroute_moving_statistics(bn_op, variables, mean,
                               _bessel_corrected(variance, output), bn_frozen)
    with tf.name_scope(scope + "/"):
        return tf.add(output * factor, offset, name="add_fold")


def fold(match, is_training, bn_frozen=None, quantize_weights=None):
    """Folds ``match``: reroutes the batch norm's consumers to the folded layer's output
    and returns that tensor; in training, its moving-average updates to the folded
    layer's batch moments, so neither the original layer nor the batch-norm op runs.
    ``bn_frozen``: a boolean tensor, true once batch norm is frozen (training only).
    ``quantize_weights(folded_weights) -> weights`` is applied before the convolution."""
    bn_op, layer_op, variables = match
    consumers = list(bn_op.outputs[0].consumers())
    scope = layer_op.name.rpartition("/")[0]
    if is_training:
        output = _fold_training(bn_op, layer_op, variables, bn_frozen, quantize_weights,
                                scope)
    else:
        output = _fold_inference(bn_op, layer_op, variables, quantize_weights, scope)
    reroute(consumers, bn_op.outputs[0], output)
    return output


def _averaged_in_op(bn_op):
    """Whether ``bn_op`` averages its own outputs[1] / [2] into running statistics
    (FusedBatchNormV3's ``exponential_avg_factor`` below 1, TF 2.2+): then they are not
    the batch's moments, and cannot be replaced by them."""
    try:
        return bn_op.get_attr("exponential_avg_factor") != 1.0
    except ValueError:
        return False


def _reroute_moving_statistics(bn_op, variables, mean, variance, bn_frozen):
    """The moving-average updates that read the batch norm's batch mean / variance
    (outputs[1] / [2]) read ``mean`` / ``variance`` instead. Once batch norm is frozen
    they read the moving statistics themselves, so ``moving -= (moving - batch) * rate``
    changes nothing, whatever lies between (a distribution strategy's all-reduce).
    contrib zeroed the rate instead, which needs to find it. A batch norm that updates
    its averages inside the op (no consumers of those outputs) cannot be frozen so: an
    error, not a batch norm quietly left unfrozen."""
    if _averaged_in_op(bn_op):
        raise ValueError("%s averages its statistics inside the op; cannot fold it for "
                         "training" % bn_op.name)
    for output, name, value in ((bn_op.outputs[1], "moving_mean", mean),
                                (bn_op.outputs[2], "moving_variance", variance)):
        consumers = list(output.consumers())
        if not consumers and bn_frozen is not None:
            raise ValueError("--freeze_bn_delay: %s updates its %s inside the op; cannot "
                             "freeze it" % (bn_op.name, name))
        if bn_frozen is not None:
            with tf.name_scope(bn_op.name.rpartition("/")[0] + "/freeze_" + name + "/"):
                value = tf.where(bn_frozen, variables[name].read_value(), value)
        reroute(consumers, output, value)


__all__ = ["BatchNormMatch", "find", "fold", "BATCH_NORMS", "FOLDABLE_LAYERS"]
