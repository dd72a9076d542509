"""Rewrites a network already built in the graph for simulated int8, by contrib.quantize's
rules (TF 1.15, ``tf.contrib.quantize.create_training_graph`` / ``create_eval_graph``):

* every Conv2D / DepthwiseConv2dNative / MatMul reading a variable is a layer; its batch
  norm, if one follows, is folded into it (``fold_batch_norm``);
* the layer's weights (folded) are fake-quantized to 8 bits, narrow range, from their
  last value: ``<layer scope>/weights_quant``; symmetric about 0, as int8 kernels need
  (contrib's ``symmetric`` option; its default was asymmetric, for uint8 kernels); one
  range per output channel of a conv or depthwise conv with Settings.per_channel;
* its activation (Relu / Relu6 / Identity: the linear bottleneck's identity counts),
  or its output when none follows, with a moving-average range: ``<layer>/act_quant``;
* a residual add after that activation, unless a ReLU follows it:
  ``<block>/post_activation_bypass_quant``;
* an average pool of a ranged tensor, again with that range (``_requantize_average_pools``:
  what an int8 pool does; contrib left it float).

Beyond contrib (which had no rule for them), the activations of MobileNetV3, MnasNet and
EfficientNetV2, found by their structure (``_activation``), each ranged where TFLite's
int8 kernels meet: hard-swish (``<layer>/hard_swish_quant``; its input is the layer's
act_quant), the hard-sigmoid gate (act_quant after its relu6, ``hard_sigmoid_quant``
after the 1/6), sigmoid (a fixed range, ``sigmoid_quant``), swish (``sigmoid_quant``
inside, ``swish_quant`` out) and the multiply a gate scales
(``<block>/squeeze_excite/mul_quant``). docs/quantization.md tabulates them.

contrib finds these by pattern matching over the whole graph; here the walk starts at each
layer op of the network just built and follows its consumers, which gives the same
matches on the networks here with no graph matcher. Float math left unranged afterwards
(an activation no rule knows) would run in float on an int8 device, or not at all:
``unquantized_layers`` finds it and the caller refuses such a network.
"""
import collections
import functools
import re

from quantization import fake_quant, fold_batch_norm
from utils.tf_compat import reroute, tf

LAYERS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
ACTIVATIONS = ("Relu", "Relu6", "Identity")
RELUS = ("Relu", "Relu6")
ADDS = ("Add", "AddV2")
BIAS_ADDS = ("BiasAdd",) + ADDS
FAKE_QUANTS = ("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxArgs",
               "FakeQuantWithMinMaxVarsPerChannel")
# Float math an int8 kernel needs a range for, and the block-library functions that make
# it (named in the refusal when one of them is left unranged).
NEEDS_RANGE = ADDS + ("Mul", "Sigmoid", "Tanh", "Sub", "RealDiv", "Mean")
# Global poolings: blocks.global_average's avg_pool, or its mean when H and W are unknown.
POOLS = ("AvgPool", "Mean")
KNOWN_CAUSES = ("hard_swish", "hard_sigmoid", "squeeze_excite", "swish")
# Float math that an int8 graph does not keep: initializers, regularizers, dropout,
# stochastic depth, batch norm's moving-average updates.
NOT_INFERENCE = re.compile(r"/(Initializer|Regularizer|Dropout|drop_path|AssignMovingAvg"
                           r"(_\d+)?)(/|$)")

# per_channel: conv and depthwise weights ranged per output channel (--quantize_per_channel).
Settings = collections.namedtuple("Settings", "quant_delay freeze_bn_delay per_channel",
                                  defaults=(False,))
# The inference graph's: ranges read from the variables, no delays.
INFERENCE = Settings(None, None)
# fake_quant's two inserters with the rewrite's training flag and delay: ``variable``
# (fake_quantize: ranges in variables) and ``fixed`` (fake_quantize_fixed).
Quantizers = collections.namedtuple("Quantizers", "variable fixed")


def _context(op, scope_prefix):
    """The scope of ``op`` (its name minus the last part, minus a tower's prefix)."""
    scope = op.name.rpartition("/")[0]
    if scope_prefix and scope.startswith(scope_prefix):
        scope = scope[len(scope_prefix):]
    return scope


def _single_consumer(tensor, types):
    consumers = tensor.consumers()
    if len(consumers) == 1 and consumers[0].type in types:
        return consumers[0]
    return None


def _batch_norm_after(layer_op):
    tensor = layer_op.outputs[0]
    while True:
        consumer = _single_consumer(tensor, fold_batch_norm.BATCH_NORMS + ("Identity",))
        if consumer is None or consumer.type != "Identity":
            return consumer
        tensor = consumer.outputs[0]


