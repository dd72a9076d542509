"""Readies a frozen simulated-int8 graph (a quantization-aware checkpoint's) for tf2onnx,
so that its ONNX model carries every trained range as a QuantizeLinear / DequantizeLinear
pair (QDQ; per tensor, or per output channel for weights ranged so).

tf2onnx turns an activation's FakeQuantWithMinMaxVars (constant range, wide) into a uint8
pair by itself. A weight's fake-quant op reads constants only, so tf2onnx folds it into a
float constant, and it refuses narrow ranges anyway: the weights would lose their range.
Each weight fake-quant op here is followed by a QuantizeAndDequantizeV2 over the same
symmetric range (signed, narrow: int8 [-127, 127], zero point 0), which tf2onnx never
folds and converts into an int8 pair. Its input, the folded fake-quant output, already
lies on that grid, so the pair changes no value. Every range is given nudged first, as
FakeQuant uses it (nudged_range). A per-channel weight op (--quantize_per_channel) gets a
QuantizeAndDequantizeV2 with ``axis`` (its last, as FakeQuantWithMinMaxVarsPerChannel's),
which tf2onnx converts into a per-axis pair (opset 13). Then ``finish`` readies
tf2onnx's output for onnxruntime's int8 kernels.
"""
import re

import numpy as np

from utils.tf_compat import tf

WEIGHT_QDQ_SUFFIX = "/qdq"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# The layer scope in the name tf2onnx gives a weight fake-quant op's folded output.
WEIGHT_SCOPE = re.compile(r"^(.*/weights_quant)/")
# The ONNX model's quantization, as the metadata records it.
QDQ_PER_TENSOR = "qdq_per_tensor"
QDQ_PER_CHANNEL = "qdq_per_channel"
# onnxruntime's int8-weight convolution kernels on x86 CPUs without VNNI add products
# pairwise in int16, which saturates where neighbouring weights are both large, as
# per-channel weights are in every channel; with this entry (onnxruntime >= 1.12, a no-op
# elsewhere) it converts such weights to uint8 first. Shared weight constants break it:
# own_weight_constants.
X64_QUANT_PRECISION = ("session.x64quantprecision", "1")
FAKE_QUANT_OPS = ("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel")


def nudged_range(low, high, narrow_range, num_bits):
    """[min, max] as TF's FakeQuant kernel moves them so that 0 is an integer, in float32
    as it computes (fake_quant_ops_functor.h, Nudge; std::round: half away from zero),
    floats, or float32 arrays for per-channel ranges (each channel nudged alone).
    tf2onnx takes a zero point from the range as given, in float64: for the input's
    [-1, 1] it gave 128 where TF's kernel uses 127. Given this range, both agree."""
    low, high = np.float32(low), np.float32(high)
    quant_min, quant_max = np.float32(1 if narrow_range else 0), np.float32(2 ** num_bits - 1)
    scale = (high - low) / (quant_max - quant_min)
    zero_point = np.clip(np.floor(quant_min - low / scale + np.float32(0.5)),
                         quant_min, quant_max)
    bounds = ((quant_min - zero_point) * scale, (quant_max - zero_point) * scale)
    return bounds if low.ndim else tuple(float(bound) for bound in bounds)


def _fake_quants(graph):
    """The fake-quant ops with range inputs of ``graph`` (weights' narrow, the rest
    wide; per channel only weights)."""
    return [op for op in graph.get_operations() if op.type in FAKE_QUANT_OPS]


def _const_node(name, value):
    return tf.constant(value, dtype=tf.float32, name=name).op.node_def


def _weight_qdq(op, low, high):
    """The QuantizeAndDequantizeV2 NodeDef after the weight fake-quant ``op``, reading
    the Const NodeDefs ``low`` and ``high``; per channel along the last axis as ``op``."""
    with tf.Graph().as_default():
        qdq = tf.quantization.quantize_and_dequantize(
            tf.placeholder(tf.float32, name="x"), -1.0, 1.0, signed_input=True,
            num_bits=op.get_attr("num_bits"), range_given=True, narrow_range=True,
            name="qdq").op.node_def
    qdq.name = op.name + WEIGHT_QDQ_SUFFIX
    if op.type == "FakeQuantWithMinMaxVarsPerChannel":  # tf2onnx needs the axis >= 0
        qdq.attr["axis"].i = op.inputs[0].get_shape().ndims - 1
    qdq.input[:] = [op.name, low.name, high.name]
    return qdq


