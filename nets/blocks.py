"""The block library of every family here (MobileNetV2/V3, MnasNet, EfficientNetV2).

Every block names its variables and output tensors the way TF-Slim's
``nets/mobilenet/conv_blocks.py`` does, so that the published TF-Slim checkpoints
restore without renaming and ``end_points`` carry the same keys:

* ``conv_bn_act``: ``slim.conv2d`` (default variable scope ``Conv``, ``Conv_1``, ...)
  with batch norm and the activation from the surrounding arg_scope.
* ``expanded_conv``: the inverted residual.  Variable scopes ``expand`` (1x1, skipped
  when it would not widen the input), ``depthwise`` (kxk, ``depthwise_weights``),
  ``project`` (1x1, linear); default block scopes ``expanded_conv``,
  ``expanded_conv_1``, ...; tensors ``input``, ``expansion_output``,
  ``depthwise_output`` and ``output`` made with ``tf.identity``.  TF-Slim's
  ``split_expansion`` / ``split_projection`` cut ``expand`` / ``project`` into
  grouped 1x1 convs ``expand_part_0``, ``expand_part_1``, ... (``split_conv``).
* ``fused_expanded_conv``: EfficientNetV2's Fused-MBConv, the same scopes without
  ``depthwise``.  Its default scope is also ``expanded_conv``, so both kinds share one
  numbering in a mixed table.
* ``squeeze_excite``: the optional gate between depthwise and projection, used by
  MobileNetV3 / MnasNet / EfficientNet through ``expansion_transform=``
  (``squeeze_excite_transform``).
* ``drop_path``: stochastic depth on an inverted residual's branch.
* activations the tables name: ``hard_swish``, ``hard_sigmoid`` (MobileNetV3),
  ``swish`` (EfficientNet); ``pool_to_1x1``, MobileNetV3's pooling row.
"""
import contextlib

from utils.tf_compat import slim, tf


