"""Fake quantization with learned ranges, under the variable names of TF 1.15's
contrib.quantize, so that checkpoints cross in both directions:

  <context>/weights_quant/{min,max}     last-value range of the (folded) weights
  <context>/act_quant/{min,max}         moving-average range of an activation, with the
  .../min/{biased,local_step}           zero-debiased average's two variables
  fake_quantization_step                int64 count of training steps run with them

and, with the same variables, the ranges rewrite.py adds beyond contrib (RANGE_NAMES;
docs/quantization.md tabulates them); fake_quantize_fixed's fixed ranges have none.

Every variable is got with AUTO_REUSE, so a second tower or a second head over the same
network (export's bytes input) shares them, and created ON_READ with MEAN aggregation:
under a distribution strategy each replica keeps its own running range and a checkpoint
holds their mean, with no cross-replica call inside the graph. Elsewhere those two
arguments change nothing.
"""
import re

from utils.tf_compat import tf

QUANTIZATION_STEP = "fake_quantization_step"
# contrib.quantize's defaults: the activations' range average and the bits.
EMA_DECAY = 0.999
NUM_BITS = 8


def _variable(name, initial, dtype=tf.float32, aggregation=None, shape=()):
    return tf.get_variable(
        name, shape=shape, dtype=dtype, initializer=tf.constant_initializer(initial),
        trainable=False, collections=[tf.GraphKeys.GLOBAL_VARIABLES],
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=aggregation or tf.VariableAggregation.MEAN)


def quantization_step():
    """The step count contrib's delays compare with, incremented once per session run
    that reads it: it counts the steps since quantization was added, so a fine-tune of
    a float checkpoint delays from its own start, and a resumed run goes on counting."""
    graph = tf.get_default_graph()
    cached = graph.get_collection(QUANTIZATION_STEP)
    if cached:
        return cached[0]
    with tf.name_scope(None), tf.variable_scope(tf.VariableScope(tf.AUTO_REUSE, name="")):
        step = _variable(QUANTIZATION_STEP, 0, tf.int64,
                         tf.VariableAggregation.ONLY_FIRST_REPLICA)
        with tf.name_scope(QUANTIZATION_STEP + "/"):
            counted = tf.identity(tf.assign_add(step, 1))
    graph.add_to_collection(QUANTIZATION_STEP, counted)
    return counted


def _range_variables(scope, init_min, init_max, shape=()):
    with tf.variable_scope(tf.VariableScope(tf.AUTO_REUSE, name=scope)):
        return (_variable("min", init_min, shape=shape),
                _variable("max", init_max, shape=shape))


def _zero_debiased_average(variable, value, decay):
    """variable <- the zero-debiased moving average of ``value`` (what TF 1.x's
    assign_moving_average does by default, and where its ``biased`` and
    ``local_step`` variables live): after the first step it equals the first value,
    so a range starts from the data, not from its initial value."""
    with tf.variable_scope(tf.VariableScope(tf.AUTO_REUSE, name=variable.op.name)):
        biased = _variable("biased", 0.0)
        local_step = _variable("local_step", 0.0)
    biased = tf.assign_sub(biased, (biased - value) * (1.0 - decay))
    local_step = tf.assign_add(local_step, 1.0)
    debiased = biased / (1.0 - tf.pow(decay, local_step))
    return tf.assign(variable, debiased)


def _batch_range(inputs, per_channel=False):
    """The range of ``inputs`` (per_channel: of each slice along its last axis, the
    output channel of a kernel), widened to hold 0 (so that 0 is exactly
    representable)."""
    axes = list(range(inputs.get_shape().ndims - 1)) if per_channel else None
    return (tf.minimum(tf.reduce_min(inputs, axis=axes, name="BatchMin"), 0.0),
            tf.maximum(tf.reduce_max(inputs, axis=axes, name="BatchMax"), 0.0))


def _symmetric(low, high):
    """[-m, m] around [low, high]: zero maps to the integer 0 (narrow range)."""
    bound = tf.maximum(-low, high)
    return -bound, bound


def _delayed(quantized, inputs, is_training, quant_delay):
    """``quantized`` once ``quant_delay`` steps have run while training, ``inputs``
    before (inference: always ``quantized``)."""
    if not (is_training and quant_delay):
        return quantized
    active = tf.greater_equal(quantization_step(), quant_delay, name="activate_quant")
    return tf.where(active, quantized, inputs, name="delayed_quant")