def _insert(tensor, scope, quantize):
    """Fake-quantizes ``tensor`` for all its present consumers; returns the result."""
    consumers = list(tensor.consumers())
    quantized = quantize(tensor, scope)
    reroute(consumers, tensor, quantized)
    return quantized


def _other_input(op, tensor):
    """The input of the two-input ``op`` that is not ``tensor``."""
    first, second = op.inputs
    return second if first is tensor else first


def _is_constant(tensor, value):
    found = tf.get_static_value(tensor)
    return found is not None and found.size == 1 and abs(float(found) - value) < 1e-6


def _scaled_relu6_plus_3(tensor):
    """(add, relu6, mul) of ``relu6(tensor + 3)`` followed by a multiply, the shared
    start of hard-swish and hard-sigmoid; None if ``tensor`` feeds no such chain."""
    add = next((c for c in tensor.consumers() if c.type in ADDS
                and _is_constant(_other_input(c, tensor), 3.0)), None)
    relu6 = add and _single_consumer(add.outputs[0], ("Relu6",))
    mul = relu6 and _single_consumer(relu6.outputs[0], ("Mul",))
    return (add, relu6, mul) if mul else None


def _hard_swish_ops(tensor):
    """The ops of ``tensor * relu6(tensor + 3) * (1/6)`` (blocks.hard_swish), the last
    one its output, or None. TFLite's converter fuses exactly this into HARD_SWISH."""
    chain = _scaled_relu6_plus_3(tensor)
    if chain is None or len(tensor.consumers()) != 2 \
            or _other_input(chain[2], chain[1].outputs[0]) is not tensor:
        return None
    scale = _single_consumer(chain[2].outputs[0], ("Mul",))
    if scale is None or not _is_constant(_other_input(scale, chain[2].outputs[0]), 1 / 6.0):
        return None
    return chain + (scale,)


def _hard_sigmoid(tensor):
    """(relu6, mul) of ``relu6(tensor + 3) * (1/6)`` (blocks.hard_sigmoid) or None."""
    chain = _scaled_relu6_plus_3(tensor)
    if chain is None or len(tensor.consumers()) != 1 or not _is_constant(
            _other_input(chain[2], chain[1].outputs[0]), 1 / 6.0):
        return None
    return chain[1:]


def _sigmoid_and_product(tensor):
    """(sigmoid op, the op multiplying ``tensor`` by it or None) when a Sigmoid reads
    ``tensor``; None otherwise."""
    sigmoid = next((c for c in tensor.consumers() if c.type == "Sigmoid"), None)
    if sigmoid is None:
        return None
    product = _single_consumer(sigmoid.outputs[0], ("Mul",))
    if product is not None and _other_input(product, sigmoid.outputs[0]) is not tensor:
        product = None
    return sigmoid, product


# The range of TFLite's int8 LOGISTIC output, fixed by its quantization spec (scale
# 1/256, zero point -128): a fake quant over it rounds as the kernel does.
SIGMOID_RANGE = (0.0, 255.0 / 256.0)

# One range to insert: the suffix of its scope under the layer's, the tensor, and a
# fixed range (no variables) or None (a moving average).
Range = collections.namedtuple("Range", "suffix tensor fixed")
# What a layer's output feeds, as int8 kernels compute it: the ranges in graph order and
# whether the last output is a gate (it then scales a tensor: squeeze-excite).
Activation = collections.namedtuple("Activation", "ranges gate")


def _activation(output):
    """The Activation after a layer's ``output`` (its conv / bias-add / folded add):
    ReLU, ReLU6 and identity fuse into TFLite's conv kernels, and so does the ``+ 3`` and
    ReLU6 of hard-sigmoid (into the bias and the fused activation), so the conv's output
    is ranged after them; hard-swish, sigmoid and swish are kernels of their own whose
    inputs (the layer's output) and outputs are both int8 tensors."""
    activation = _single_consumer(output, ACTIVATIONS)
    if activation is not None:
        return Activation([Range("act_quant", activation.outputs[0], None)], False)
    hard_sigmoid = _hard_sigmoid(output)
    if hard_sigmoid is not None:
        return Activation([Range("act_quant", hard_sigmoid[0].outputs[0], None),
                           Range("hard_sigmoid_quant", hard_sigmoid[1].outputs[0], None)],
                          True)
    ranges = [Range("act_quant", output, None)]
    hard_swish = _hard_swish_ops(output)
    if hard_swish is not None:
        ranges.append(Range("hard_swish_quant", hard_swish[-1].outputs[0], None))
        return Activation(ranges, False)
    sigmoid = _sigmoid_and_product(output)
    if sigmoid is None:
        return Activation(ranges, False)
    ranges.append(Range("sigmoid_quant", sigmoid[0].outputs[0], SIGMOID_RANGE))
    if sigmoid[1] is None:
        return Activation(ranges, len(output.consumers()) == 1)
    ranges.append(Range("swish_quant", sigmoid[1].outputs[0], None))
    return Activation(ranges, False)


