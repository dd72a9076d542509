"""Model registry: name -> network_fn(images) -> (logits, end_points) and its facts.

Only nets/ knows layer and scope names; the rest of the pipeline asks here
(``get_model_info(name).default_restore_exclude`` and so on).
"""
import collections

from utils.errors import UserError
from utils.tf_compat import do_not_convert, slim
from nets.mobilenet import mobilenet as mobilenet_lib
from nets.mobilenet import mobilenet_v2

ModelInfo = collections.namedtuple("ModelInfo", [
    "name",                     # registry name
    "scope",                    # top variable scope, as in the published checkpoints
    "default_image_size",       # training / eval resolution of the published weights
    "head_scopes",              # scopes of the class-dependent head
    "default_restore_exclude",  # what to leave out when fine-tuning to new classes
    "preprocessing_name",       # dataloader/preprocessing.py style
    "min_image_size",           # smallest accepted input side
    "size_multiple",            # input sides must be multiples of this (total stride)
])

_Entry = collections.namedtuple("_Entry", ["info", "builder"])

# Arguments of get_network_fn(**kwargs) that configure the training arg_scope; the
# rest go to the model function.
_SCOPE_KWARGS = ("stddev", "bn_epsilon")


def _mobilenet_v2(name, depth_multiplier, finegrain):
    info = ModelInfo(
        name=name, scope=mobilenet_v2.SCOPE,
        default_image_size=mobilenet_v2.DEFAULT_IMAGE_SIZE,
        head_scopes=(mobilenet_v2.SCOPE + "/Logits",),
        default_restore_exclude=mobilenet_v2.SCOPE + "/Logits/",
        preprocessing_name="inception", min_image_size=32, size_multiple=32)

    def builder(images, **kwargs):
        arguments = {"depth_multiplier": depth_multiplier,
                     "finegrain_classification_mode": finegrain}
        arguments.update(kwargs)  # e.g. a tiny depth_multiplier for tests
        return mobilenet_v2.mobilenet(images, **arguments)
    return _Entry(info, builder)


# The < 1.0 multipliers keep Conv_1 at 1280 channels (finegrain mode), as the
# published mobilenet_v2_0.75/0.5/0.35 checkpoints do.
_REGISTRY = dict((name, _mobilenet_v2(name, multiplier, finegrain)) for
                 name, multiplier, finegrain in [
                     ("mobilenet_v2", 1.0, False),
                     ("mobilenet_v2_140", 1.4, False),
                     ("mobilenet_v2_130", 1.3, False),
                     ("mobilenet_v2_075", 0.75, True),
                     ("mobilenet_v2_050", 0.5, True),
                     ("mobilenet_v2_035", 0.35, True),
                 ])


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
    """UserError unless ``size`` suits model ``name`` (a multiple of its total stride,
    32 for MobileNetV2, and at least its minimum)."""
    info = get_model_info(name)
    valid = (isinstance(size, int) and not isinstance(size, bool)
             and size >= info.min_image_size and size % info.size_multiple == 0)
    if not valid:
        raise UserError(
            "image size %r does not suit %s: use a multiple of %d that is at least %d "
            "(default %d)" % (size, name, info.size_multiple, info.min_image_size,
                              info.default_image_size))
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
    ``scope``, ``reuse``, ``activation_fn``) to the model function.
    """
    entry = _entry(name)
    scope_kwargs = dict((k, kwargs.pop(k)) for k in _SCOPE_KWARGS if k in kwargs)
    model_kwargs = kwargs

    # Graph building has no data-dependent Python control flow; without this,
    # autograph converts each of the 52 keras-backed slim.batch_norm calls (~0.3 s
    # each in training mode on this CPU).
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
