"""One interpreter for MobileNet-style architecture tables (TF-Slim's ``conv_defs``).

A network is data::

    MY_DEF = conv_defs(
        defaults={(slim.conv2d, slim.separable_conv2d): {"activation_fn": tf.nn.relu6}},
        spec=[op(conv_blocks.conv_bn_act, stride=2, num_outputs=32),
              op(conv_blocks.expanded_conv, stride=2, num_outputs=24),
              ...])

``defaults`` (then ``overrides``) become nested ``slim.arg_scope``s around the whole
stack; each spec row is one call ``row.op(net, **row.params)`` after the depth
multiplier has rewritten ``num_outputs``.  The builder names the output of row ``i``
``layer_<i+1>`` and, like TF-Slim, adds every tensor in that row's scope whose name
ends in ``output`` as ``layer_<i+1>/<name>`` (``expansion_output``,
``depthwise_output``, ``output``).

``block_rows`` turns the block strings of MnasNet / EfficientNet's sources
(``r3_k5_s2_e3_o40_se0.25``) into such rows, so those tables read like their papers.

``mobilenet`` adds TF-Slim's classification head: ``Logits/`` global average pool,
dropout, a 1x1 conv ``Conv2d_1c_1x1`` with biases and neither batch norm nor
activation, squeezed to [B, num_classes].
"""
import collections
import contextlib
import copy
import re

from utils.tf_compat import do_not_convert, tf, slim
from nets.mobilenet import conv_blocks


def depth_multiplier(params, multiplier, divisible_by=8, min_depth=8):
    """Default per-row depth rule: ``num_outputs`` becomes
    ``make_divisible(num_outputs * multiplier, divisible_by, min_depth)``.
    Returns a new params dict (rows without ``num_outputs`` are left alone)."""
    params = dict(params)
    if "num_outputs" in params:
        params["num_outputs"] = conv_blocks.make_divisible(
            params["num_outputs"] * multiplier, divisible_by, min_depth)
    return params


def fixed_depth(params, multiplier, divisible_by=8, min_depth=8):
    """A depth rule that ignores the multiplier (for rows that must keep their width)."""
    del multiplier, divisible_by, min_depth
    return dict(params)


Op = collections.namedtuple("Op", ["op", "params", "multiplier_func"])


def op(opfunc, multiplier_func=None, **params):
    """One row of a spec: ``opfunc(net, **params)``; ``multiplier_func`` rewrites the
    params for a depth multiplier (default ``depth_multiplier``)."""
    return Op(opfunc, params, multiplier_func or depth_multiplier)


def conv_defs(spec, defaults=None, overrides=None):
    """An architecture table: the rows plus per-op default arguments.

    ``defaults``/``overrides`` map a tuple of (arg_scope-able) functions to a dict of
    keyword arguments; overrides are applied inside defaults, so they win."""
    return {"spec": list(spec), "defaults": dict(defaults or {}),
            "overrides": dict(overrides or {})}


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
    """A copy of ``defs`` whose last row ignores the depth multiplier: TF-Slim's
    ``finegrain_classification_mode`` (the embedding stays wide in small variants)."""
    defs = copy.copy(defs)
    spec = list(defs["spec"])
    spec[-1] = spec[-1]._replace(multiplier_func=fixed_depth)
    defs["spec"] = spec
    return defs


_BLOCK_KEYS = {"r": "repeats", "k": "kernel", "s": "stride", "e": "expand",
               "i": "input", "o": "outputs", "se": "se_ratio", "c": "conv_type",
               "noskip": "noskip"}


def block_rows(block_strings):
    """``expanded_conv`` rows for the block strings of MnasNet / EfficientNet's code.

    Each string ``r<repeats>_k<kernel>_s<stride>_e<expansion>_i<in>_o<out>
    [_se<ratio>][_c1][_noskip]`` gives ``repeats`` rows, the first with the stride
    (``s22`` and ``s2`` both mean 2), the rest stride 1; expansion ``in * e`` (no
    ``expand`` conv when e = 1); squeeze-excite to ``in * ratio`` channels; ``c1`` the
    fused block; ``noskip`` no residual.  ``i`` is informative only: a row's input is
    the previous row's output.  Activations come from the table's defaults.
    """
    rows = []
    for block_string in block_strings:
        fields = {}
        for part in block_string.split("_"):
            key, value = re.match(r"([a-z]+)(.*)$", part).groups()
            if key not in _BLOCK_KEYS:
                raise ValueError("unknown field %r in block string %r"
                                 % (part, block_string))
            fields[_BLOCK_KEYS[key]] = value
        kernel = int(fields["kernel"])
        params = dict(
            num_outputs=int(fields["outputs"]), kernel_size=(kernel, kernel),
            expansion_size=conv_blocks.expand_input_by_factor(float(fields["expand"]),
                                                              divisible_by=1),
            fused=fields.get("conv_type", "0") == "1", residual="noskip" not in fields)
        if "se_ratio" in fields:
            params["expansion_transform"] = conv_blocks.squeeze_excite_transform(
                input_ratio=float(fields["se_ratio"]))
        stride = int(fields["stride"][0])
        rows.extend(op(conv_blocks.expanded_conv, stride=stride if i == 0 else 1, **params)
                    for i in range(int(fields["repeats"])))
    return rows


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


