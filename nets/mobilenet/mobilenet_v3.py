"""MobileNetV3 (https://arxiv.org/abs/1905.02244) as tables, with TF-Slim's names.

Variables live under ``MobilenetV3/`` exactly as in the published TF-Slim checkpoints
(research/slim/nets/mobilenet/mobilenet_v3.py): ``Conv`` (stem, hard-swish),
``expanded_conv``..``expanded_conv_14`` (large) with ``squeeze_excite/Conv`` and
``squeeze_excite/Conv_1`` where the row has SE, ``Conv_1`` (the last 1x1 conv with
batch norm), ``Conv_2`` (1x1 conv after the pooling row, with biases and no batch
norm) and ``Logits/Conv2d_1c_1x1``; 1001 classes.  The minimalistic variants drop
squeeze-excite, hard-swish and 5x5 kernels and keep the same layer names.  The table
includes its pooling row (layer_18) and ``Conv_2`` (layer_19), as TF-Slim's does:
``mobilenet_base`` ends there, and ``final_endpoint='layer_17'`` gives the last
feature map before pooling.
"""
import collections
import functools

from nets import blocks as ops
from nets import builder as lib
from utils.tf_compat import slim, tf

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


DEFAULTS = lib.default_arg_scopes(tf.nn.relu)

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
              conv_defs=None, finegrain_classification_mode=False, **kwargs):
    """MobileNetV3 classifier, V3_LARGE unless ``conv_defs`` says otherwise; TF-Slim's
    signature.

    ``finegrain_classification_mode``: TF-Slim's V3 rule, the last row (Conv_2)
    ignores the depth multiplier.  ``kwargs`` go to ``builder.classifier``
    (min_depth, divisible_by, is_training, dropout_keep_prob, drop_path_rate,
    base_only, output_stride, ...); ``multiplier`` is refused.
    """
    if conv_defs is None:
        conv_defs = V3_LARGE
    if finegrain_classification_mode:
        conv_defs = lib.keep_last_depth(conv_defs)
    return lib.classifier(input_tensor, conv_defs, num_classes=num_classes,
                          depth_multiplier=depth_multiplier, scope=scope, **kwargs)


mobilenet.default_image_size = DEFAULT_IMAGE_SIZE
mobilenet_base = lib.base_of(mobilenet)
training_scope = lib.training_scope
wrapped_partial = lib.wrapped_partial

# For 32-px images (CIFAR): V2's rule (mobilenet_v2.V2_SMALL_INPUT_DEF), the stem and
# the first stride-2 block (expanded_conv) at stride 1: a total stride of 8.
V3_SMALL_SMALL_INPUT = lib.with_row(lib.with_row(V3_SMALL, 0, stride=1), 1, stride=1)

_row = functools.partial(lib.variant, preprocessing="mobilenet_v3",
                         top1_source="TF-Slim research/slim/nets/mobilenet/README.md")

# Every registered MobileNetV3: name -> arguments of ``mobilenet`` and facts (top-1 of
# TF-Slim's float checkpoints).  The 0.75 ones keep Conv_2 at 1280 / 1024 (finegrain
# mode): 3.99M / 2.04M parameters as loaded by timm, against 3.44M / 1.68M with every
# layer scaled.  No top-1 is published for the 32-px variant.
VARIANTS = collections.OrderedDict([
    ("mobilenet_v3_large", _row(conv_defs=V3_LARGE, top1=75.2)),
    ("mobilenet_v3_large_075", _row(conv_defs=V3_LARGE, depth_multiplier=0.75,
                                    finegrain_classification_mode=True, top1=73.3)),
    ("mobilenet_v3_small", _row(conv_defs=V3_SMALL, top1=67.5)),
    ("mobilenet_v3_small_075", _row(conv_defs=V3_SMALL, depth_multiplier=0.75,
                                    finegrain_classification_mode=True, top1=65.4)),
    ("mobilenet_v3_large_minimalistic", _row(conv_defs=V3_LARGE_MINIMALISTIC,
                                             top1=72.3)),
    ("mobilenet_v3_small_minimalistic", _row(conv_defs=V3_SMALL_MINIMALISTIC,
                                             top1=61.9)),
    ("mobilenet_v3_small_cifar", _row(conv_defs=V3_SMALL_SMALL_INPUT, image_size=32,
                                      size_multiple=8, preprocessing="cifar")),
])
MODELS = lib.variants(mobilenet, VARIANTS)

# TF-Slim's partials.
large = MODELS["mobilenet_v3_large"]
small = MODELS["mobilenet_v3_small"]
large_minimalistic = MODELS["mobilenet_v3_large_minimalistic"]
small_minimalistic = MODELS["mobilenet_v3_small_minimalistic"]

__all__ = ["SCOPE", "DEFAULT_IMAGE_SIZE", "V3_LARGE", "V3_SMALL", "V3_SMALL_SMALL_INPUT",
           "V3_LARGE_MINIMALISTIC", "V3_SMALL_MINIMALISTIC", "VARIANTS", "MODELS",
           "mobilenet", "mobilenet_base", "training_scope", "wrapped_partial", "large",
           "small", "large_minimalistic", "small_minimalistic"]