def make_divisible(value, divisor, min_value=None):
    """Rounds ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``,
    default ``divisor``), then adds one ``divisor`` if rounding lost more than 10%."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2.0) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def expand_input_by_factor(factor, divisible_by=8):
    """An ``expansion_size`` callable: the block's input depth times ``factor``,
    made divisible by ``divisible_by``."""
    def expansion_size(num_inputs, **unused_kwargs):
        return make_divisible(num_inputs * factor, divisible_by)
    expansion_size.factor = factor
    expansion_size.divisible_by = divisible_by
    return expansion_size


def fixed_padding(inputs, kernel_size, rate=1):
    """Pads H and W so a VALID convolution gives the shape a SAME one would, whatever
    the input size (TF-Slim's ``use_explicit_padding``), for the dilated kernel."""
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    pads = []
    for k in kernel_size[:2]:
        effective = k + (k - 1) * (rate - 1)
        total = effective - 1
        pads.append([total // 2, total - total // 2])
    return tf.pad(inputs, [[0, 0], pads[0], pads[1], [0, 0]])


def _depth(tensor):
    return tensor.get_shape().as_list()[3]


def hard_sigmoid(x, name="hard_sigmoid"):
    """relu6(x + 3) / 6: MobileNetV3's cheap sigmoid (its squeeze-excite gate)."""
    with tf.name_scope(name):
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def hard_swish(x, name="hard_swish"):
    """x * relu6(x + 3) / 6: MobileNetV3's cheap swish."""
    with tf.name_scope(name):
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def swish(x, name="swish"):
    """x * sigmoid(x) (SiLU), written out: tf.nn.silu is missing from TF 1.15."""
    with tf.name_scope(name):
        return x * tf.sigmoid(x)


@slim.add_arg_scope
def drop_path(inputs, rate, is_training=False, scope=None):
    """Stochastic depth: while training, drops a residual branch for a whole example
    with probability ``rate`` and scales the kept ones by 1 / (1 - rate), so the
    expectation is unchanged and evaluation (identity) needs no rescaling.
    ``is_training`` comes from the builder's arg_scope."""
    if not is_training or not rate:
        return inputs
    with tf.name_scope(scope, "drop_path", [inputs]):
        keep = 1.0 - rate
        shape = [tf.shape(inputs)[0], 1, 1, 1]
        mask = tf.floor(keep + tf.random_uniform(shape, dtype=inputs.dtype))
        return inputs * (mask / keep)


def _explicit_padding(inputs, kernel_size, rate, padding, use_explicit_padding):
    """(inputs, padding) for a kxk convolution: padded for the dilated kernel and
    VALID with ``use_explicit_padding``, else both as given."""
    if not use_explicit_padding:
        return inputs, padding
    if padding != "SAME":
        raise ValueError("use_explicit_padding needs padding='SAME', got %r" % (padding,))
    return fixed_padding(inputs, kernel_size, rate), "VALID"


def _padded_conv(inputs, num_outputs, kernel_size, stride=1, rate=1, padding="SAME",
                 use_explicit_padding=False, **kwargs):
    """``slim.conv2d`` behind ``_explicit_padding``: conv_bn_act's and the fused
    block's kxk convolution."""
    inputs, padding = _explicit_padding(inputs, kernel_size, rate, padding,
                                        use_explicit_padding)
    return slim.conv2d(inputs, num_outputs, kernel_size, stride=stride, rate=rate,
                       padding=padding, **kwargs)


@slim.add_arg_scope
def conv_bn_act(input_tensor, num_outputs, kernel_size=(3, 3), stride=1, rate=1,
                normalizer_fn=slim.batch_norm, padding="SAME",
                use_explicit_padding=False, scope=None, **kwargs):
    """conv -> batch norm -> activation, as one ``slim.conv2d`` call.

    The activation, initializer and regularizer come from the arg_scope on
    ``slim.conv2d`` unless given in ``kwargs``; the default scope is slim's
    ``Conv``/``Conv_1``/... so the variables match TF-Slim's spec entries
    ``op(slim.conv2d, ...)``.
    """
    return _padded_conv(input_tensor, num_outputs, kernel_size, stride=stride, rate=rate,
                        padding=padding, use_explicit_padding=use_explicit_padding,
                        normalizer_fn=normalizer_fn, scope=scope, **kwargs)


@slim.add_arg_scope
def squeeze_excite(input_tensor, divisible_by=8, squeeze_factor=3,
                   inner_activation_fn=tf.nn.relu, gating_fn=tf.sigmoid,
                   squeeze_input_tensor=None, squeeze_channels=None,
                   scope="squeeze_excite"):
    """Squeeze-and-excite gate: ``input * gate(fc(act(fc(avgpool(x)))))``.

    The squeeze width is ``squeeze_channels`` when given, else
    ``make_divisible(channels / squeeze_factor, divisible_by)`` (MobileNetV3's rule);
    the two 1x1 convs live in ``<scope>/Conv`` and ``<scope>/Conv_1`` with biases and
    no normalizer (TF-Slim's MobileNetV3 layout).
    """
    with tf.variable_scope(scope):
        if squeeze_input_tensor is None:
            squeeze_input_tensor = input_tensor
        if squeeze_channels is None:
            squeeze_channels = make_divisible(
                _depth(squeeze_input_tensor) / float(squeeze_factor), divisible_by)
        pooled = global_average(squeeze_input_tensor)
        squeezed = slim.conv2d(pooled, squeeze_channels, [1, 1], normalizer_fn=None,
                               activation_fn=inner_activation_fn)
        gate = slim.conv2d(squeezed, _depth(input_tensor), [1, 1], normalizer_fn=None,
                           activation_fn=gating_fn)
        return input_tensor * gate


def squeeze_excite_transform(input_ratio=None, **se_kwargs):
    """Wraps ``squeeze_excite`` as an ``expansion_transform=`` hook of the inverted
    residuals: it gates the (depthwise) expansion before the projection.

    ``input_ratio``: squeeze to ``int(block input depth * input_ratio)`` channels, the
    rule of MnasNet and EfficientNet (``se0.25``), instead of MobileNetV3's
    expanded depth / ``squeeze_factor``.  Other arguments come from the arg_scope
    on ``squeeze_excite`` unless given here.
    """
    def transform(expansion_tensor, input_tensor):
        kwargs = dict(se_kwargs)
        if input_ratio is not None:
            kwargs["squeeze_channels"] = max(1, int(_depth(input_tensor) * input_ratio))
        return squeeze_excite(expansion_tensor, **kwargs)
    return transform


def global_average(input_tensor, name="AvgPool"):
    """Average over H and W keeping a [B, 1, 1, C] shape; an ``avg_pool`` when the
    spatial size is static (as TF-Slim, friendliest to accelerators), else a mean."""
    shape = input_tensor.get_shape().as_list()
    if shape[1] is None or shape[2] is None:
        return tf.reduce_mean(input_tensor, axis=[1, 2], keepdims=True, name=name)
    return tf.nn.avg_pool(input_tensor, ksize=[1, shape[1], shape[2], 1],
                          strides=[1, 1, 1, 1], padding="VALID", name=name)


def pool_to_1x1(input_tensor, use_explicit_padding=False, rate=1, scope="AvgPool2D"):
    """A spec row that averages to [B, 1, 1, C] (MobileNetV3 pools before its last
    1x1 conv).  No variables; a global pool has nothing to pad or dilate, so the
    builder's ``use_explicit_padding`` and ``output_stride`` rate are ignored."""
    del use_explicit_padding, rate
    with tf.name_scope(scope):
        return global_average(input_tensor)


def split_divisible(num, num_ways, divisible_by=8):
    """TF-Slim's ``_split_divisible``: ``num_ways`` sizes, multiples of
    ``divisible_by``, that sum to ``num``; the running total is the smallest that
    reaches ``num * (i + 1) / num_ways``, so uneven splits are larger first (24 in 2
    ways by 8: [16, 8])."""
    if num % divisible_by or num < num_ways * divisible_by:
        raise ValueError("cannot split %d channels %d ways in multiples of %d"
                         % (num, num_ways, divisible_by))
    base = num // num_ways // divisible_by * divisible_by
    sizes, total = [], 0
    for i in range(num_ways):
        size = base
        while total + size < num * (i + 1) / float(num_ways):
            size += divisible_by
        sizes.append(size)
        total += size
    return sizes


def split_conv(input_tensor, num_outputs, num_ways, scope, divisible_by=8, **kwargs):
    """TF-Slim's ``split_conv``: a 1x1 conv whose input and output channels are cut in
    ``num_ways`` groups (``split_divisible``), group i seeing only input group i.

    Variables ``<scope>_part_<i>/...``, outputs ``<scope>_part_<i>_output`` (so the
    builder lists them as end_points, as TF-Slim's does).  One plain conv named
    ``scope`` when ``num_ways`` is 1 or a group would get fewer than ``divisible_by``
    input or output channels.  ``kwargs`` go to every ``slim.conv2d``.
    """
    depth = _depth(input_tensor)
    if num_ways == 1 or min(depth // num_ways, num_outputs // num_ways) < divisible_by:
        return slim.conv2d(input_tensor, num_outputs, [1, 1], scope=scope, **kwargs)
    parts = tf.split(input_tensor, split_divisible(depth, num_ways, divisible_by),
                     axis=3, name="split_" + scope)
    outputs = []
    for i, (part, size) in enumerate(zip(
            parts, split_divisible(num_outputs, num_ways, divisible_by))):
        part_scope = "%s_part_%d" % (scope, i)
        net = slim.conv2d(part, size, [1, 1], scope=part_scope, **kwargs)
        outputs.append(tf.identity(net, name=part_scope + "_output"))
    # TF-Slim names the concat after the last part.
    return tf.concat(outputs, 3, name=part_scope + "_concat")


# ------------------------------------------------------------------ inverted residuals
# Both blocks run the same steps (block scope, expansion, [depthwise], transform,
# projection, residual); the helpers below are those steps.

@contextlib.contextmanager
def _block_scope(scope, inner_activation_fn=None, depthwise_activation_fn=None):
    """The block's variable and name scope (default ``expanded_conv``, numbered across
    both kinds of block) with its inner activations on slim's convolutions."""
    conv_args, depthwise_args = {}, {}
    if inner_activation_fn is not None:
        conv_args["activation_fn"] = inner_activation_fn
        depthwise_args["activation_fn"] = inner_activation_fn
    if depthwise_activation_fn is not None:
        depthwise_args["activation_fn"] = depthwise_activation_fn
    with tf.variable_scope(scope, default_name="expanded_conv") as var_scope, \
            tf.name_scope(var_scope.original_name_scope), \
            slim.arg_scope([slim.conv2d], **conv_args), \
            slim.arg_scope([slim.separable_conv2d], **depthwise_args):
        yield


def _inner_size(expansion_size, input_tensor):
    if callable(expansion_size):
        return expansion_size(num_inputs=_depth(input_tensor))
    return expansion_size


def _named(net, name, endpoints):
    """``net`` as the tensor ``<block>/<name>`` (TF-Slim's end_point naming)."""
    net = tf.identity(net, name=name)
    if endpoints is not None:
        endpoints[name] = net
    return net


def _transform(net, expansion_transform, input_tensor):
    if expansion_transform is None:
        return net
    return expansion_transform(expansion_tensor=net, input_tensor=input_tensor)


def _project(net, num_outputs, normalizer_fn, activation_fn, endpoints, num_ways=1,
             divisible_by=8):
    """The 1x1 projection (linear by default), split ``num_ways`` (``split_conv``)."""
    net = split_conv(net, num_outputs, num_ways, "project", divisible_by=divisible_by,
                     stride=1, normalizer_fn=normalizer_fn, activation_fn=activation_fn)
    if endpoints is not None:
        endpoints["projection_output"] = net
    return net


def _residual(input_tensor, net, residual, stride, drop_path_rate):
    """Adds the input when stride is 1 and depths match (``residual`` callable:
    its own rule), with stochastic depth on the branch; names ``<block>/output``."""
    if callable(residual):
        net = residual(input_tensor=input_tensor, output_tensor=net)
    elif residual and stride == 1 and _depth(net) == _depth(input_tensor):
        net = drop_path(net, drop_path_rate) + input_tensor
    return tf.identity(net, name="output")


@slim.add_arg_scope
def expanded_conv(input_tensor, num_outputs,
                  expansion_size=expand_input_by_factor(6),
                  stride=1, rate=1, kernel_size=(3, 3), residual=True,
                  normalizer_fn=slim.batch_norm,
                  split_projection=1, split_expansion=1, split_divisible_by=8,
                  expansion_transform=None,
                  depthwise_channel_multiplier=1,
                  inner_activation_fn=None, depthwise_activation_fn=None,
                  project_activation_fn=tf.identity, drop_path_rate=0.0,
                  use_explicit_padding=False, padding="SAME",
                  endpoints=None, scope=None):
    """Inverted residual: expand 1x1 -> depthwise kxk -> [transform] -> project 1x1.

    ``input_tensor``: [B, H, W, C] tensor.
    ``num_outputs``: depth of the block's output.
    ``expansion_size``: an int, or a callable ``f(num_inputs=C)`` giving the inner depth.
      No ``expand`` layer is built when it would not exceed ``C``.
    ``stride``, ``rate``, ``kernel_size``: of the depthwise convolution.
    ``residual``: add the input when stride is 1 and depths match; a callable
      ``f(input_tensor=, output_tensor=)`` replaces that rule.
    ``normalizer_fn``: used by all convolutions.
    ``split_projection``, ``split_expansion``: how many groups the project / expand 1x1
      convs are split into (``split_conv``, TF-Slim's; 1: not split).
    ``split_divisible_by``: every group's channels are a multiple of this.
    ``expansion_transform``: optional ``f(expansion_tensor=, input_tensor=)`` applied to
      the depthwise output before projecting (squeeze-excite goes here).
    ``inner_activation_fn``: activation of expand and depthwise (default: from the
      arg_scope on slim.conv2d / slim.separable_conv2d).
    ``depthwise_activation_fn``: overrides inner_activation_fn for the depthwise conv.
    ``project_activation_fn``: the projection's activation (linear by default).
    ``drop_path_rate``: stochastic depth on the residual branch (``drop_path``; only
      while training, only when the residual is added).
    ``use_explicit_padding``: pad explicitly (for the dilated kernel) and run the kxk
      conv VALID.
    ``endpoints``: optional dict that receives 'expansion_output', 'depthwise_output',
      'projection_output'.
    ``scope``: variable scope; default ``expanded_conv``, ``expanded_conv_1``, ...
    Returns the block's output tensor, named ``<scope>/output``.
    """
    with _block_scope(scope, inner_activation_fn, depthwise_activation_fn):
        input_tensor = tf.identity(input_tensor, name="input")
        net = input_tensor
        inner_size = _inner_size(expansion_size, input_tensor)
        if inner_size > _depth(input_tensor):
            net = split_conv(net, inner_size, split_expansion, "expand",
                             divisible_by=split_divisible_by, stride=1,
                             normalizer_fn=normalizer_fn)
            net = _named(net, "expansion_output", endpoints)
        net, padding = _explicit_padding(net, kernel_size, rate, padding,
                                         use_explicit_padding)
        net = slim.separable_conv2d(net, None, kernel_size,
                                    depth_multiplier=depthwise_channel_multiplier,
                                    stride=stride, rate=rate, normalizer_fn=normalizer_fn,
                                    padding=padding, scope="depthwise")
        net = _named(net, "depthwise_output", endpoints)
        net = _transform(net, expansion_transform, input_tensor)
        net = _project(net, num_outputs, normalizer_fn, project_activation_fn, endpoints,
                       split_projection, split_divisible_by)
        return _residual(input_tensor, net, residual, stride, drop_path_rate)


@slim.add_arg_scope
def fused_expanded_conv(input_tensor, num_outputs,
                        expansion_size=expand_input_by_factor(6),
                        stride=1, rate=1, kernel_size=(3, 3), residual=True,
                        normalizer_fn=slim.batch_norm,
                        expansion_transform=None,
                        inner_activation_fn=None,
                        project_activation_fn=tf.identity, drop_path_rate=0.0,
                        use_explicit_padding=False, padding="SAME",
                        endpoints=None, scope=None):
    """Fused inverted residual (EfficientNetV2's Fused-MBConv): expand kxk (strided)
    -> [transform] -> project 1x1; no depthwise conv.  Without expansion the kxk
    conv is the projection itself, with the inner activation (google/automl's
    FusedMBConvBlock).  Arguments as ``expanded_conv``'s (``stride``, ``rate``,
    ``kernel_size`` are the kxk conv's); same scopes and tensor names.
    """
    kxk = dict(kernel_size=kernel_size, stride=stride, rate=rate, padding=padding,
               use_explicit_padding=use_explicit_padding, normalizer_fn=normalizer_fn)
    with _block_scope(scope, inner_activation_fn):
        input_tensor = tf.identity(input_tensor, name="input")
        inner_size = _inner_size(expansion_size, input_tensor)
        if inner_size > _depth(input_tensor):
            net = _padded_conv(input_tensor, inner_size, scope="expand", **kxk)
            net = _named(net, "expansion_output", endpoints)
            net = _transform(net, expansion_transform, input_tensor)
            net = _project(net, num_outputs, normalizer_fn, project_activation_fn,
                           endpoints)
        else:
            net = _transform(input_tensor, expansion_transform, input_tensor)
            net = _padded_conv(net, num_outputs, scope="project", **kxk)
            if endpoints is not None:
                endpoints["projection_output"] = net
        return _residual(input_tensor, net, residual, stride, drop_path_rate)


# The rows stochastic depth counts and the table defaults configure together.
INVERTED_RESIDUALS = (expanded_conv, fused_expanded_conv)

__all__ = ["make_divisible", "expand_input_by_factor", "fixed_padding", "conv_bn_act",
           "split_divisible", "split_conv",
           "hard_sigmoid", "hard_swish", "swish", "drop_path", "squeeze_excite",
           "squeeze_excite_transform", "global_average", "pool_to_1x1", "expanded_conv",
           "fused_expanded_conv", "INVERTED_RESIDUALS"]