def _nudge_input_range(graph_def):
    """The input's FakeQuantWithMinMaxArgs given its nudged range (nudged_range)."""
    for node in graph_def.node:
        if node.op == "FakeQuantWithMinMaxArgs":
            low, high = nudged_range(node.attr["min"].f, node.attr["max"].f,
                                     node.attr["narrow_range"].b, node.attr["num_bits"].i)
            node.attr["min"].f, node.attr["max"].f = low, high


def for_tf2onnx(graph_def):
    """A copy of ``graph_def`` (frozen) that tf2onnx converts with every range as a pair:
    each fake-quant op reads its nudged range as constants, and a weight's feeds a
    QuantizeAndDequantizeV2 over that range, read by its former consumers."""
    result = tf.GraphDef()
    result.CopyFrom(graph_def)
    _nudge_input_range(result)
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        ops = _fake_quants(graph)
        with tf.Session() as sess:  # the ranges are constants: nothing to feed
            ranges = sess.run([(op.inputs[1], op.inputs[2]) for op in ops])
    nodes = dict((node.name, node) for node in result.node)
    renames = {}
    for op, (low, high) in zip(ops, ranges):
        narrow = op.get_attr("narrow_range")
        low, high = nudged_range(low, high, narrow, op.get_attr("num_bits"))
        bounds = [_const_node(op.name + "/nudged_" + end, value)
                  for end, value in (("min", low), ("max", high))]
        result.node.extend(bounds)
        nodes[op.name].input[1:3] = [bound.name for bound in bounds]
        if narrow:
            result.node.extend([_weight_qdq(op, *bounds)])
            renames[op.name] = op.name + WEIGHT_QDQ_SUFFIX
    for node in result.node:
        if node.name not in renames.values():
            node.input[:] = [renames.get(name, name) for name in node.input]
    return result


def _initializer_values(graph):
    from onnx import numpy_helper
    return dict((t.name, numpy_helper.to_array(t)) for t in graph.initializer)


def _dequantize_scale(name, producers, values):
    """The scale of the DequantizeLinear giving ``name``, or None."""
    node = producers.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    return values.get(node.input[1])


def _bias_inputs(conv, bias, producers, values):
    """(initializers, node, the Conv's bias input) for ``bias``: int32 on the scale of
    input times weights (per output channel with the weights'), through a
    DequantizeLinear, when both are dequantized (the form onnxruntime's int8
    convolution takes: QLinearConv; as TFLite's int8 kernels, rounded to that scale, far
    finer than the output's); else float."""
    from onnx import helper, numpy_helper
    name = conv.name + "_bias"
    bias = bias.reshape(-1)
    scales = [_dequantize_scale(conv.input[i], producers, values) for i in (0, 1)]
    if any(scale is None for scale in scales) or scales[0].size != 1 \
            or scales[1].size not in (1, bias.size):
        return [numpy_helper.from_array(bias, name)], None, name
    scale = np.asarray(scales[0] * scales[1], np.float32)
    quantized = np.round(bias / scale).astype(np.int32)
    tensors = [numpy_helper.from_array(quantized, name + "_quantized"),
               numpy_helper.from_array(scale, name + "_scale"),
               numpy_helper.from_array(np.zeros(scale.shape, np.int32), name + "_zero_point")]
    node = helper.make_node("DequantizeLinear", [t.name for t in tensors], [name],
                            name=name + "_DequantizeLinear",
                            **({"axis": 0} if scale.ndim else {}))
    return tensors, node, name