def _dirname(name):
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _drop_path_rates(spec, drop_path_rate):
    """{row index: rate} over the inverted-residual rows: block k of n gets
    ``drop_path_rate * k / n`` (EfficientNet's linear stochastic-depth rule)."""
    if not drop_path_rate:
        return {}
    blocks = [i for i, row in enumerate(spec) if row.op is conv_blocks.expanded_conv]
    return dict((i, drop_path_rate * k / float(len(blocks))) for k, i in enumerate(blocks))


@do_not_convert  # no data-dependent control flow; autograph would only slow building
def _build_stack(inputs, defs, depth_multiplier, min_depth, divisible_by,
                 final_endpoint, use_explicit_padding, is_training, drop_path_rate=0.0):
    """Runs the spec rows in the current variable/name scope."""
    graph = inputs.graph
    first_op = len(graph.get_operations())
    end_points = {}
    layer_of_scope = {}
    net = inputs
    drop_rates = _drop_path_rates(defs["spec"], drop_path_rate)
    with slim.arg_scope([slim.batch_norm, conv_blocks.drop_path], is_training=is_training), \
            _arg_scopes(defs.get("defaults")), \
            _arg_scopes(defs.get("overrides")):
        for i, row in enumerate(defs["spec"]):
            params = row.multiplier_func(row.params, depth_multiplier,
                                         divisible_by=divisible_by, min_depth=min_depth)
            if use_explicit_padding:
                params["use_explicit_padding"] = True
            if i in drop_rates:
                params["drop_path_rate"] = drop_rates[i]
            end_point = "layer_%d" % (i + 1)
            try:
                net = row.op(net, **params)
            except Exception:
                tf.logging.error("building %s failed: %s(%r)", end_point,
                                 getattr(row.op, "__name__", row.op), params)
                raise
            end_points[end_point] = net
            layer_of_scope[_dirname(net.op.name)] = end_point
            if final_endpoint is not None and end_point == final_endpoint:
                break
    # Like TF-Slim: every tensor named '*output' directly in a row's scope.
    for operation in graph.get_operations()[first_op:]:
        scope = _dirname(operation.name)
        if scope in layer_of_scope and operation.name.endswith("output"):
            key = layer_of_scope[scope] + "/" + operation.name.rsplit("/", 1)[-1]
            end_points[key] = operation.outputs[0]
    return net, end_points


def _check_multiplier(depth_multiplier, drop_path_rate=0.0):
    if depth_multiplier <= 0:
        raise ValueError("depth_multiplier must be > 0, got %r" % (depth_multiplier,))
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError("drop_path_rate must be in [0, 1), got %r" % (drop_path_rate,))


@slim.add_arg_scope
def mobilenet_base(inputs, conv_defs, depth_multiplier=1.0, min_depth=8, divisible_by=8,
                   final_endpoint=None, use_explicit_padding=False, scope=None,
                   is_training=False, drop_path_rate=0.0):
    """The convolutional stack described by ``conv_defs``, no pooling, no logits.

    Args:
      inputs: [B, H, W, C] tensor.
      conv_defs: a ``conv_defs(...)`` table.
      depth_multiplier: scales every row's ``num_outputs`` (rounded to
        ``divisible_by``, at least ``min_depth``).
      final_endpoint: stop after this ``layer_<k>``.
      use_explicit_padding: pad explicitly and convolve VALID (rows' ops must accept
        ``use_explicit_padding``, as ``conv_bn_act`` and ``expanded_conv`` do).
      scope: variable scope (default ``Mobilenet``).
      is_training: batch norm and stochastic depth mode (batch statistics +
        moving-average updates; dropped residual branches).
      drop_path_rate: stochastic depth: inverted-residual block k of n (from 0) drops
        its residual branch with probability ``drop_path_rate * k / n``; only while
        training.
    Returns:
      (net, end_points).
    """
    _check_multiplier(depth_multiplier, drop_path_rate)
    with tf.variable_scope(scope, default_name="Mobilenet") as var_scope, \
            tf.name_scope(var_scope.original_name_scope):
        return _build_stack(inputs, conv_defs, depth_multiplier, min_depth, divisible_by,
                            final_endpoint, use_explicit_padding, is_training,
                            drop_path_rate)