def _through_drop_path(tensor):
    """``tensor``, or the output of the stochastic-depth multiply it feeds (training
    only: inference has none, and the add after it is ranged alike)."""
    consumer = _single_consumer(tensor, ("Mul",))
    if consumer is not None and NOT_INFERENCE.search(consumer.name):
        return consumer.outputs[0]
    return tensor


def _range_inserter(quantizers, item):
    """quantize(tensor, scope) for the Range ``item``: a moving-average range, or the
    fixed one it names."""
    if item.fixed is None:
        return functools.partial(quantizers.variable, moving_average=True, init_min=0.0)
    return functools.partial(quantizers.fixed, low=item.fixed[0], high=item.fixed[1])


def _quantize_after(output, context, quantizers, scope_prefix):
    """Ranges the activation after a layer's ``output``, then a residual add after it
    (unless a ReLU follows the add), or the multiply a gate scales."""
    activation = _activation(output)
    for item in activation.ranges:
        output = _insert(item.tensor, "%s/%s" % (context, item.suffix),
                         _range_inserter(quantizers, item))
    act = _range_inserter(quantizers, Range(None, None, None))
    if activation.gate:
        gated = _single_consumer(output, ("Mul",))
        if gated is not None:
            _insert(gated.outputs[0], _context(gated, scope_prefix) + "/mul_quant", act)
        return
    bypass = _single_consumer(_through_drop_path(output), ADDS)
    if bypass is not None and not any(c.type in RELUS for c in bypass.outputs[0].consumers()):
        _insert(bypass.outputs[0],
                _context(bypass, scope_prefix) + "/post_activation_bypass_quant", act)


def _weights_quantizer(layer_op, quantizers, context, per_channel):
    """weights -> the (folded) weights of ``layer_op`` fake-quantized, symmetric, from
    their last value; per output channel with ``per_channel`` for convolutions. A
    depthwise kernel [H, W, C, M] is ranged as [H, W, 1, C * M], output channel c * M + m
    (TFLite's layout), and read back in its own shape."""
    quantize = functools.partial(quantizers.variable, scope=context + "/weights_quant",
                                 moving_average=False, symmetric=True)
    if not per_channel or layer_op.type not in fold_batch_norm.FOLDABLE_LAYERS:
        return quantize
    if layer_op.type == "Conv2D":
        return functools.partial(quantize, per_channel=True)

    def quantize_depthwise(weights):
        height, width, channels, multiplier = weights.get_shape().as_list()
        by_output = tf.reshape(weights, [height, width, 1, channels * multiplier])
        return tf.reshape(quantize(by_output, per_channel=True),
                          [height, width, channels, multiplier])
    return quantize_depthwise


def _quantize_layer(layer_op, quantizers, is_training, bn_frozen, scope_prefix,
                    per_channel=False):
    context = _context(layer_op, scope_prefix)
    quantize_weights = _weights_quantizer(layer_op, quantizers, context, per_channel)
    bn_op = _batch_norm_after(layer_op)
    match = fold_batch_norm.find(bn_op, scope_prefix) if bn_op is not None else None
    if match is not None:
        output = fold_batch_norm.fold(match, is_training, bn_frozen, quantize_weights)
    else:
        weights = layer_op.inputs[1]
        reroute([layer_op], weights, quantize_weights(weights))
        output = layer_op.outputs[0]
        bias_add = _single_consumer(output, BIAS_ADDS)
        if bias_add is not None:
            output = bias_add.outputs[0]
    _quantize_after(output, context, quantizers, scope_prefix)


# What the preprocessing of the networks quantized here gives (inception's and cifar's
# scaling of 8-bit pixels): an int8 model's input has this range, so the simulated one
# does too. contrib.quantize left the input to the converter's --mean_values /
# --std_dev_values; here the exported graph carries it, and needs no such flags.
INPUT_RANGE = (-1.0, 1.0)


def quantize_input(images):
    """``images`` fake-quantized to 8 bits over INPUT_RANGE (no variables)."""
    return tf.fake_quant_with_min_max_args(images, min=INPUT_RANGE[0], max=INPUT_RANGE[1],
                                           num_bits=fake_quant.NUM_BITS, name="input_quant")


def _has_weights(op):
    """A layer op whose second input reads a variable (folded or not)."""
    source = op.inputs[1].op
    while source.type == "Identity":
        source = source.inputs[0].op
    return source.type in ("ReadVariableOp", "VariableV2", "Variable")


