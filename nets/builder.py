"""One interpreter for MobileNet-style architecture tables (TF-Slim's ``conv_defs``),
for every family here.

A network is data::

    MY_DEF = conv_defs(
        defaults=default_arg_scopes(tf.nn.relu6),
        spec=[op(blocks.conv_bn_act, stride=2, num_outputs=32),
              op(blocks.expanded_conv, stride=2, num_outputs=24),
              ...])

``defaults`` (then ``overrides``) become nested ``slim.arg_scope``s around the whole
stack; each spec row is one call ``row.op(net, **params)`` after the row's
``multiplier_func`` (``depth_multiplier`` unless the row says otherwise) has rescaled
``num_outputs`` and the ``output_stride`` rule has set its stride and atrous rate.
The builder names the output of row ``i`` ``layer_<i+1>`` and, like TF-Slim, adds
every tensor in that row's scope whose name ends in ``output`` as
``layer_<i+1>/<name>`` (``expansion_output``, ``depthwise_output``, ``output``).

``block_rows`` turns the block strings of MnasNet / EfficientNet's sources
(``r3_k5_s2_e3_o40_se0.25``) into such rows, so those tables read like their papers.

``mobilenet_base`` / ``mobilenet`` have TF-Slim's signatures (``multiplier``);
``classifier`` is what the families' model functions share (TF-Slim's
``mobilenet_v2.mobilenet`` without its table: ``depth_multiplier``, ``min_depth``,
``divisible_by``, ``finegrain_classification_mode``).  The head is TF-Slim's:
``Logits/`` global average pool, dropout, a 1x1 conv ``Conv2d_1c_1x1`` with biases and
neither batch norm nor activation, squeezed to [B, num_classes].
"""
import collections
import contextlib
import copy
import functools
import re

from nets import blocks
from utils.tf_compat import do_not_convert, slim, tf


# ------------------------------------------------------------------ rows and tables

@slim.add_arg_scope
def depth_multiplier(output_params, multiplier, divisible_by=8, min_depth=8,
                     **unused_kwargs):
    """TF-Slim's per-row depth rule, in place: ``num_outputs`` becomes
    ``make_divisible(num_outputs * multiplier, divisible_by, min_depth)``.  The
    builder calls it as ``(params, multiplier)``, so ``divisible_by`` / ``min_depth``
    come from an arg_scope on this function (what ``classifier`` sets)."""
    if "num_outputs" not in output_params:
        return
    output_params["num_outputs"] = blocks.make_divisible(
        output_params["num_outputs"] * multiplier, divisible_by, min_depth)


def fixed_depth(output_params, multiplier, **unused_kwargs):
    """A depth rule that ignores the multiplier (rows that keep their width)."""
    del output_params, multiplier


Op = collections.namedtuple("Op", ["op", "params", "multiplier_func"])

# TF-Slim spelled op()'s keyword both ways over its history.
_MULTIPLIER_KEYWORDS = ("multiplier_transform", "multiplier_transorm")


def op(opfunc, multiplier_func=None, **params):
    """One row of a spec: ``opfunc(net, **params)``; ``multiplier_func`` (or TF-Slim's
    ``multiplier_transorm`` / ``multiplier_transform``) rescales the params in place
    for a depth multiplier (default ``depth_multiplier``)."""
    for keyword in _MULTIPLIER_KEYWORDS:
        if keyword in params:
            multiplier_func = params.pop(keyword)
    return Op(opfunc, params, multiplier_func or depth_multiplier)


def conv_defs(spec, defaults=None, overrides=None):
    """An architecture table: the rows plus per-op default arguments.

    ``defaults``/``overrides`` map a tuple of (arg_scope-able) functions to a dict of
    keyword arguments; overrides are applied inside defaults, so they win."""
    return {"spec": list(spec), "defaults": dict(defaults or {}),
            "overrides": dict(overrides or {})}


