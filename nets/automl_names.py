"""google/automl's EfficientNetV2 variable names <-> ours (nets/efficientnet_v2.py).

automl (efficientnetv2/effnetv2_model.py) names a network ``efficientnetv2-<size>``
and its layers as Keras numbers them within each unit: the stem, ``blocks_<k>`` (one
per block, counted over the whole network), the head. Inside a block the convolutions
are ``conv2d``, ``conv2d_1`` in order (expand, project), the batch norms
``tpu_batch_normalization``, ``_1``, ``_2`` in order (expand, depthwise, project),
so which is which follows from the layers the block has:

  ours (EfficientNetV2/...)                 automl (efficientnetv2-s/...)
  Conv/weights, Conv/BatchNorm/*            stem/conv2d/kernel, stem/tpu_batch_normalization/*
  expanded_conv_<k>/expand/weights          blocks_<k>/conv2d/kernel
  expanded_conv_<k>/depthwise/depthwise_weights  blocks_<k>/depthwise_conv2d/depthwise_kernel
  expanded_conv_<k>/squeeze_excite/Conv[_1]/weights, biases  blocks_<k>/se/conv2d[_1]/kernel, bias
  expanded_conv_<k>/project/weights         blocks_<k>/conv2d_1/kernel (conv2d without expand)
  expanded_conv_<k>/<layer>/BatchNorm/*     blocks_<k>/tpu_batch_normalization[_i]/*
  Conv_1/weights, Conv_1/BatchNorm/*        head/conv2d/kernel, head/tpu_batch_normalization/*
  Logits/Conv2d_1c_1x1/weights [1,1,C,N]    head/dense/kernel [C, N] (a dense layer)
  Logits/Conv2d_1c_1x1/biases               head/dense/bias

(``expanded_conv`` for block 0; batch norm's gamma, beta, moving_mean and
moving_variance keep their names.) Whatever follows a variable's name (its
ExponentialMovingAverage shadow, RMSProp or Momentum slots) follows it unchanged.
automl's code run by TensorFlow 2.x writes ``head_1/dense`` (its name scope made
unique); both read as the head.
"""
import collections
import re

from nets import efficientnet_v2

OUR_SCOPE = efficientnet_v2.SCOPE
# automl's name of each network here -> our registry name.
MODELS = collections.OrderedDict([("efficientnetv2-s", "efficientnet_v2_s"),
                                  ("efficientnetv2-b0", "efficientnet_v2_b0")])
# The networks automl publishes (effnetv2_configs.py), to name one we cannot build.
PUBLISHED = ("efficientnetv2-s", "efficientnetv2-m", "efficientnetv2-l", "efficientnetv2-xl",
             "efficientnetv2-b0", "efficientnetv2-b1", "efficientnetv2-b2",
             "efficientnetv2-b3")
HEAD_DENSE = "head/dense"

_LEAF = r"(?P<leaf>kernel|depthwise_kernel|bias|gamma|beta|moving_mean|moving_variance)"
_AUTOML = re.compile(
    r"^(?P<model>efficientnetv2-[a-z0-9]+)/(?P<unit>stem|head|head_1|blocks_\d+)/"
    r"(?P<layer>se/conv2d(?:_1)?|conv2d(?:_\d+)?|depthwise_conv2d|dense|"
    r"tpu_batch_normalization(?:_\d+)?)/" + _LEAF + r"(?P<rest>/.*)?$")
_OURS = re.compile(
    r"^" + OUR_SCOPE + r"/(?P<unit>Conv|Conv_1|Logits|expanded_conv(?:_\d+)?)/"
    r"(?P<layer>expand|depthwise|project|squeeze_excite/Conv(?:_1)?|Conv2d_1c_1x1)?/?"
    r"(?P<bn>BatchNorm/)?(?P<leaf>weights|depthwise_weights|biases|gamma|beta|moving_mean|"
    r"moving_variance)(?P<rest>/.*)?$")

_LEAVES = {"weights": "kernel", "depthwise_weights": "depthwise_kernel", "biases": "bias",
           "gamma": "gamma", "beta": "beta", "moving_mean": "moving_mean",
           "moving_variance": "moving_variance"}
_OUR_LEAVES = dict((automl, ours) for ours, automl in _LEAVES.items())


def automl_model(names):
    """automl's network name (efficientnetv2-s) when ``names`` are automl's, else None."""
    for name in names:
        match = _AUTOML.match(name)
        if match:
            return match.group("model")
    return None


def _numbered(base, index):
    return base if index == 0 else "%s_%d" % (base, index)


def _block_layers(layers):
    """{our layer: (automl conv name or None, automl batch-norm name or None)} of a block
    with ``layers`` (our names: a subset of expand, depthwise, project)."""
    convs = [layer for layer in ("expand", "project") if layer in layers]
    norms = [layer for layer in ("expand", "depthwise", "project") if layer in layers]
    table = {}
    for layer in norms:
        conv = (_numbered("conv2d", convs.index(layer)) if layer in convs
                else "depthwise_conv2d")
        table[layer] = (conv, _numbered("tpu_batch_normalization", norms.index(layer)))
    return table


