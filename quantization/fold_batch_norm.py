"""Folds a batch norm into the convolution before it, the way contrib.quantize does, so
that the weights a phone runs (folded, then quantized) are the ones trained:

  inference:  w' = w * gamma / sigma_mv,  b' = beta - mu_mv * gamma / sigma_mv
  training:   the same w' (moving statistics: the folded weights change slowly, so their
              quantization range does too), then the output corrected back to batch
              statistics, y = conv(x, w') * sigma_mv / sigma_b + beta - mu_b * gamma / sigma_b,
              which is batch norm exactly; once batch norm is frozen the correction goes
              to the moving statistics instead (factor 1, offset gamma * (mu_b / sigma_b -
              mu_mv / sigma_mv)), and the moving statistics stop updating (they are
              fed back to their own update in place of the batch's).

Where contrib reads the batch moments off the fused batch-norm op and overrides that op's
gradient to reach them, this computes them with ``tf.nn.moments`` on the convolution's
output: the same values, with the true gradient, no gradient override.
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


def _batch_moments(layer_output):
    return tf.nn.moments(layer_output, axes=[0, 1, 2], name="batch_moments")


def fold(match, is_training, bn_frozen=None, quantize_weights=None):
    """Folds ``match``: reroutes the batch norm's consumers to the folded layer's output
    and returns that tensor. ``bn_frozen``: a boolean tensor, true once batch norm is
    frozen (training only). ``quantize_weights(folded_weights) -> weights`` is applied
    before the convolution."""
    bn_op, layer_op, v = match
    epsilon = bn_op.get_attr("epsilon")
    consumers = list(bn_op.outputs[0].consumers())
    inputs, weights = layer_op.inputs[0], layer_op.inputs[1]
    scope = layer_op.name.rpartition("/")[0]
    with tf.name_scope(scope + "/BatchNorm_Fold/"):
        gamma = v["gamma"].read_value() if v["gamma"] is not None else 1.0
        beta = v["beta"].read_value()
        moving_mean = v["moving_mean"].read_value()
        recip_sigma_mv = tf.rsqrt(v["moving_variance"].read_value() + epsilon)
        multiplier = gamma * recip_sigma_mv
        if is_training:
            mean, variance = _batch_moments(layer_op.outputs[0])
            recip_sigma = tf.rsqrt(variance + epsilon)
            bias = beta - mean * gamma * recip_sigma
            post_conv = recip_sigma / recip_sigma_mv  # sigma_mv / sigma_b
            offset = tf.zeros_like(mean)
            if bn_frozen is not None:
                post_conv = tf.where(bn_frozen, tf.ones_like(post_conv), post_conv)
                offset = tf.where(bn_frozen, gamma * (mean * recip_sigma
                                                      - moving_mean * recip_sigma_mv),
                                  offset)
        else:
            bias = beta - moving_mean * multiplier
    with tf.name_scope(scope + "/"):
        if layer_op.type == "DepthwiseConv2dNative":
            multiplier = tf.reshape(multiplier, weights.get_shape().as_list()[2:],
                                    name="scale_reshape")
        folded_weights = tf.multiply(weights, multiplier, name="mul_fold")
        layer_weights = quantize_weights(folded_weights) if quantize_weights else folded_weights
        output = _clone_layer(layer_op, inputs, layer_weights)
        if is_training:
            output = tf.add(output * post_conv, offset, name="correction_add")
        output = tf.add(output, bias, name="add_fold")
    if is_training and bn_frozen is not None:
        _freeze_moving_statistics(bn_op, v, bn_frozen)
    reroute(consumers, bn_op.outputs[0], output)
    return output


def _freeze_moving_statistics(bn_op, variables, bn_frozen):
    """Once batch norm is frozen, the batch statistics its moving averages are updated
    from become the moving statistics themselves, so ``moving -= (moving - batch) *
    rate`` changes nothing, whatever lies between (a distribution strategy's
    all-reduce). contrib zeroed the rate instead, which needs to find it. A batch norm
    that updates its averages inside the op (no consumers of those outputs) cannot be
    frozen so: an error, not a batch norm quietly left unfrozen."""
    for output, name in ((bn_op.outputs[1], "moving_mean"), (bn_op.outputs[2], "moving_variance")):
        consumers = list(output.consumers())
        if not consumers:
            raise ValueError("--freeze_bn_delay: %s updates its %s inside the op; cannot "
                             "freeze it" % (bn_op.name, name))
        with tf.name_scope(bn_op.name.rpartition("/")[0] + "/freeze_" + name + "/"):
            held = tf.where(bn_frozen, variables[name].read_value(), output)
        reroute(consumers, output, held)


__all__ = ["BatchNormMatch", "find", "fold", "BATCH_NORMS", "FOLDABLE_LAYERS"]