def default_arg_scopes(activation_fn, expanded_conv=None, squeeze_excite=None):
    """The ``defaults`` every table here shares, with its differences as arguments.

    Batch norm with center and scale (they make variables, so they belong to the
    architecture, not to ``training_scope``); batch norm and ``activation_fn`` on
    slim's convolutions; SAME padding for ``conv_bn_act`` and both inverted
    residuals, which add their residual; ``expanded_conv``: more defaults for both
    inverted residuals (MobileNetV2's ``expansion_size``); squeeze-excite with the
    table's activation inside and a sigmoid gate, updated by ``squeeze_excite``.
    """
    residual_args = {"normalizer_fn": slim.batch_norm, "residual": True, "padding": "SAME"}
    residual_args.update(expanded_conv or {})
    se_args = {"inner_activation_fn": activation_fn, "gating_fn": tf.sigmoid}
    se_args.update(squeeze_excite or {})
    return collections.OrderedDict([
        ((slim.batch_norm,), {"center": True, "scale": True}),
        ((slim.conv2d, slim.fully_connected, slim.separable_conv2d),
         {"normalizer_fn": slim.batch_norm, "activation_fn": activation_fn}),
        ((blocks.conv_bn_act,), {"normalizer_fn": slim.batch_norm, "padding": "SAME"}),
        (blocks.INVERTED_RESIDUALS, residual_args),
        ((blocks.squeeze_excite,), se_args),
    ])


def with_row(defs, index, **new_params):
    """A copy of ``defs`` whose row ``index`` has some params replaced."""
    defs = copy.copy(defs)
    spec = list(defs["spec"])
    row = spec[index]
    params = dict(row.params)
    params.update(new_params)
    spec[index] = row._replace(params=params)
    defs["spec"] = spec
    return defs


def keep_last_depth(defs):
    """A copy of ``defs`` whose last row ignores the depth multiplier (TF-Slim's
    MobileNetV3 ``finegrain_classification_mode``)."""
    defs = copy.copy(defs)
    spec = list(defs["spec"])
    spec[-1] = spec[-1]._replace(multiplier_func=fixed_depth)
    defs["spec"] = spec
    return defs


def unscale_last_depth(defs, multiplier):
    """TF-Slim's MobileNetV2 ``finegrain_classification_mode``: with multiplier < 1
    the last row asks for ``num_outputs / multiplier``, which the multiplier brings
    back to the full depth (rounded like any row)."""
    if multiplier >= 1:
        return defs
    return with_row(defs, -1, num_outputs=defs["spec"][-1].params["num_outputs"]
                    / multiplier)


def with_overrides(defs, ops, **kwargs):
    """A copy of ``defs`` with ``kwargs`` forced on the functions ``ops``."""
    defs = copy.copy(defs)
    overrides = dict(defs.get("overrides") or {})
    key = tuple(ops)
    merged = dict(overrides.get(key, {}))
    merged.update(kwargs)
    overrides[key] = merged
    defs["overrides"] = overrides
    return defs


_BLOCK_KEYS = {"r": "repeats", "k": "kernel", "s": "stride", "e": "expand",
               "i": "input", "o": "outputs", "se": "se_ratio", "c": "conv_type",
               "noskip": "noskip"}


def _block_fields(block_string):
    fields = {}
    for part in block_string.split("_"):
        key, value = re.match(r"([a-z]+)(.*)$", part).groups()
        if key not in _BLOCK_KEYS:
            raise ValueError("unknown field %r in block string %r" % (part, block_string))
        fields[_BLOCK_KEYS[key]] = value
    return fields


