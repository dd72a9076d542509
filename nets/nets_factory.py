"""Model registry: name -> network_fn(images) -> (logits, end_points) and its facts.

Only nets/ knows layer and scope names; the rest of the pipeline asks here
(``get_model_info(name).default_restore_exclude`` and so on).
"""
import collections
import functools

from utils.errors import UserError
from utils.tf_compat import do_not_convert, slim
from nets import efficientnet_v2, mnasnet
from nets.mobilenet import mobilenet as mobilenet_lib
from nets.mobilenet import mobilenet_v2, mobilenet_v3

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
])

_Entry = collections.namedtuple("_Entry", ["info", "builder"])

# Arguments of get_network_fn(**kwargs) that configure the training arg_scope; the
# rest go to the model function.
_SCOPE_KWARGS = ("stddev", "bn_epsilon")

_REGISTRY = {}


def _register(name, model_fn, scope, preprocessing_name, image_size=224,
              eval_image_size=None, drop_path_rate=0.0, size_multiple=32, **model_kwargs):
    """One model: ``model_fn(images, scope=scope, **model_kwargs, **call kwargs)`` plus
    its facts.  Every family here has its head in ``<scope>/Logits`` and a total
    stride of 32; SAME padding takes any size, and ``size_multiple`` 32 keeps every
    feature map exact, as the MobileNet checkpoints were trained."""
    info = ModelInfo(
        name=name, scope=scope, default_image_size=image_size,
        head_scopes=(scope + "/Logits",), default_restore_exclude=scope + "/Logits/",
        preprocessing_name=preprocessing_name, min_image_size=32,
        size_multiple=size_multiple, default_eval_image_size=eval_image_size or image_size,
        default_drop_path_rate=drop_path_rate)
    _REGISTRY[name] = _Entry(info, functools.partial(model_fn, scope=scope,
                                                      **model_kwargs))


# The < 1.0 multipliers keep Conv_1 at 1280 channels (finegrain mode), as the
# published mobilenet_v2_0.75/0.5/0.35 checkpoints do.
for _name, _multiplier, _finegrain in [
        ("mobilenet_v2", 1.0, False),
        ("mobilenet_v2_140", 1.4, False),
        ("mobilenet_v2_130", 1.3, False),
        ("mobilenet_v2_075", 0.75, True),
        ("mobilenet_v2_050", 0.5, True),
        ("mobilenet_v2_035", 0.35, True)]:
    _register(_name, mobilenet_v2.mobilenet, mobilenet_v2.SCOPE, "inception",
              depth_multiplier=_multiplier, finegrain_classification_mode=_finegrain)

# TF-Slim's published V3 checkpoints.  The 0.75 ones keep Conv_2 at 1280 / 1024
# (finegrain mode): 3.99M / 2.04M parameters as loaded by timm, against 3.44M / 1.68M
# with every layer scaled.
for _name, _defs, _multiplier in [
        ("mobilenet_v3_large", mobilenet_v3.V3_LARGE, 1.0),
        ("mobilenet_v3_large_075", mobilenet_v3.V3_LARGE, 0.75),
        ("mobilenet_v3_small", mobilenet_v3.V3_SMALL, 1.0),
        ("mobilenet_v3_small_075", mobilenet_v3.V3_SMALL, 0.75),
        ("mobilenet_v3_large_minimalistic", mobilenet_v3.V3_LARGE_MINIMALISTIC, 1.0),
        ("mobilenet_v3_small_minimalistic", mobilenet_v3.V3_SMALL_MINIMALISTIC, 1.0)]:
    _register(_name, mobilenet_v3.mobilenet, mobilenet_v3.SCOPE, "mobilenet_v3",
              conv_defs=_defs, depth_multiplier=_multiplier,
              finegrain_classification_mode=_multiplier < 1)

_register("mnasnet_a1", mobilenet_lib.mobilenet, mnasnet.SCOPE, "mnasnet",
          conv_defs=mnasnet.MNASNET_A1)
_register("mnasnet_b1", mobilenet_lib.mobilenet, mnasnet.SCOPE, "mnasnet",
          conv_defs=mnasnet.MNASNET_B1)
# EfficientNetV2 trains at 300 (progressively from 128) and evaluates at 384: any size.
_register("efficientnet_v2_s", mobilenet_lib.mobilenet, efficientnet_v2.SCOPE,
          "efficientnet_v2", image_size=300, eval_image_size=384, size_multiple=1,
          drop_path_rate=efficientnet_v2.DEFAULT_DROP_PATH_RATE,
          conv_defs=efficientnet_v2.EFFICIENTNET_V2_S)
_register("efficientnet_v2_b0", mobilenet_lib.mobilenet, efficientnet_v2.SCOPE,
          "efficientnet_v2", image_size=192, eval_image_size=224, size_multiple=1,
          drop_path_rate=efficientnet_v2.DEFAULT_DROP_PATH_RATE,
          conv_defs=efficientnet_v2.EFFICIENTNET_V2_B0)


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


def get_network_fn(name, num_classes, is_training=False, weight_decay=0.00004,
                   bn_decay=0.997, dropout_keep_prob=0.8, **kwargs):
    """A function ``network_fn(images) -> (logits, end_points)`` for model ``name``.

    ``images`` is [B, H, W, 3]; logits are [B, num_classes] (with num_classes 0/None:
    the pooled features [B, 1, 1, C]).  The graph is built inside the model's
    training arg_scope: truncated-normal init, L2 ``weight_decay`` on conv weights
    (not depthwise ones), batch norm with ``bn_decay`` in training mode when
    ``is_training`` (moving statistics otherwise), dropout ``dropout_keep_prob``.
    ``kwargs``: ``stddev``/``bn_epsilon`` go to the arg_scope, anything else (e.g.
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
        with slim.arg_scope(mobilenet_lib.training_scope(
                is_training=is_training, weight_decay=weight_decay, bn_decay=bn_decay,
                dropout_keep_prob=dropout_keep_prob, **scope_kwargs)):
            return entry.builder(images, num_classes=num_classes, is_training=is_training,
                                 **arguments)

    network_fn.default_image_size = entry.info.default_image_size
    network_fn.model_info = entry.info
    return network_fn


__all__ = ["ModelInfo", "model_names", "get_model_info", "check_image_size",
           "get_network_fn"]