def fake_quantize_fixed(inputs, scope, low, high, is_training, quant_delay=None):
    """``inputs`` fake-quantized to NUM_BITS over the constant range [low, high] in
    ``scope``, with no variables: the output range an int8 kernel fixes (TFLite's
    LOGISTIC), delayed as fake_quantize's."""
    with tf.name_scope(scope + "/"):
        quantized = tf.fake_quant_with_min_max_args(inputs, min=low, max=high,
                                                    num_bits=NUM_BITS)
        return _delayed(quantized, inputs, is_training, quant_delay)


def fake_quantize(inputs, scope, is_training, moving_average, symmetric=False,
                  init_min=-6.0, quant_delay=None, per_channel=False):
    """``inputs`` fake-quantized to NUM_BITS with the range variables in ``scope``.

    Training updates the range from the batch: to its last value (weights,
    ``moving_average`` False) or its moving average (activations); inference reads the
    variables. ``symmetric`` (weights): a range symmetric about 0 on the narrow grid
    [-127, 127], which int8 convolution kernels (TFLite's) require of weights;
    contrib's option of that name, its default being asymmetric uint8-style weights. A
    checkpoint with asymmetric weight ranges (TF-Slim's) is read symmetric too, so
    the simulated graph is what an int8 model runs. With ``quant_delay`` (steps),
    training passes ``inputs`` through unquantized until then, while the range is
    learned already. ``per_channel`` (last-value weights): one range per slice along
    the last axis of ``inputs``, variables of that length under the same names (TFLite's
    per-channel int8 weights)."""
    with tf.name_scope(scope + "/"):
        shape = inputs.get_shape().as_list()[-1:] if per_channel else ()
        min_var, max_var = _range_variables(scope, init_min, 6.0, shape)
        if not is_training:
            low, high = min_var, max_var
        elif moving_average:
            batch_min, batch_max = _batch_range(inputs)
            low = _zero_debiased_average(min_var, batch_min, EMA_DECAY)
            high = _zero_debiased_average(max_var, batch_max, EMA_DECAY)
        else:
            batch_min, batch_max = _batch_range(inputs, per_channel)
            if symmetric:
                batch_min, batch_max = _symmetric(batch_min, batch_max)
            low, high = tf.assign(min_var, batch_min), tf.assign(max_var, batch_max)
        if symmetric and not is_training:
            low, high = _symmetric(low, high)
        fake_quant_op = (tf.quantization.fake_quant_with_min_max_vars_per_channel
                         if per_channel else tf.fake_quant_with_min_max_vars)
        quantized = fake_quant_op(inputs, low, high, num_bits=NUM_BITS,
                                  narrow_range=symmetric)
        return _delayed(quantized, inputs, is_training, quant_delay)


# The last part of every range scope with variables (quantization/rewrite.py's rules).
RANGE_NAMES = ("weights_quant", "act_quant", "post_activation_bypass_quant",
               "hard_swish_quant", "hard_sigmoid_quant", "swish_quant", "mul_quant")
RANGE_SCOPE = re.compile(r"(^|/)(%s)(/|$)" % "|".join(RANGE_NAMES))


def is_range_variable(name):
    """Whether the variable ``name`` is one of the quantization ranges (or their
    averages' companions) that fake_quantize makes."""
    return bool(RANGE_SCOPE.search(name))


def holds_ranges(variable_names):
    """Whether a checkpoint with these variables was trained quantized (ours or
    TF-Slim's ``*_quant`` checkpoints): its layers' weights have ranges."""
    return any(name.endswith("/weights_quant/min") for name in variable_names)


def per_channel_ranges(variable_shapes):
    """Whether a checkpoint whose variables have these shapes ({name: shape}) holds
    per-channel weight ranges (--quantize_per_channel): a weights_quant/min vector."""
    return any(name.endswith("/weights_quant/min") and list(shape)
               for name, shape in variable_shapes.items())


__all__ = ["is_range_variable", "holds_ranges", "per_channel_ranges", "QUANTIZATION_STEP", "EMA_DECAY", "NUM_BITS",
           "RANGE_NAMES", "quantization_step", "fake_quantize", "fake_quantize_fixed"]