def block_rows(block_strings):
    """Inverted-residual rows for the block strings of MnasNet / EfficientNet's code.

    Each string ``r<repeats>_k<kernel>_s<stride>_e<expansion>_i<in>_o<out>
    [_se<ratio>][_c1][_noskip]`` gives ``repeats`` rows, the first with the stride
    (``s22`` and ``s2`` both mean 2), the rest stride 1; expansion ``in * e`` (no
    ``expand`` conv when e = 1); squeeze-excite to ``in * ratio`` channels; ``c1``
    ``fused_expanded_conv`` rows, else ``expanded_conv``; ``noskip`` no residual.
    ``i`` is informative only: a row's input is the previous row's output.
    Activations come from the table's defaults.
    """
    rows = []
    for block_string in block_strings:
        fields = _block_fields(block_string)
        kernel = int(fields["kernel"])
        params = dict(
            num_outputs=int(fields["outputs"]), kernel_size=(kernel, kernel),
            expansion_size=blocks.expand_input_by_factor(float(fields["expand"]),
                                                         divisible_by=1),
            residual="noskip" not in fields)
        if "se_ratio" in fields:
            params["expansion_transform"] = blocks.squeeze_excite_transform(
                input_ratio=float(fields["se_ratio"]))
        fused = fields.get("conv_type", "0") == "1"
        block = blocks.fused_expanded_conv if fused else blocks.expanded_conv
        stride = int(fields["stride"][0])
        rows.extend(op(block, stride=stride if i == 0 else 1, **params)
                    for i in range(int(fields["repeats"])))
    return rows


# ------------------------------------------------------------------ the stack

@contextlib.contextmanager
def _arg_scopes(table):
    """Nested slim.arg_scope for every (functions, kwargs) entry, in order."""
    items = list(table.items()) if hasattr(table, "items") else list(table or [])
    if not items:
        yield
        return
    funcs, kwargs = items[0]
    if not isinstance(funcs, (list, tuple)):
        funcs = (funcs,)
    with slim.arg_scope(list(funcs), **kwargs):
        with _arg_scopes(items[1:]):
            yield


def safe_arg_scope(funcs, **kwargs):
    """TF-Slim's: ``slim.arg_scope(funcs, **kwargs)`` without the None arguments (no
    scope at all when none is left): None means "leave it to outer scopes"."""
    given = dict((k, v) for k, v in kwargs.items() if v is not None)
    return slim.arg_scope(funcs, **given) if given else contextlib.nullcontext()


def _dirname(name):
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _drop_path_rates(spec, drop_path_rate):
    """{row index: rate} over the inverted-residual rows (fused or not): block k of n
    gets ``drop_path_rate * k / n`` (EfficientNet's linear stochastic-depth rule)."""
    if not drop_path_rate:
        return {}
    rows = [i for i, row in enumerate(spec) if row.op in blocks.INVERTED_RESIDUALS]
    return dict((i, drop_path_rate * k / float(len(rows))) for k, i in enumerate(rows))


def _kernel(params):
    size = params.get("kernel_size")
    if isinstance(size, int):
        return (size, size)
    return tuple(size) if size is not None else None


class _OutputStride(object):
    """TF-Slim's ``output_stride`` rule, row by row: once the running stride has
    reached the target, a row runs at stride 1 with the current atrous rate and the
    rate multiplies by the row's stride for the rows after it."""

    def __init__(self, output_stride):
        self.target = output_stride
        self.stride = 1
        self.rate = 1

    def apply(self, params):
        if self.target is None:
            return
        stride = params.get("stride", 1)
        if self.stride == self.target:
            layer_stride, layer_rate = 1, self.rate
            self.rate *= stride
        else:
            layer_stride, layer_rate = stride, 1
            self.stride *= stride
        if "stride" in params:
            params["stride"] = layer_stride
        if layer_rate > 1 and _kernel(params) != (1, 1):  # a 1x1 conv needs no rate
            params["rate"] = layer_rate


_Options = collections.namedtuple(
    "_Options", "multiplier final_endpoint output_stride use_explicit_padding "
                "drop_path_rates")


def _row_params(row, index, options, strides):
    """The keyword arguments of one row's call."""
    params = dict(row.params)
    scaled = row.multiplier_func(params, options.multiplier)
    if scaled is not None:  # a rule that returns new params rather than editing
        params = dict(scaled)
    strides.apply(params)
    if options.use_explicit_padding:
        params["use_explicit_padding"] = True
    if index in options.drop_path_rates:
        params["drop_path_rate"] = options.drop_path_rates[index]
    return params


