"""Model registry: name -> network_fn(images) -> (logits, end_points) and its facts.

Only nets/ knows layer and scope names; the rest of the pipeline asks here
(``get_model_info(name).default_restore_exclude`` and so on).
"""
import collections
import functools

from nets import builder, efficientnet_v2, mnasnet
from nets.mobilenet import mobilenet_v2, mobilenet_v3
from quantization import rewrite
from utils.errors import UserError
from utils.tf_compat import do_not_convert, slim, tf

ModelInfo = collections.namedtuple("ModelInfo", [
    "name",                     # registry name
    "scope",                    # top variable scope, as in the published checkpoints
    "default_image_size",       # training resolution of the published weights
    "head_scopes",              # scopes of the class-dependent head
    "default_restore_exclude",  # what to leave out when fine-tuning to new classes
    "preprocessing_name",       # dataloader/preprocessing.py style
    "min_image_size",           # smallest accepted input side
    "size_multiple",            # input sides must be multiples of this (total stride)
    "default_eval_image_size",  # evaluation resolution (EfficientNetV2 evaluates larger)
    "default_drop_path_rate",   # stochastic depth of the published training recipe
    "published_top1",           # top-1 in percent of the published weights, or None
    "published_top1_dataset",   # what that top-1 was measured on ("ImageNet", ...)
    "published_top1_source",    # where it is published
])

_Entry = collections.namedtuple("_Entry", ["info", "builder"])

# Arguments of get_network_fn(**kwargs) that configure the training arg_scope; the
# rest go to the model function.
_SCOPE_KWARGS = ("stddev", "bn_epsilon", "weights_init")

# The families, each a module with SCOPE, VARIANTS (name -> builder.Variant) and
# MODELS (name -> model function made from that row).
FAMILIES = (mobilenet_v2, mobilenet_v3, mnasnet, efficientnet_v2)


def _make_entry(name, model_fn, scope, row):
    """One model: ``model_fn(images, scope=scope, **call kwargs)`` plus the facts of its
    ``Variant`` row.  Every family here has its head in ``<scope>/Logits``."""
    info = ModelInfo(
        name=name, scope=scope, default_image_size=row.image_size,
        head_scopes=(scope + "/Logits",), default_restore_exclude=scope + "/Logits/",
        preprocessing_name=row.preprocessing, min_image_size=32,
        size_multiple=row.size_multiple, default_eval_image_size=row.eval_image_size,
        default_drop_path_rate=row.drop_path_rate, published_top1=row.top1,
        published_top1_dataset=row.top1_dataset, published_top1_source=row.top1_source)
    return _Entry(info, functools.partial(model_fn, scope=scope))


def build_registry(families):
    """{name: entry} over every row of every family's VARIANTS: a new row is a new
    model.  ValueError if two rows share a name."""
    registry = {}
    for family in families:
        for name, row in family.VARIANTS.items():
            if name in registry:
                raise ValueError("model %r is registered twice" % name)
            registry[name] = _make_entry(name, family.MODELS[name], family.SCOPE, row)
    return registry


_REGISTRY = build_registry(FAMILIES)


def model_names():
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def _entry(name):
    if name not in _REGISTRY:
        raise UserError("unknown model name %r; known models: %s"
                        % (name, ", ".join(model_names())))
    return _REGISTRY[name]


def get_model_info(name):
    """The ModelInfo of ``name``; UserError listing the known names if unknown."""
    return _entry(name).info


def check_image_size(name, size):
    """UserError unless ``size`` suits model ``name``: at least its minimum and a
    multiple of its ``size_multiple`` (32 for the MobileNets and MnasNet)."""
    info = get_model_info(name)
    valid = (isinstance(size, int) and not isinstance(size, bool)
             and size >= info.min_image_size and size % info.size_multiple == 0)
    if not valid:
        rule = ("a multiple of %d that is at least %d" % (info.size_multiple,
                                                          info.min_image_size)
                if info.size_multiple > 1 else "at least %d" % info.min_image_size)
        raise UserError("image size %r does not suit %s: use %s (default %d)"
                        % (size, name, rule, info.default_image_size))
    return size


