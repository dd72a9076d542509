"""MnasNet-A1 and -B1 (https://arxiv.org/abs/1807.11626) as tables.

The block strings are those of tensorflow/tpu models/official/mnasnet/mnasnet_models.py
(read by ``builder.block_rows``): relu everywhere, squeeze-excite to a quarter of
the block's input depth with a sigmoid gate, a 3x3 stride-2 stem of 32 and a 1x1
head conv of 1280 that the depth multiplier leaves alone.  No TF-Slim checkpoints
exist, so the names are our builder's under ``MnasNet/`` (``Conv``,
``expanded_conv_N/{expand,depthwise,squeeze_excite,project}``, ``Conv_1``,
``Logits/Conv2d_1c_1x1``).  Source defaults: batch-norm momentum 0.99, epsilon 1e-3,
dropout 0.2, 224 px, 1000 classes.
"""
import collections
import functools

from nets import blocks as ops
from nets import builder as lib
from utils.tf_compat import tf

SCOPE = "MnasNet"
DEFAULT_IMAGE_SIZE = 224

DEFAULTS = lib.default_arg_scopes(tf.nn.relu)
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


# The model function: builder.classifier (depth_multiplier, is_training, ...) with
# MnasNet's scope, table (A1 unless conv_defs says otherwise) and class count.
mnasnet = functools.partial(lib.classifier, conv_defs=MNASNET_A1, scope=SCOPE,
                            num_classes=1000)
mnasnet.default_image_size = DEFAULT_IMAGE_SIZE

_TPU = "tensorflow/tpu models/official/mnasnet/README.md"
_row = functools.partial(lib.variant, preprocessing="mnasnet", top1_source=_TPU)

# Every registered MnasNet: name -> arguments of ``mnasnet`` and facts.  B1's top-1
# is in that README's first versions (Feb-Mar 2019, e.g. tensorflow/tpu 33500fc),
# dropped when it switched to A1 and small.
VARIANTS = collections.OrderedDict([
    ("mnasnet_a1", _row(conv_defs=MNASNET_A1, top1=75.2)),
    ("mnasnet_b1", _row(conv_defs=MNASNET_B1, top1=74.4,
                        top1_source=_TPU + " at 33500fc (2019-03-13)")),
])
MODELS = lib.variants(mnasnet, VARIANTS)
mnasnet_a1 = MODELS["mnasnet_a1"]
mnasnet_b1 = MODELS["mnasnet_b1"]

__all__ = ["SCOPE", "DEFAULT_IMAGE_SIZE", "MNASNET_A1", "MNASNET_B1", "VARIANTS", "MODELS",
           "mnasnet", "mnasnet_a1", "mnasnet_b1"]