@do_not_convert  # no data-dependent control flow; autograph would only slow building
def _build_stack(inputs, spec, options):
    """Runs the spec rows in the current variable/name scope and arg_scopes."""
    graph = inputs.graph
    first_op = len(graph.get_operations())
    end_points = {}
    layer_of_scope = {}
    strides = _OutputStride(options.output_stride)
    net = inputs
    for i, row in enumerate(spec):
        params = _row_params(row, i, options, strides)
        end_point = "layer_%d" % (i + 1)
        try:
            net = row.op(net, **params)
        except Exception:
            tf.logging.error("building %s failed: %s(%r)", end_point,
                             getattr(row.op, "__name__", row.op), params)
            raise
        end_points[end_point] = net
        layer_of_scope[_dirname(net.op.name)] = end_point
        if end_point == options.final_endpoint:
            break
    # Like TF-Slim: every tensor named '*output' directly in a row's scope.
    for operation in graph.get_operations()[first_op:]:
        scope = _dirname(operation.name)
        if scope in layer_of_scope and operation.name.endswith("output"):
            key = layer_of_scope[scope] + "/" + operation.name.rsplit("/", 1)[-1]
            end_points[key] = operation.outputs[0]
    return net, end_points


def _check_arguments(multiplier, output_stride, drop_path_rate):
    if multiplier <= 0:
        raise ValueError("multiplier must be > 0, got %r" % (multiplier,))
    if output_stride is not None and (output_stride <= 0 or
                                      (output_stride > 1 and output_stride % 2)):
        raise ValueError("output_stride must be None, 1 or an even number, got %r"
                         % (output_stride,))
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError("drop_path_rate must be in [0, 1), got %r" % (drop_path_rate,))


@slim.add_arg_scope
def mobilenet_base(inputs, conv_defs, multiplier=1.0, final_endpoint=None,
                   output_stride=None, use_explicit_padding=False, scope=None,
                   is_training=False, drop_path_rate=0.0):
    """The convolutional stack described by ``conv_defs``, no pooling, no logits
    (TF-Slim's signature, plus ``drop_path_rate``).

    ``inputs``: [B, H, W, C] tensor.
    ``conv_defs``: a ``conv_defs(...)`` table.
    ``multiplier``: depth multiplier, applied by each row's ``multiplier_func``
      (``depth_multiplier``: set its ``divisible_by`` / ``min_depth`` with
      ``slim.arg_scope``).
    ``final_endpoint``: stop after this ``layer_<k>``.
    ``output_stride``: None, 1 or an even number: the largest ratio of input to output
      size; rows past it run atrous (TF-Slim's rule, ``_OutputStride``).
    ``use_explicit_padding``: pad explicitly for each (dilated) kxk kernel and convolve
      VALID (rows' ops must accept ``use_explicit_padding``, as the blocks do).
    ``scope``: variable scope (default ``Mobilenet``).
    ``is_training``: batch norm and stochastic depth mode (batch statistics +
      moving-average updates; dropped residual branches); None leaves them to outer
      arg_scopes.
    ``drop_path_rate``: stochastic depth: inverted-residual block k of n (from 0) drops
      its residual branch with probability ``drop_path_rate * k / n``; only while
      training.
    Returns (net, end_points).
    """
    _check_arguments(multiplier, output_stride, drop_path_rate)
    options = _Options(multiplier, final_endpoint, output_stride, use_explicit_padding,
                       _drop_path_rates(conv_defs["spec"], drop_path_rate))
    with tf.variable_scope(scope, default_name="Mobilenet") as var_scope, \
            tf.name_scope(var_scope.original_name_scope), \
            safe_arg_scope([slim.batch_norm, blocks.drop_path], is_training=is_training), \
            _arg_scopes(conv_defs.get("defaults")), \
            _arg_scopes(conv_defs.get("overrides")):
        return _build_stack(inputs, conv_defs["spec"], options)