def _block_unit(unit):
    """expanded_conv_<k> -> blocks_<k>, and back."""
    if unit.startswith("blocks_"):
        index = int(unit.split("_")[1])
        return _numbered("expanded_conv", index)
    index = int(unit.split("_")[-1]) if unit != "expanded_conv" else 0
    return "blocks_%d" % index


def _automl_layers_of_block(layers):
    """Our layer names present in a block, from its automl layer names."""
    convs = sorted(layer for layer in layers if layer.startswith("conv2d"))
    ours = set(["expand", "project"] if len(convs) > 1 else ["project"] if convs else [])
    if "depthwise_conv2d" in layers:
        ours.add("depthwise")
    return ours


def _parse(names, pattern):
    """{name: match} of the names ``pattern`` reads, and {unit: set of layers}."""
    matches, layers = {}, collections.defaultdict(set)
    for name in names:
        match = pattern.match(name)
        if match:
            matches[name] = match
            layers[match.group("unit")].add(match.group("layer"))
    return matches, layers


def from_automl(names):
    """{automl name: our name} of every automl EfficientNetV2 tensor in ``names``
    (variables and whatever follows them: moving averages, optimizer slots)."""
    matches, layers = _parse(names, _AUTOML)
    tables = dict((unit, dict(_layer_pairs(_automl_layers_of_block(found))))
                  for unit, found in layers.items() if unit.startswith("blocks_"))
    mapping = {}
    for name, match in matches.items():
        unit, layer, leaf = match.group("unit", "layer", "leaf")
        rest = match.group("rest") or ""
        if unit == "stem" or unit == "head" and layer != "dense":
            scope = "Conv" if unit == "stem" else "Conv_1"
            ours = scope + ("/BatchNorm/" if layer.startswith("tpu_") else "/") + \
                _OUR_LEAVES[leaf]
        elif layer == "dense":
            ours = "Logits/Conv2d_1c_1x1/" + _OUR_LEAVES[leaf]
        elif layer.startswith("se/"):
            ours = "%s/squeeze_excite/Conv%s/%s" % (_block_unit(unit), layer[len("se/conv2d"):],
                                                    _OUR_LEAVES[leaf])
        elif layer in tables[unit]:
            ours = "%s/%s/%s" % (_block_unit(unit), tables[unit][layer], _OUR_LEAVES[leaf])
        else:  # a layer this block's other layers do not account for
            continue
        mapping[name] = "%s/%s%s" % (OUR_SCOPE, ours, rest)
    return mapping


def _layer_pairs(block_layers):
    """[(automl layer, our layer path)] of a block with our ``block_layers``: the
    convolution ('<layer>') and the batch norm ('<layer>/BatchNorm') of each."""
    pairs = []
    for layer, (conv, norm) in _block_layers(block_layers).items():
        pairs.append((norm, layer + "/BatchNorm"))
        pairs.append((conv, layer))
    return pairs


def to_automl(names, model_name):
    """{our name: automl name} of every EfficientNetV2 tensor of ours in ``names``,
    as automl's ``model_name`` (efficientnetv2-s) names it."""
    matches, layers = _parse(names, _OURS)
    tables = dict((unit, _block_layers(found)) for unit, found in layers.items()
                  if unit.startswith("expanded_conv"))
    mapping = {}
    for name, match in matches.items():
        unit, layer, leaf = match.group("unit", "layer", "leaf")
        bn, rest = match.group("bn"), match.group("rest") or ""
        if unit in ("Conv", "Conv_1"):
            automl = "%s/%s/%s" % ("stem" if unit == "Conv" else "head",
                                   "tpu_batch_normalization" if bn else "conv2d", _LEAVES[leaf])
        elif unit == "Logits":
            automl = "%s/%s" % (HEAD_DENSE, _LEAVES[leaf])
        elif layer.startswith("squeeze_excite/"):
            automl = "%s/se/conv2d%s/%s" % (_block_unit(unit), layer[len("squeeze_excite/Conv"):],
                                            _LEAVES[leaf])
        else:
            conv, norm = tables[unit][layer]
            automl = "%s/%s/%s" % (_block_unit(unit), norm if bn else conv, _LEAVES[leaf])
        mapping[name] = "%s/%s%s" % (model_name, automl, rest)
    return mapping


def our_shape(automl_name, shape):
    """The shape our variable has for automl's tensor: the dense head's [C, N] kernel is
    our 1x1 convolution's [1, 1, C, N]."""
    if "/dense/kernel" in automl_name or "/head_1/dense/kernel" in automl_name:
        return [1, 1] + list(shape)
    return list(shape)


def automl_shape(our_name, shape):
    """The inverse of our_shape."""
    if "/Logits/Conv2d_1c_1x1/weights" in our_name:
        return list(shape)[2:]
    return list(shape)