def merge_conv_biases(graph):
    """Moves each bias Add (a constant per output channel) into the Conv before it, in
    the ONNX ``graph``: tf2onnx merges them only when the weights are constants, and
    onnxruntime fuses a QDQ convolution into an int8 kernel only when its output goes
    straight to a QuantizeLinear and its bias is int32. Returns how many it moved."""
    values = _initializer_values(graph)
    producers, consumers = _producers_and_consumers(graph)
    merged, bias_nodes = [], {}
    for conv in graph.node:
        after = consumers.get(conv.output[0], [])
        if conv.op_type != "Conv" or len(conv.input) != 2 or len(after) != 1 \
                or after[0].op_type != "Add":
            continue
        add = after[0]
        bias = values.get([name for name in add.input if name != conv.output[0]][0])
        if bias is None or bias.ndim < 3 or bias.shape[-3] != bias.size:
            continue  # not one constant per channel of NCHW
        tensors, node, bias_name = _bias_inputs(conv, bias, producers, values)
        graph.initializer.extend(tensors)
        if node is not None:
            bias_nodes[conv.name] = node
        conv.input.append(bias_name)
        conv.output[0] = add.output[0]
        merged.append(add)
    nodes = []  # in topological order still: each bias's dequantization before its Conv
    for node in graph.node:
        if node not in merged:
            nodes.extend([bias_nodes[node.name]] if node.name in bias_nodes else [])
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(merged)


def _producers_and_consumers(graph):
    producers = dict((output, node) for node in graph.node for output in node.output)
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return producers, consumers


def _weight_path(name, producers, consumers):
    """(the Reshape / Transpose ops, last first, the DequantizeLinear, the QuantizeLinear)
    on the path from a QuantizeLinear of a constant to ``name``, each op read once;
    None when ``name`` is not computed so."""
    layout, pair, node = [], {}, producers.get(name)
    while node is not None and len(consumers[node.output[0]]) == 1:
        if node.op_type in ("Reshape", "Transpose"):
            layout.append(node)
        elif node.op_type in QDQ_OPS and node.op_type not in pair:
            pair[node.op_type] = node
        else:
            break
        if node.op_type == "QuantizeLinear":
            return layout, pair.get("DequantizeLinear"), node
        node = producers.get(node.input[0])
    return None


def _apply_layout(weights, chain, values):
    """``weights`` through the Reshape / Transpose ops of ``chain`` (last first)."""
    for node in reversed(chain):
        if node.op_type == "Transpose":
            perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
            weights = np.transpose(weights, perm[0] if perm else None)
        else:  # ONNX's 0 keeps that dimension
            shape = [d if d != 0 else weights.shape[i]
                     for i, d in enumerate(values[node.input[1]])]
            weights = weights.reshape(shape)
    return weights


def _channels_along(size, axis, shape):
    """An array of ``shape`` holding each element's index along ``axis`` (of ``size``)."""
    index = np.arange(size).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return np.broadcast_to(index, shape)


def _moved_axis(shape, axis, chain, values):
    """The axis of the weights after ``chain`` that holds their ``axis`` (of ``shape``)
    whole and in order, or None when the layout splits or mixes it."""
    moved = _apply_layout(_channels_along(shape[axis], axis, shape), chain, values)
    for new_axis, size in enumerate(moved.shape):
        if size == shape[axis] and np.array_equal(
                moved, _channels_along(size, new_axis, moved.shape)):
            return new_axis
    return None


def _set_axis(node, axis):
    from onnx import helper
    kept = [a for a in node.attribute if a.name != "axis"]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute("axis", axis)])


