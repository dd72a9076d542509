"""MnasNet-A1 and -B1 (https://arxiv.org/abs/1807.11626) as tables.

The block strings are those of tensorflow/tpu models/official/mnasnet/mnasnet_models.py
(read by ``mobilenet.block_rows``): relu everywhere, squeeze-excite to a quarter of
the block's input depth with a sigmoid gate, a 3x3 stride-2 stem of 32 and a 1x1
head conv of 1280 that the depth multiplier leaves alone.  No TF-Slim checkpoints
exist, so the names are our builder's under ``MnasNet/`` (``Conv``,
``expanded_conv_N/{expand,depthwise,squeeze_excite,project}``, ``Conv_1``,
``Logits/Conv2d_1c_1x1``).  Source defaults: batch-norm momentum 0.99, epsilon 1e-3,
dropout 0.2, 224 px, 1000 classes.
"""
from utils.tf_compat import tf, slim
from nets.mobilenet import conv_blocks as ops
from nets.mobilenet import mobilenet as lib

SCOPE = "MnasNet"
DEFAULT_IMAGE_SIZE = 224

DEFAULTS = {
    (slim.batch_norm,): {"center": True, "scale": True},
    (slim.conv2d, slim.fully_connected, slim.separable_conv2d): {
        "normalizer_fn": slim.batch_norm, "activation_fn": tf.nn.relu},
    (ops.conv_bn_act,): {"normalizer_fn": slim.batch_norm, "padding": "SAME"},
    (ops.expanded_conv,): {"normalizer_fn": slim.batch_norm, "padding": "SAME"},
    (ops.squeeze_excite,): {"inner_activation_fn": tf.nn.relu, "gating_fn": tf.sigmoid},
}
STEM = lib.op(ops.conv_bn_act, stride=2, num_outputs=32, kernel_size=[3, 3])
HEAD = lib.op(ops.conv_bn_act, multiplier_func=lib.fixed_depth, kernel_size=[1, 1],
              num_outputs=1280)

MNASNET_A1 = lib.conv_defs(defaults=DEFAULTS, spec=[STEM] + lib.block_rows([
    "r1_k3_s11_e1_i32_o16_noskip", "r2_k3_s22_e6_i16_o24",
    "r3_k5_s22_e3_i24_o40_se0.25", "r4_k3_s22_e6_i40_o80",
    "r2_k3_s11_e6_i80_o112_se0.25", "r3_k5_s22_e6_i112_o160_se0.25",
    "r1_k3_s11_e6_i160_o320",
]) + [HEAD])

MNASNET_B1 = lib.conv_defs(defaults=DEFAULTS, spec=[STEM] + lib.block_rows([
    "r1_k3_s11_e1_i32_o16_noskip", "r3_k3_s22_e3_i16_o24",
    "r3_k5_s22_e3_i24_o40", "r3_k5_s22_e6_i40_o80", "r2_k3_s11_e6_i80_o96",
    "r4_k5_s22_e6_i96_o192", "r1_k3_s11_e6_i192_o320_noskip",
]) + [HEAD])

__all__ = ["SCOPE", "DEFAULT_IMAGE_SIZE", "MNASNET_A1", "MNASNET_B1"]