@slim.add_arg_scope
def mobilenet(inputs, num_classes=1001, prediction_fn=slim.softmax, reuse=None,
              scope="Mobilenet", base_only=False, dropout_keep_prob=None,
              **mobilenet_args):
    """A classifier: ``mobilenet_base`` + TF-Slim's head (TF-Slim's signature, plus
    ``dropout_keep_prob``).

    ``num_classes``: logits width; 0/None returns the pooled features [B, 1, 1, C]
      (end_point ``global_pool``) instead of logits, as TF-Slim does.
    ``base_only``: return the stack's output without pooling.
    ``dropout_keep_prob``: None takes slim.dropout's arg_scope (``training_scope``).
    ``**mobilenet_args``: to ``mobilenet_base`` (``conv_defs``, ``multiplier``,
      ``output_stride``, ``is_training``, ``drop_path_rate``, ...).
    Returns (logits [B, num_classes], end_points).
    """
    if mobilenet_args.get("conv_defs") is None:
        raise ValueError("mobilenet() needs conv_defs")
    rank = inputs.get_shape().ndims
    if rank != 4:
        raise ValueError("expected [batch, height, width, channels] input, got rank %s"
                         % rank)
    with tf.variable_scope(scope, "Mobilenet", reuse=reuse) as var_scope:
        inputs = tf.identity(inputs, name="input")
        net, end_points = mobilenet_base(inputs, scope=var_scope, **mobilenet_args)
        if base_only:
            return net, end_points
        net = tf.identity(net, name="embedding")
        return _head(net, end_points, num_classes,
                     mobilenet_args.get("is_training", False), dropout_keep_prob,
                     prediction_fn)


@do_not_convert
def _head(net, end_points, num_classes, is_training, dropout_keep_prob, prediction_fn):
    """TF-Slim's classification head, in the model's scope."""
    with tf.variable_scope("Logits"):
        net = blocks.global_average(net)
        end_points["global_pool"] = net
        if not num_classes:
            return net, end_points
        dropout_args = {}
        if dropout_keep_prob is not None:
            dropout_args["keep_prob"] = dropout_keep_prob
        net = slim.dropout(net, scope="Dropout", is_training=is_training, **dropout_args)
        logits = slim.conv2d(net, num_classes, [1, 1], activation_fn=None,
                             normalizer_fn=None, biases_initializer=tf.zeros_initializer(),
                             scope="Conv2d_1c_1x1")
        logits = tf.squeeze(logits, [1, 2])
        logits = tf.identity(logits, name="output")
    end_points["Logits"] = logits
    if prediction_fn:
        end_points["Predictions"] = prediction_fn(logits, scope="Predictions")
    return logits, end_points


# classifier's argument of that name hides the rule.
_DEPTH_RULE = depth_multiplier


def classifier(inputs, conv_defs, num_classes=1001, depth_multiplier=1.0,
               scope="Mobilenet", finegrain_classification_mode=False, min_depth=None,
               divisible_by=None, **kwargs):
    """The families' model function: TF-Slim's ``mobilenet_v2.mobilenet`` for any
    table (``mobilenet_v2`` adds ``activation_fn``, ``mobilenet_v3`` its own
    finegrain rule).

    ``depth_multiplier``: the depth multiplier (the generic ``multiplier`` is refused,
      as TF-Slim's families do).
    ``finegrain_classification_mode``: TF-Slim's MobileNetV2 rule
      (``unscale_last_depth``): the last layer keeps its full depth when
      depth_multiplier < 1.
    ``min_depth``, ``divisible_by``: when given, an arg_scope on ``depth_multiplier``
      (when not, whatever arg_scope is outside applies: TF-Slim's rule).
    ``**kwargs``: to ``mobilenet`` (is_training, dropout_keep_prob, reuse, base_only,
      final_endpoint, output_stride, prediction_fn, use_explicit_padding,
      drop_path_rate).
    """
    if "multiplier" in kwargs:
        raise ValueError("this model takes depth_multiplier, not the generic builder's "
                         "multiplier")
    if finegrain_classification_mode:
        conv_defs = unscale_last_depth(conv_defs, depth_multiplier)
    depth_args = dict((k, v) for k, v in (("min_depth", min_depth),
                                          ("divisible_by", divisible_by))
                      if v is not None)
    with slim.arg_scope((_DEPTH_RULE,), **depth_args):
        return mobilenet(inputs, num_classes=num_classes, conv_defs=conv_defs,
                         scope=scope, multiplier=depth_multiplier, **kwargs)