@slim.add_arg_scope
def mobilenet(inputs, num_classes=1001, conv_defs=None, scope="Mobilenet",
              is_training=False, dropout_keep_prob=None, depth_multiplier=1.0,
              min_depth=8, divisible_by=8, prediction_fn=slim.softmax, reuse=None,
              base_only=False, final_endpoint=None, use_explicit_padding=False,
              finegrain_classification_mode=False, drop_path_rate=0.0):
    """A classifier: ``mobilenet_base`` + TF-Slim's head.

    Args:
      num_classes: logits width; 0/None returns the pooled features [B, 1, 1, C]
        (end_point ``global_pool``) instead of logits, as TF-Slim does.
      dropout_keep_prob: None takes slim.dropout's arg_scope (``training_scope``).
      base_only: return the stack's output without pooling.
      finegrain_classification_mode: with depth_multiplier < 1, keep the last row
        at its full depth (``keep_last_depth``).
      Others as in ``mobilenet_base``.
    Returns:
      (logits [B, num_classes], end_points).
    """
    if conv_defs is None:
        raise ValueError("mobilenet() needs conv_defs")
    _check_multiplier(depth_multiplier, drop_path_rate)
    if finegrain_classification_mode and depth_multiplier < 1:
        conv_defs = keep_last_depth(conv_defs)
    rank = inputs.get_shape().ndims
    if rank != 4:
        raise ValueError("expected [batch, height, width, channels] input, got rank %s"
                         % rank)
    with tf.variable_scope(scope, "Mobilenet", reuse=reuse):
        inputs = tf.identity(inputs, name="input")
        net, end_points = _build_stack(inputs, conv_defs, depth_multiplier, min_depth,
                                       divisible_by, final_endpoint, use_explicit_padding,
                                       is_training, drop_path_rate)
        if base_only:
            return net, end_points
        net = tf.identity(net, name="embedding")
        return _head(net, end_points, num_classes, is_training, dropout_keep_prob,
                     prediction_fn)


@do_not_convert
def _head(net, end_points, num_classes, is_training, dropout_keep_prob, prediction_fn):
    """TF-Slim's classification head, in the model's scope."""
    with tf.variable_scope("Logits"):
        net = conv_blocks.global_average(net)
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


# Batch-norm statistic updates go to UPDATE_OPS, as by default; given as a list, this
# makes slim.batch_norm use its own fused implementation (one FusedBatchNormV3 op and
# two assign_moving_average updates, the same variables and names) rather than wrapping
# a Keras layer per call, which cost MobileNetV2 ~1-2 s of graph building here.
BN_UPDATES = [tf.GraphKeys.UPDATE_OPS]


def training_scope(is_training=True, weight_decay=0.00004, stddev=0.09,
                   dropout_keep_prob=0.8, bn_decay=0.997, bn_epsilon=0.001):
    """arg_scope for training (or, with is_training=False, evaluating) these nets.

    Truncated-normal(stddev) weights (Xavier if stddev < 0), L2 ``weight_decay`` on
    slim.conv2d weights but none on depthwise (separable_conv2d) weights, batch norm
    with ``bn_decay``/``bn_epsilon``, dropout ``dropout_keep_prob``.  Architecture
    choices (center/scale, activations) live in the conv_defs, not here.
    """
    if stddev < 0:
        initializer = slim.initializers.xavier_initializer()
    else:
        initializer = tf.truncated_normal_initializer(stddev=stddev)
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
            slim.arg_scope([slim.separable_conv2d], weights_regularizer=None) as scope:
        return scope


__all__ = ["Op", "op", "conv_defs", "with_row", "with_overrides", "keep_last_depth",
           "block_rows", "depth_multiplier", "fixed_depth", "mobilenet_base", "mobilenet",
           "training_scope"]