def fold_weight_layouts(graph):
    """Moves the Reshape / Transpose that tf2onnx leaves between a weight's
    DequantizeLinear and its Conv (depthwise kernels, the NHWC-to-NCHW kernel order)
    onto the constant before its QuantizeLinear, where they commute with a per-tensor
    pair, and with a per-axis one given the axis they move its channels to:
    onnxruntime fuses a Conv into QLinearConv only when its weights come straight from
    a DequantizeLinear. Returns how many weights it moved."""
    from onnx import helper, numpy_helper
    values = _initializer_values(graph)
    producers, consumers = _producers_and_consumers(graph)
    moved = []
    for conv in [node for node in graph.node if node.op_type == "Conv"]:
        path = _weight_path(conv.input[1], producers, consumers)
        if path is None or not path[0] or path[1] is None or path[2].input[0] not in values:
            continue
        chain, dequantize, quantize = path
        weights = values[quantize.input[0]]
        if values[quantize.input[1]].size > 1:  # per axis (ONNX's default axis: 1)
            axes = [helper.get_attribute_value(a) for a in quantize.attribute
                    if a.name == "axis"] or [1]
            axis = _moved_axis(weights.shape, axes[0] % weights.ndim, chain, values)
            if axis is None:
                continue
            for node in (quantize, dequantize):
                _set_axis(node, axis)
        weights = _apply_layout(weights, chain, values)
        graph.initializer.extend([numpy_helper.from_array(weights, conv.name + "_weights")])
        quantize.input[0] = conv.name + "_weights"
        dequantize.input[0] = quantize.output[0]
        conv.input[1] = dequantize.output[0]
        moved.append(chain)
    for chain in moved:
        for node in chain:
            graph.node.remove(node)
    return len(moved)


def name_weight_pairs(graph):
    """Names each weight's pair after its range, ``<layer>/weights_quant/QuantizeLinear``
    and ``.../DequantizeLinear``, as tf2onnx names the activations' (its own names for
    QuantizeAndDequantizeV2 say nothing); the scope is in the folded weights' name."""
    _, consumers = _producers_and_consumers(graph)
    for node in graph.node:
        match = WEIGHT_SCOPE.match(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if match is None:
            continue
        node.name = match.group(1) + "/QuantizeLinear"
        for dequantize in consumers[node.output[0]]:
            dequantize.name = match.group(1) + "/DequantizeLinear"


def own_weight_constants(graph):
    """Gives each weight pair (named by name_weight_pairs, its DequantizeLinear right
    after) a scale and zero point of its own, ``<layer>/weights_quant/scale`` and
    ``.../zero_point``: tf2onnx shares equal constants, and onnxruntime's int8-to-uint8
    weight conversion (session.x64quantprecision) fails on a shared one."""
    from onnx import TensorProto
    tensors = dict((t.name, t) for t in graph.initializer)
    _, consumers = _producers_and_consumers(graph)
    for node in graph.node:
        pair = [node] + consumers.get(node.output[0], [])
        if not node.name.endswith("/weights_quant/QuantizeLinear") \
                or [n.op_type for n in pair] != list(QDQ_OPS):
            continue
        for index, suffix in ((1, "scale"), (2, "zero_point")):
            own = TensorProto()
            own.CopyFrom(tensors[node.input[index]])
            own.name = node.name[:-len("QuantizeLinear")] + suffix
            graph.initializer.extend([own])
            for member in pair:
                member.input[index] = own.name


def finish(graph):
    """The passes above, in order, on tf2onnx's ONNX ``graph`` (a float model's
    unchanged): the weights' layout first, so that each Conv then reads its weights
    from their DequantizeLinear and its bias can take their scale."""
    name_weight_pairs(graph)
    fold_weight_layouts(graph)
    own_weight_constants(graph)
    merge_conv_biases(graph)
    drop_unused_initializers(graph)


def drop_unused_initializers(graph):
    """Removes the constants no node reads any more (what the passes here replaced)."""
    read = set(name for node in graph.node for name in node.input)
    unused = [t for t in graph.initializer if t.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)


def session_options(onnxruntime, meta):
    """onnxruntime.SessionOptions for the ONNX model whose metadata is ``meta``: a
    per-channel model's with X64_QUANT_PRECISION (the default's logits there were 100
    steps off on an AVX2 CPU)."""
    options = onnxruntime.SessionOptions()
    if meta.get("onnx_quantization") == QDQ_PER_CHANNEL:
        options.add_session_config_entry(*X64_QUANT_PRECISION)
    return options