def base_of(model_fn):
    """TF-Slim's family ``mobilenet_base``: ``model_fn`` with ``base_only=True``."""
    def family_base(input_tensor, depth_multiplier=1.0, **kwargs):
        return model_fn(input_tensor, depth_multiplier=depth_multiplier, base_only=True,
                        **kwargs)
    family_base.__name__ = "mobilenet_base"
    family_base.__doc__ = ("The stack of %s.%s without pooling and logits."
                           % (model_fn.__module__, model_fn.__name__))
    return slim.add_arg_scope(family_base)


def wrapped_partial(func, *args, new_defaults=None, **kwargs):
    """TF-Slim's ``wrapped_partial``: ``functools.partial`` that keeps ``func``'s name
    and docstring; ``new_defaults`` (TF-Slim's V3 spelling) are more keyword
    defaults, under ``kwargs``."""
    defaults = dict(new_defaults or {})
    defaults.update(kwargs)
    partial = functools.partial(func, *args, **defaults)
    functools.update_wrapper(partial, func)
    return partial


# One registered model, as timm's ``default_cfgs`` sit beside its models: the
# arguments of its family's model function and every fact the pipeline asks about.
Variant = collections.namedtuple("Variant", [
    "kwargs",           # keyword arguments of the family's model function
    "image_size",       # training resolution of the published weights
    "eval_image_size",  # evaluation resolution
    "preprocessing",    # dataloader/preprocessing.py style
    "size_multiple",    # input sides must be multiples of this (total stride)
    "drop_path_rate",   # stochastic depth of the published training recipe
    "top1",             # published top-1 in percent; None where none is published
    "top1_dataset",     # what ``top1`` was measured on
    "top1_source",      # where ``top1`` is published
])


def variant(image_size=224, eval_image_size=None, preprocessing="inception",
            size_multiple=32, drop_path_rate=0.0, top1=None, top1_dataset="ImageNet",
            top1_source=None, **model_kwargs):
    """A ``Variant`` row: ``model_kwargs`` go to the model function, the rest are its
    facts (eval size defaults to the training size).  A top-1 needs its source; a row
    without a top-1 names no dataset or source."""
    if top1 is not None and not (0.0 < top1 <= 100.0 and top1_source):
        raise ValueError("top1 must be a percentage with its top1_source, got %r from %r"
                         % (top1, top1_source))
    if top1 is None:
        top1_dataset = top1_source = None
    return Variant(model_kwargs, image_size, eval_image_size or image_size,
                   preprocessing, size_multiple, drop_path_rate, top1, top1_dataset,
                   top1_source)


def variants(model_fn, table):
    """{name: model function} for a family's ``VARIANTS`` table (name -> ``Variant``):
    ``model_fn`` with the row's arguments and training size (``default_image_size``,
    as TF-Slim's functions carry it); the module-level partials and the registry's."""
    models = collections.OrderedDict()
    for name, row in table.items():
        models[name] = wrapped_partial(model_fn, **row.kwargs)
        models[name].default_image_size = row.image_size
    return models


# ------------------------------------------------------------------ training

# Batch-norm statistic updates go to UPDATE_OPS, as by default; given as a list, this
# makes slim.batch_norm use its own fused implementation (one FusedBatchNormV3 op and
# two assign_moving_average updates, the same variables and names) rather than wrapping
# a Keras layer per call, which cost MobileNetV2 ~1-2 s of graph building here.
BN_UPDATES = [tf.GraphKeys.UPDATE_OPS]


