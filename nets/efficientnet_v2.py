"""EfficientNetV2-S and -B0 (https://arxiv.org/abs/2104.00298) as tables.

The block strings are google/automl efficientnetv2/effnetv2_configs.py's
(``c1`` = Fused-MBConv, ``blocks.fused_expanded_conv``), read by
``builder.block_rows``: swish (SiLU) everywhere, squeeze-excite to a quarter of the
block's input depth (swish inside, sigmoid gate), a 3x3 stride-2 stem as wide as the
first block's input, a 1x1 head conv of 1280 and stochastic depth (hparams.py:
survival_prob 0.8, i.e. drop_path_rate 0.2, falling linearly to 0 at the first
block).  Sizes (effnetv2_configs.py): S trains at 300 and evaluates at 384, B0 trains
at 192 and evaluates at 224.  The source's batch norm uses momentum 0.9 (at batch
4096) and epsilon 1e-3; dropout 0.2; 1000 classes.  No TF-Slim checkpoints exist;
names are our builder's under ``EfficientNetV2/``.
"""
import collections
import functools

from nets import blocks as ops
from nets import builder as lib

SCOPE = "EfficientNetV2"
DEFAULT_DROP_PATH_RATE = 0.2

DEFAULTS = lib.default_arg_scopes(ops.swish)
HEAD = lib.op(ops.conv_bn_act, kernel_size=[1, 1], num_outputs=1280)


def stem(depth):
    """The stem row: a 3x3 stride-2 conv-bn-act of ``depth`` channels."""
    return lib.op(ops.conv_bn_act, stride=2, num_outputs=depth, kernel_size=[3, 3])


EFFICIENTNET_V2_S = lib.conv_defs(defaults=DEFAULTS, spec=[stem(24)] + lib.block_rows([
    "r2_k3_s1_e1_i24_o24_c1",
    "r4_k3_s2_e4_i24_o48_c1",
    "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25",
    "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
]) + [HEAD])

EFFICIENTNET_V2_B0 = lib.conv_defs(defaults=DEFAULTS, spec=[stem(32)] + lib.block_rows([
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
]) + [HEAD])


# The model function: builder.classifier (depth_multiplier, is_training,
# drop_path_rate: DEFAULT_DROP_PATH_RATE trains as the source does, ...) with
# EfficientNetV2's scope, table (S unless conv_defs says otherwise) and class count.
efficientnet_v2 = functools.partial(lib.classifier, conv_defs=EFFICIENTNET_V2_S,
                                    scope=SCOPE, num_classes=1000)

# Any size from 32 (the source trains progressively from 128), its own preprocessing,
# stochastic depth on; top-1 of the ImageNet-1k checkpoints.
_row = functools.partial(lib.variant, preprocessing="efficientnet_v2", size_multiple=1,
                         drop_path_rate=DEFAULT_DROP_PATH_RATE,
                         top1_source="google/automl efficientnetv2/README.md")

# Every registered EfficientNetV2: name -> arguments of ``efficientnet_v2`` and facts.
VARIANTS = collections.OrderedDict([
    ("efficientnet_v2_s", _row(conv_defs=EFFICIENTNET_V2_S, image_size=300,
                               eval_image_size=384, top1=83.9)),
    ("efficientnet_v2_b0", _row(conv_defs=EFFICIENTNET_V2_B0, image_size=192,
                                eval_image_size=224, top1=78.7)),
])
MODELS = lib.variants(efficientnet_v2, VARIANTS)
efficientnet_v2_s = MODELS["efficientnet_v2_s"]
efficientnet_v2_b0 = MODELS["efficientnet_v2_b0"]

__all__ = ["SCOPE", "DEFAULT_DROP_PATH_RATE", "EFFICIENTNET_V2_S", "EFFICIENTNET_V2_B0",
           "VARIANTS", "MODELS", "efficientnet_v2", "efficientnet_v2_s",
           "efficientnet_v2_b0"]