def quantize_network(ops, is_training, settings=None, scope_prefix=""):
    """Rewrites the network made of ``ops`` (just built, in the default graph) for
    simulated int8: training (``settings``: Settings with quant_delay / freeze_bn_delay
    in steps, None for no delay / never frozen) or inference; ``settings.per_channel``
    ranges conv and depthwise weights per output channel in both."""
    settings = settings or Settings(None, None)
    layers = [op for op in ops if op.type in LAYERS and _has_weights(op)]
    bn_frozen = None
    if is_training and settings.freeze_bn_delay is not None:
        bn_frozen = tf.greater_equal(fake_quant.quantization_step(),
                                     settings.freeze_bn_delay, name="use_moving_average")
    delays = dict(is_training=is_training,
                  quant_delay=settings.quant_delay if is_training else None)
    quantizers = Quantizers(functools.partial(fake_quant.fake_quantize, **delays),
                            functools.partial(fake_quant.fake_quantize_fixed, **delays))
    for layer_op in layers:
        _quantize_layer(layer_op, quantizers, is_training, bn_frozen, scope_prefix,
                        settings.per_channel)
    _requantize_average_pools(ops)


def _followed_by_fake_quant(op):
    pending = list(op.outputs[0].consumers()) if op.outputs else []
    while pending:
        consumer = pending.pop()
        if consumer.type in FAKE_QUANTS:
            return True
        if consumer.type in ("Identity", "Reshape", "Squeeze"):
            pending.extend(consumer.outputs[0].consumers())
    return False


def _range_source(tensor):
    """(the FakeQuant op giving ``tensor`` its range, the delay condition or None),
    through Identity and the delayed-quantization select; (None, None) if none."""
    op = tensor.op
    while op.type == "Identity":
        op = op.inputs[0].op
    condition = None
    if op.type in ("Select", "SelectV2") and op.name.endswith("delayed_quant"):
        condition, op = op.inputs[0], op.inputs[1].op
    return (op, condition) if op.type == "FakeQuantWithMinMaxVars" else (None, None)


def _requantize_average_pools(ops):
    """An int8 average pool keeps its input's scale, rounding each mean to it
    (TFLite's AVERAGE_POOL_2D); contrib left the mean in float, so its simulated logits
    drifted from the int8 model's. Each pool of a ranged tensor is fake-quantized
    again with that same range (no new variables); so is a mean over H and W (an int8
    MEAN may rescale, but needs a range, and its input's is the one at hand)."""
    for op in ops:
        if op.type not in POOLS:
            continue
        source, condition = _range_source(op.inputs[0])
        if source is None:
            continue
        output = op.outputs[0]
        consumers = list(output.consumers())
        with tf.name_scope(op.name + "_quant/"):
            quantized = tf.fake_quant_with_min_max_vars(
                output, source.inputs[1], source.inputs[2], num_bits=fake_quant.NUM_BITS,
                narrow_range=source.get_attr("narrow_range"))
            if condition is not None:
                quantized = tf.where(condition, quantized, output)
        reroute(consumers, output, quantized)


def _fused_hard_swishes(ops):
    """The inner ops of each hard-swish among ``ops`` whose output has a range: TFLite's
    converter fuses them into one HARD_SWISH kernel, so they need none of their own."""
    fused = set()
    for op in ops:
        if op.type not in ADDS:
            continue
        for tensor in op.inputs:
            parts = _hard_swish_ops(tensor)
            if parts and parts[0] is op and _followed_by_fake_quant(parts[-1]):
                fused.update(parts[:-1])
    return fused


def unquantized_layers(ops, scope_prefix=""):
    """{cause: [layer scopes]} of the float math left without a range in the network
    made of ``ops`` after quantize_network; empty when all of it is int8."""
    found = collections.OrderedDict()
    fused = _fused_hard_swishes(ops)
    for op in ops:
        if op.type not in NEEDS_RANGE or NOT_INFERENCE.search(op.name) \
                or op in fused or _followed_by_fake_quant(op):
            continue
        if op.type in ADDS and all(c.type in RELUS and _followed_by_fake_quant(c)
                                   for c in op.outputs[0].consumers()):
            continue  # an add fused into the ReLU after it, whose output has a range
        scope = _context(op, scope_prefix)
        cause = next((name for name in KNOWN_CAUSES if "/%s" % name in "/" + scope),
                     op.type)
        layer = scope.split("/" + cause)[0] if cause in KNOWN_CAUSES else scope
        found.setdefault(cause, [])
        if layer not in found[cause]:
            found[cause].append(layer)
    return found


__all__ = ["INFERENCE", "INPUT_RANGE", "quantize_input", "Settings", "quantize_network", "unquantized_layers"]