# --weights_init: "slim" is TF-Slim's training_scope (truncated normal, stddev 0.09);
# "pytorch" is torch.nn's default for Conv2d / Linear (kaiming_uniform_ with a=sqrt(5):
# uniform within +-1/sqrt(fan_in)), what PyTorch recipes such as kuangliu/pytorch-cifar
# train from. At MobileNetV2-CIFAR's wide 1x1 layers it is about five times smaller.
WEIGHTS_INITS = ("slim", "pytorch")


def _pytorch_depthwise_init(shape, dtype=tf.float32, partition_info=None):
    """PyTorch's default for a depthwise kernel [H, W, C, M]: a grouped Conv2d's fan_in
    is H * W (one input channel per group); variance_scaling would take H * W * C."""
    del partition_info  # TF 1.x's initializer signature
    limit = 1.0 / (int(shape[0]) * int(shape[1])) ** 0.5
    return tf.random.uniform(shape, -limit, limit, dtype=dtype)


def _weights_initializers(weights_init, stddev):
    """(conv / fully-connected initializer, depthwise initializer) of ``weights_init``."""
    if weights_init == "pytorch":
        # uniform with limit sqrt(3 * scale / fan_in) = 1 / sqrt(fan_in) at scale 1/3
        dense = tf.variance_scaling_initializer(1.0 / 3, "fan_in", "uniform")
        return dense, _pytorch_depthwise_init
    if weights_init != "slim":
        raise ValueError("weights_init %r is not one of %s" % (weights_init, WEIGHTS_INITS))
    if stddev < 0:
        initializer = slim.initializers.xavier_initializer()
    else:
        initializer = tf.truncated_normal_initializer(stddev=stddev)
    return initializer, initializer


def training_scope(is_training=True, weight_decay=0.00004, stddev=0.09,
                   dropout_keep_prob=0.8, bn_decay=0.997, bn_epsilon=0.001,
                   weights_init="slim"):
    """arg_scope for training (or, with is_training=False, evaluating) these nets.

    ``weights_init`` "slim": truncated-normal(stddev) weights (Xavier if stddev < 0);
    "pytorch": PyTorch's default (see WEIGHTS_INITS). L2 ``weight_decay`` on
    slim.conv2d weights but none on depthwise (separable_conv2d) weights, batch norm
    with ``bn_decay``/``bn_epsilon``, dropout ``dropout_keep_prob``.  Architecture
    choices (center/scale, activations) live in the conv_defs, not here.
    """
    initializer, depthwise_initializer = _weights_initializers(weights_init, stddev)
    with slim.arg_scope([slim.conv2d, slim.fully_connected, slim.separable_conv2d],
                        weights_initializer=initializer,
                        normalizer_fn=slim.batch_norm), \
            slim.arg_scope([mobilenet_base, mobilenet], is_training=is_training), \
            slim.arg_scope([slim.batch_norm], is_training=is_training, decay=bn_decay,
                           epsilon=bn_epsilon, updates_collections=BN_UPDATES), \
            slim.arg_scope([slim.dropout], is_training=is_training,
                           keep_prob=dropout_keep_prob), \
            slim.arg_scope([slim.conv2d],
                           weights_regularizer=slim.l2_regularizer(weight_decay)), \
            slim.arg_scope([slim.separable_conv2d], weights_regularizer=None,
                           weights_initializer=depthwise_initializer) as scope:
        return scope


__all__ = ["Op", "op", "conv_defs", "default_arg_scopes", "with_row", "with_overrides",
           "keep_last_depth", "unscale_last_depth", "block_rows", "depth_multiplier",
           "fixed_depth", "safe_arg_scope", "mobilenet_base", "mobilenet", "classifier",
           "base_of", "wrapped_partial", "Variant", "variant", "variants",
           "training_scope", "BN_UPDATES", "WEIGHTS_INITS"]
