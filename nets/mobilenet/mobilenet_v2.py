"""MobileNetV2 (https://arxiv.org/abs/1801.04381) as a table, with TF-Slim's names.

Variables live under ``MobilenetV2/`` exactly as in the published TF-Slim checkpoints
(``Conv``, ``expanded_conv``..``expanded_conv_16``, ``Conv_1``,
``Logits/Conv2d_1c_1x1``).  The 1.0 model: ~300M multiply-adds, 3.47M parameters at
1001 classes.  TF-Slim's public API: ``V2_DEF``, ``mobilenet``, ``mobilenet_base``,
``training_scope``, ``wrapped_partial`` and the variant partials
(``mobilenet_v2_140`` ...), made from ``VARIANTS`` as the registry's are.
"""
import collections
import functools

from nets import blocks as ops
from nets import builder as lib
from utils.tf_compat import slim, tf

op = lib.op
expand_input = ops.expand_input_by_factor
wrapped_partial = lib.wrapped_partial

V2_DEF = lib.conv_defs(
    defaults=lib.default_arg_scopes(tf.nn.relu6,
                                    expanded_conv={"expansion_size": expand_input(6)}),
    spec=[
        # layer_1: MobilenetV2/Conv
        op(ops.conv_bn_act, stride=2, num_outputs=32, kernel_size=[3, 3]),
        # layer_2..layer_18: MobilenetV2/expanded_conv, expanded_conv_1..16
        op(ops.expanded_conv, expansion_size=expand_input(1, divisible_by=1),
           num_outputs=16),
        op(ops.expanded_conv, stride=2, num_outputs=24),
        op(ops.expanded_conv, stride=1, num_outputs=24),
        op(ops.expanded_conv, stride=2, num_outputs=32),
        op(ops.expanded_conv, stride=1, num_outputs=32),
        op(ops.expanded_conv, stride=1, num_outputs=32),
        op(ops.expanded_conv, stride=2, num_outputs=64),
        op(ops.expanded_conv, stride=1, num_outputs=64),
        op(ops.expanded_conv, stride=1, num_outputs=64),
        op(ops.expanded_conv, stride=1, num_outputs=64),
        op(ops.expanded_conv, stride=1, num_outputs=96),
        op(ops.expanded_conv, stride=1, num_outputs=96),
        op(ops.expanded_conv, stride=1, num_outputs=96),
        op(ops.expanded_conv, stride=2, num_outputs=160),
        op(ops.expanded_conv, stride=1, num_outputs=160),
        op(ops.expanded_conv, stride=1, num_outputs=160),
        op(ops.expanded_conv, stride=1, num_outputs=320),
        # layer_19: MobilenetV2/Conv_1, the embedding
        op(ops.conv_bn_act, stride=1, kernel_size=[1, 1], num_outputs=1280),
    ],
)

SCOPE = "MobilenetV2"
DEFAULT_IMAGE_SIZE = 224


@slim.add_arg_scope
def mobilenet(input_tensor, num_classes=1001, depth_multiplier=1.0, scope=SCOPE,
              conv_defs=None, finegrain_classification_mode=False, min_depth=None,
              divisible_by=None, activation_fn=None, **kwargs):
    """MobileNetV2 classifier (inference mode unless is_training / training_scope);
    TF-Slim's signature.

    ``finegrain_classification_mode``: keep the last layer (Conv_1) at 1280 channels
      when depth_multiplier < 1, as the published 0.75/0.5/0.35 checkpoints do.
    ``min_depth``, ``divisible_by``: the depth rule's, only when given (else the
      arg_scope on ``mobilenet.depth_multiplier``, default 8 and 8).
    ``activation_fn``: replaces relu6 everywhere (the projections stay linear).
    ``**kwargs``: to ``builder.mobilenet`` (is_training, dropout_keep_prob, reuse,
      base_only, final_endpoint, output_stride, prediction_fn,
      use_explicit_padding, drop_path_rate); ``multiplier`` is refused.
    Returns (logits, end_points).
    """
    if conv_defs is None:
        conv_defs = V2_DEF
    if activation_fn is not None:
        conv_defs = lib.with_overrides(
            conv_defs, (slim.conv2d, slim.fully_connected, slim.separable_conv2d),
            activation_fn=activation_fn)
    return lib.classifier(input_tensor, conv_defs, num_classes=num_classes,
                          depth_multiplier=depth_multiplier, scope=scope,
                          finegrain_classification_mode=finegrain_classification_mode,
                          min_depth=min_depth, divisible_by=divisible_by, **kwargs)


mobilenet.default_image_size = DEFAULT_IMAGE_SIZE
mobilenet_base = lib.base_of(mobilenet)
training_scope = lib.training_scope

# For 32-px images (CIFAR): the stem and the first stride-2 block (expanded_conv_1) at
# stride 1, a total stride of 8 and a 4x4 last feature map, as kuangliu/pytorch-cifar's
# MobileNetV2. Same variables and names as V2_DEF. Its 94.43% on CIFAR-10 (its README)
# is that network's: it also adds a 1x1-conv shortcut where a stride-1 block changes
# depth (models/mobilenetv2.py), which TF-Slim's blocks, and ours, do not.
V2_SMALL_INPUT_DEF = lib.with_row(lib.with_row(V2_DEF, 0, stride=1), 2, stride=1)

_SLIM = "TF-Slim research/slim/nets/mobilenet/README.md"
_CIFAR = "kuangliu/pytorch-cifar README.md (MobileNetV2)"
_row = functools.partial(lib.variant, top1_source=_SLIM)

# Every registered MobileNetV2: name -> arguments of ``mobilenet`` and facts (top-1 of
# the 224-px checkpoints).  The < 1.0 ones keep Conv_1 at 1280 channels (finegrain
# mode), as their checkpoints do.
VARIANTS = collections.OrderedDict([
    ("mobilenet_v2", _row(top1=71.8)),
    ("mobilenet_v2_140", _row(depth_multiplier=1.4, top1=75.0)),
    ("mobilenet_v2_130", _row(depth_multiplier=1.3, top1=74.4)),
    ("mobilenet_v2_075", _row(depth_multiplier=0.75, finegrain_classification_mode=True,
                              top1=69.8)),
    ("mobilenet_v2_050", _row(depth_multiplier=0.5, finegrain_classification_mode=True,
                              top1=65.4)),
    ("mobilenet_v2_035", _row(depth_multiplier=0.35, finegrain_classification_mode=True,
                              top1=60.3)),
    ("mobilenet_v2_cifar", _row(conv_defs=V2_SMALL_INPUT_DEF, image_size=32,
                                size_multiple=8, preprocessing="cifar", top1=94.43,
                                top1_dataset="CIFAR-10", top1_source=_CIFAR)),
])
MODELS = lib.variants(mobilenet, VARIANTS)

mobilenet_v2_140 = MODELS["mobilenet_v2_140"]
mobilenet_v2_130 = MODELS["mobilenet_v2_130"]
mobilenet_v2_075 = MODELS["mobilenet_v2_075"]
mobilenet_v2_050 = MODELS["mobilenet_v2_050"]
mobilenet_v2_035 = MODELS["mobilenet_v2_035"]

__all__ = ["V2_DEF", "V2_SMALL_INPUT_DEF", "SCOPE", "DEFAULT_IMAGE_SIZE", "VARIANTS",
           "MODELS", "mobilenet", "mobilenet_base", "training_scope", "wrapped_partial",
           "mobilenet_v2_140", "mobilenet_v2_130", "mobilenet_v2_075", "mobilenet_v2_050",
           "mobilenet_v2_035"]