def _quantize(name, ops, is_training, settings, scope_prefix):
    """Rewrites the network just built (``ops``) for simulated int8 (quantization/);
    UserError naming what has no int8 rule when some of it would stay float."""
    rewrite.quantize_network(ops, is_training, settings, scope_prefix)
    left = rewrite.unquantized_layers(ops, scope_prefix)
    if left:
        causes = "; ".join("%s in %s%s" % (cause, ", ".join(scopes[:3]), (
            " and %d more" % (len(scopes) - 3) if len(scopes) > 3 else ""))
            for cause, scopes in left.items())
        raise UserError(
            "%s cannot be quantized: the int8 rules (docs/quantization.md) range "
            "convolution / depthwise / fully-connected layers, their ReLU, ReLU6, linear, "
            "hard-swish, hard-sigmoid, sigmoid or swish activations, squeeze-excite "
            "multiplies and residual adds, and this network also computes %s. Train it "
            "in float (drop --quantize_delay) or quantize a registered model"
            % (name, causes))


def get_network_fn(name, num_classes, weight_decay=0.00004, is_training=False,
                   bn_decay=0.997, dropout_keep_prob=0.8, quantize=None, **kwargs):
    """A function ``network_fn(images) -> (logits, end_points)`` for model ``name``;
    the first four arguments in TF-Slim's order, so its callers' code runs as written.

    ``images`` is [B, H, W, 3]; logits are [B, num_classes] (with num_classes 0/None:
    the pooled features [B, 1, 1, C]).  The graph is built inside the model's
    training arg_scope: truncated-normal init, L2 ``weight_decay`` on conv weights
    (not depthwise ones), batch norm with ``bn_decay`` in training mode when
    ``is_training`` (moving statistics otherwise), dropout ``dropout_keep_prob``.
    ``quantize``: None (float), or a ``quantization.rewrite.Settings``: the network is
    then rewritten for simulated int8 as contrib.quantize would (training: with the
    settings' delays; inference: with the ranges its variables hold).
    ``kwargs``: ``stddev``/``bn_epsilon``/``weights_init`` go to the arg_scope, anything else (e.g.
    ``drop_path_rate``, ``depth_multiplier``, ``reuse``) to the model function.
    """
    entry = _entry(name)
    scope_kwargs = dict((k, kwargs.pop(k)) for k in _SCOPE_KWARGS if k in kwargs)
    model_kwargs = kwargs

    # Graph building has no data-dependent Python control flow; without this,
    # autograph converts every slim layer call (~20 s for MobileNetV2 on this CPU).
    @do_not_convert
    def network_fn(images, **call_kwargs):
        arguments = dict(model_kwargs)
        arguments.update(call_kwargs)
        graph = tf.get_default_graph()
        first_op = len(graph.get_operations())
        if quantize is not None:
            images = rewrite.quantize_input(images)
        with slim.arg_scope(builder.training_scope(
                is_training=is_training, weight_decay=weight_decay, bn_decay=bn_decay,
                dropout_keep_prob=dropout_keep_prob, **scope_kwargs)):
            built = entry.builder(images, num_classes=num_classes, is_training=is_training,
                                  **arguments)
        if quantize is not None:
            scope_prefix = graph.get_name_scope()
            _quantize(name, graph.get_operations()[first_op:], is_training, quantize,
                      scope_prefix + "/" if scope_prefix else "")
        return built

    network_fn.default_image_size = entry.info.default_image_size
    network_fn.model_info = entry.info
    return network_fn


__all__ = ["ModelInfo", "FAMILIES", "build_registry", "model_names", "get_model_info", "check_image_size",
           "get_network_fn"]
