"""MobileNetV3 (https://arxiv.org/abs/1905.02244) as tables, with TF-Slim's names.

Variables live under ``MobilenetV3/`` exactly as in the published TF-Slim checkpoints
(research/slim/nets/mobilenet/mobilenet_v3.py): ``Conv`` (stem, hard-swish),
``expanded_conv``..``expanded_conv_14`` (large) with ``squeeze_excite/Conv`` and
``squeeze_excite/Conv_1`` where the row has SE, ``Conv_1`` (the last 1x1 conv with
batch norm), ``Conv_2`` (1x1 conv after the pooling row, with biases and no batch
norm) and ``Logits/Conv2d_1c_1x1``; 1001 classes.  The minimalistic variants drop
squeeze-excite, hard-swish and 5x5 kernels and keep the same layer names.
"""
import functools

from utils.tf_compat import tf, slim
from nets.mobilenet import conv_blocks as ops
from nets.mobilenet import mobilenet as lib

SCOPE = "MobilenetV3"
DEFAULT_IMAGE_SIZE = 224

hard_swish = ops.hard_swish
relu = tf.nn.relu

# TF-Slim's V3 gate: squeeze to make_divisible(expanded / 4, 8) channels, relu,
# hard-sigmoid.
SE = ops.squeeze_excite_transform(squeeze_factor=4, inner_activation_fn=tf.nn.relu,
                                  gating_fn=ops.hard_sigmoid)


def block(ef, n, k, s=1, act=relu, se=None):
    """One V3 bottleneck row (the paper's table): expansion factor ``ef`` (of the
    input, rounded to 8), ``n`` outputs, kxk depthwise with stride ``s``, activation
    ``act`` inside, optional squeeze-excite ``se``."""
    return lib.op(ops.expanded_conv, expansion_size=ops.expand_input_by_factor(ef),
                  kernel_size=(k, k), stride=s, num_outputs=n, inner_activation_fn=act,
                  expansion_transform=se)


def _head(last_conv, embedding, act):
    """Conv_1 (1x1, batch norm), the pooling row, Conv_2 (1x1, biases, no BN)."""
    return [lib.op(ops.conv_bn_act, kernel_size=[1, 1], num_outputs=last_conv,
                   activation_fn=act),
            lib.op(ops.pool_to_1x1),
            lib.op(ops.conv_bn_act, kernel_size=[1, 1], num_outputs=embedding,
                   normalizer_fn=None, activation_fn=act)]


DEFAULTS = {
    (slim.batch_norm,): {"center": True, "scale": True},
    (slim.conv2d, slim.fully_connected, slim.separable_conv2d): {
        "normalizer_fn": slim.batch_norm, "activation_fn": tf.nn.relu},
    (ops.conv_bn_act,): {"normalizer_fn": slim.batch_norm, "padding": "SAME"},
    (ops.expanded_conv,): {"normalizer_fn": slim.batch_norm, "residual": True,
                           "padding": "SAME"},
}

V3_LARGE = lib.conv_defs(defaults=DEFAULTS, spec=[
    lib.op(ops.conv_bn_act, stride=2, num_outputs=16, kernel_size=[3, 3],
           activation_fn=hard_swish),
    block(1, 16, 3),
    block(4, 24, 3, s=2),
    block(3, 24, 3),
    block(3, 40, 5, s=2, se=SE),
    block(3, 40, 5, se=SE),
    block(3, 40, 5, se=SE),
    block(6, 80, 3, s=2, act=hard_swish),
    block(2.5, 80, 3, act=hard_swish),
    block(184 / 80., 80, 3, act=hard_swish),
    block(184 / 80., 80, 3, act=hard_swish),
    block(6, 112, 3, act=hard_swish, se=SE),
    block(6, 112, 3, act=hard_swish, se=SE),
    block(6, 160, 5, s=2, act=hard_swish, se=SE),
    block(6, 160, 5, act=hard_swish, se=SE),
    block(6, 160, 5, act=hard_swish, se=SE),
] + _head(960, 1280, hard_swish))

V3_SMALL = lib.conv_defs(defaults=DEFAULTS, spec=[
    lib.op(ops.conv_bn_act, stride=2, num_outputs=16, kernel_size=[3, 3],
           activation_fn=hard_swish),
    block(1, 16, 3, s=2, se=SE),
    block(72. / 16, 24, 3, s=2),
    block(88. / 24, 24, 3),
    block(4, 40, 5, s=2, act=hard_swish, se=SE),
    block(6, 40, 5, act=hard_swish, se=SE),
    block(6, 40, 5, act=hard_swish, se=SE),
    block(3, 48, 5, act=hard_swish, se=SE),
    block(3, 48, 5, act=hard_swish, se=SE),
    block(6, 96, 5, s=2, act=hard_swish, se=SE),
    block(6, 96, 5, act=hard_swish, se=SE),
    block(6, 96, 5, act=hard_swish, se=SE),
] + _head(576, 1024, hard_swish))


def minimalistic(defs):
    """The same table without squeeze-excite, hard-swish or 5x5 kernels (TF-Slim's
    V3_*_MINIMALISTIC: same layers and names, relu and 3x3 everywhere)."""
    spec = []
    for row in defs["spec"]:
        params = dict(row.params)
        params.pop("expansion_transform", None)
        if params.get("activation_fn") is hard_swish:
            params["activation_fn"] = relu
        if params.get("inner_activation_fn") is hard_swish:
            params["inner_activation_fn"] = relu
        if params.get("kernel_size") == (5, 5):
            params["kernel_size"] = (3, 3)
        spec.append(row._replace(params=params))
    return lib.conv_defs(spec, defaults=defs["defaults"], overrides=defs["overrides"])


V3_LARGE_MINIMALISTIC = minimalistic(V3_LARGE)
V3_SMALL_MINIMALISTIC = minimalistic(V3_SMALL)


@slim.add_arg_scope
def mobilenet(input_tensor, num_classes=1001, depth_multiplier=1.0, scope=SCOPE,
              conv_defs=None, **kwargs):
    """MobileNetV3 classifier, V3_LARGE unless ``conv_defs`` says otherwise.

    ``kwargs`` go to ``mobilenet.mobilenet`` (is_training, dropout_keep_prob,
    finegrain_classification_mode, drop_path_rate, base_only, ...).
    """
    return lib.mobilenet(input_tensor, num_classes=num_classes,
                         conv_defs=conv_defs or V3_LARGE, scope=scope,
                         depth_multiplier=depth_multiplier, **kwargs)


mobilenet.default_image_size = DEFAULT_IMAGE_SIZE

large = functools.partial(mobilenet, conv_defs=V3_LARGE)
small = functools.partial(mobilenet, conv_defs=V3_SMALL)
large_minimalistic = functools.partial(mobilenet, conv_defs=V3_LARGE_MINIMALISTIC)
small_minimalistic = functools.partial(mobilenet, conv_defs=V3_SMALL_MINIMALISTIC)

training_scope = lib.training_scope

__all__ = ["SCOPE", "DEFAULT_IMAGE_SIZE", "V3_LARGE", "V3_SMALL", "V3_LARGE_MINIMALISTIC",
           "V3_SMALL_MINIMALISTIC", "mobilenet", "large", "small", "large_minimalistic",
           "small_minimalistic", "training_scope"]
