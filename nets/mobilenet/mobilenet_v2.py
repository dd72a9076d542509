"""MobileNetV2 (https://arxiv.org/abs/1801.04381) as a table, with TF-Slim's names.

Variables live under ``MobilenetV2/`` exactly as in the published TF-Slim checkpoints
(``Conv``, ``expanded_conv``..``expanded_conv_16``, ``Conv_1``,
``Logits/Conv2d_1c_1x1``).  The 1.0 model: ~300M multiply-adds, 3.47M parameters at
1001 classes.
"""
import functools

from utils.tf_compat import tf, slim
from nets.mobilenet import conv_blocks as ops
from nets.mobilenet import mobilenet as lib

op = lib.op
expand_input = ops.expand_input_by_factor

# The batch-norm center/scale flags change the variables, so they belong to the
# architecture (here), not to training_scope.
V2_DEF = lib.conv_defs(
    defaults={
        (slim.batch_norm,): {"center": True, "scale": True},
        (slim.conv2d, slim.fully_connected, slim.separable_conv2d): {
            "normalizer_fn": slim.batch_norm, "activation_fn": tf.nn.relu6},
        (ops.conv_bn_act,): {"normalizer_fn": slim.batch_norm, "padding": "SAME"},
        (ops.expanded_conv,): {"expansion_size": expand_input(6),
                               "normalizer_fn": slim.batch_norm, "residual": True,
                               "padding": "SAME"},
    },
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
              conv_defs=None, finegrain_classification_mode=False, min_depth=8,
              divisible_by=8, activation_fn=None, **kwargs):
    """MobileNetV2 classifier (inference mode unless is_training / training_scope).

    Args:
      finegrain_classification_mode: keep the last layer (Conv_1) at 1280 channels
        when depth_multiplier < 1, as the published 0.75/0.5/0.35 checkpoints do.
      activation_fn: replaces relu6 everywhere (the projections stay linear).
      **kwargs: passed to ``mobilenet.mobilenet`` (is_training, dropout_keep_prob,
        reuse, base_only, final_endpoint, prediction_fn, use_explicit_padding,
        drop_path_rate).
    Returns:
      (logits, end_points).
    """
    if conv_defs is None:
        conv_defs = V2_DEF
    if activation_fn is not None:
        conv_defs = lib.with_overrides(
            conv_defs, (slim.conv2d, slim.fully_connected, slim.separable_conv2d),
            activation_fn=activation_fn)
    return lib.mobilenet(input_tensor, num_classes=num_classes, conv_defs=conv_defs,
                         scope=scope, depth_multiplier=depth_multiplier,
                         min_depth=min_depth, divisible_by=divisible_by,
                         finegrain_classification_mode=finegrain_classification_mode,
                         **kwargs)


mobilenet.default_image_size = DEFAULT_IMAGE_SIZE


def _variant(depth_multiplier, finegrain):
    variant = functools.partial(mobilenet, depth_multiplier=depth_multiplier,
                                finegrain_classification_mode=finegrain)
    variant.default_image_size = DEFAULT_IMAGE_SIZE
    return variant


mobilenet_v2_140 = _variant(1.4, False)
mobilenet_v2_130 = _variant(1.3, False)
mobilenet_v2_075 = _variant(0.75, True)
mobilenet_v2_050 = _variant(0.5, True)
mobilenet_v2_035 = _variant(0.35, True)


def mobilenet_base(input_tensor, depth_multiplier=1.0, **kwargs):
    """The MobileNetV2 stack without pooling and logits."""
    return mobilenet(input_tensor, depth_multiplier=depth_multiplier, base_only=True,
                     **kwargs)


training_scope = lib.training_scope

__all__ = ["V2_DEF", "SCOPE", "DEFAULT_IMAGE_SIZE", "mobilenet", "mobilenet_base",
           "training_scope", "mobilenet_v2_140", "mobilenet_v2_130", "mobilenet_v2_075",
           "mobilenet_v2_050", "mobilenet_v2_035"]
