"""MobileNetV3, MnasNet and EfficientNetV2: built by the one block library and builder,
TF-Slim's V3 names, published sizes, stochastic depth, and each family through
training, checkpoint, evaluation and fine-tuning in this process.

The expected V3 variable table is written from TF-Slim's V3_LARGE spec
(research/slim/nets/mobilenet/mobilenet_v3.py), not from nets/.
"""
import collections
import functools

import numpy as np
import pytest

from datasets import dataset_factory
import env as env_lib
import estimator_impl
from evaluation.evaluator import Evaluator
import logger as logger_lib
from nets import blocks, builder, efficientnet_v2, nets_factory, summary
from tests import reference_eval
from tests.cli_helpers import evaluator_config
from tests.run_helpers import train
from tests.test_env_schedules import flag_values
from tests.test_nets_mobilenet_v2 import ALL_NAMES as V2_NAMES, shapes
from training import optimization
from utils.errors import UserError
from utils.tf_compat import do_not_convert, slim, tf

# The 32-px variants of published networks (tested below, against their parents).
SMALL_INPUT = {"mobilenet_v2_cifar": "mobilenet_v2", "mobilenet_v3_small_cifar":
               "mobilenet_v3_small"}
NEW_NAMES = [n for n in nets_factory.model_names()
             if n not in V2_NAMES and n not in SMALL_INPUT]

# MobileNetV3-Large, from TF-Slim's V3_LARGE rows: (input, expanded or None, output,
# kernel, squeeze width or None) of expanded_conv, expanded_conv_1 .. expanded_conv_14.
# Squeeze widths follow TF-Slim's make_divisible(expanded / 4, 8).
V3_LARGE_BLOCKS = [
    (16, None, 16, 3, None), (16, 64, 24, 3, None), (24, 72, 24, 3, None),
    (24, 72, 40, 5, 24), (40, 120, 40, 5, 32), (40, 120, 40, 5, 32),
    (40, 240, 80, 3, None), (80, 200, 80, 3, None), (80, 184, 80, 3, None),
    (80, 184, 80, 3, None), (80, 480, 112, 3, 120), (112, 672, 112, 3, 168),
    (112, 672, 160, 5, 168), (160, 960, 160, 5, 240), (160, 960, 160, 5, 240),
]

# Published sizes, copied here from their sources (not read from nets/summary.py, whose
# table the summary command prints): parameters, whether that count includes batch-norm
# gamma/beta (torchvision and timm count them), the class count and image size they are
# for, and multiply-adds (None where no consistent figure is published).
Published = collections.namedtuple(
    "Published", "params with_batch_norm num_classes macs image_size")
PUBLISHED = {
    # torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1: num_params 5483032, _ops
    # 0.217 GFLOPS; 217M MACs in TF-Slim's research/slim/nets/mobilenet/README.md.
    "mobilenet_v3_large": Published(5483032, True, 1000, 217e6, 224),
    # Parameters: timm's results-imagenet.csv for tf_mobilenetv3_large_075 /
    # _large_minimal_100 (TF-Slim's checkpoints, ported); MACs: TF-Slim's README.
    "mobilenet_v3_large_075": Published(3.99e6, True, 1000, 155e6, 224),
    "mobilenet_v3_large_minimalistic": Published(3.92e6, True, 1000, 209e6, 224),
    # torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1: num_params 2542856, _ops
    # 0.057 GFLOPS.
    "mobilenet_v3_small": Published(2542856, True, 1000, 57e6, 224),
    # timm tf_mobilenetv3_small_075: 2.04M; 44M MACs in the paper (arXiv 1905.02244v5,
    # Table 3) and TF-Slim's README.
    "mobilenet_v3_small_075": Published(2.04e6, True, 1000, 44e6, 224),
    # timm tf_mobilenetv3_small_minimal_100: 2.04M; its published MACs disagree.
    "mobilenet_v3_small_minimalistic": Published(2.04e6, True, 1000, None, 224),
    # timm semnasnet_100: 3.89M (3.9M in tensorflow/tpu models/official/mnasnet/README.md);
    # 312M MACs there and in the MnasNet paper's Table 1.
    "mnasnet_a1": Published(3.89e6, True, 1000, 312e6, 224),
    # torchvision MNASNet1_0_Weights.IMAGENET1K_V1: num_params 4383312, _ops 0.314 GFLOPS.
    "mnasnet_b1": Published(4383312, True, 1000, 314e6, 224),
    # google/automl efficientnetv2/README.md: 21.5M / 8.4B FLOPs at 384 px and 7.1M /
    # 0.72B at 224 px (its FLOPs are multiply-adds).
    "efficientnet_v2_s": Published(21.5e6, True, 1000, 8.4e9, 384),
    "efficientnet_v2_b0": Published(7.1e6, True, 1000, 0.72e9, 224),
}

# Measured multiply-adds outside 1% of the published figure, and why.
MAC_GAPS = {
    # 43.4M against the paper's and TF-Slim's 44M (their rounding or counting of
    # elementwise ops; squeeze-excite gating alone would add 0.24M).
    "mobilenet_v3_small_075": 0.015,
}


def expected_v3_large_variables(num_classes=1001):
    table = {}

    def conv_bn(scope, shape):
        name = "depthwise_weights" if scope.endswith("depthwise") else "weights"
        table[scope + "/" + name] = shape
        depth = shape[2] if scope.endswith("depthwise") else shape[3]
        for stat in ("gamma", "beta", "moving_mean", "moving_variance"):
            table[scope + "/BatchNorm/" + stat] = [depth]

    def conv_bias(scope, shape):
        table[scope + "/weights"] = shape
        table[scope + "/biases"] = [shape[3]]

    conv_bn("MobilenetV3/Conv", [3, 3, 3, 16])
    for i, (c_in, c_mid, c_out, kernel, squeeze) in enumerate(V3_LARGE_BLOCKS):
        block = "MobilenetV3/expanded_conv" + ("_%d" % i if i else "")
        if c_mid is None:
            c_mid = c_in
        else:
            conv_bn(block + "/expand", [1, 1, c_in, c_mid])
        conv_bn(block + "/depthwise", [kernel, kernel, c_mid, 1])
        if squeeze:
            conv_bias(block + "/squeeze_excite/Conv", [1, 1, c_mid, squeeze])
            conv_bias(block + "/squeeze_excite/Conv_1", [1, 1, squeeze, c_mid])
        conv_bn(block + "/project", [1, 1, c_mid, c_out])
    conv_bn("MobilenetV3/Conv_1", [1, 1, 160, 960])
    conv_bias("MobilenetV3/Conv_2", [1, 1, 960, 1280])
    conv_bias("MobilenetV3/Logits/Conv2d_1c_1x1", [1, 1, 1280, num_classes])
    return table


Facts = collections.namedtuple(
    "Facts", "params params_without_bn macs shapes end_points free_outputs")

MAC_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def multiply_adds(operations, output_shapes):
    """Multiply-adds of convolutions and matrix products from their measured output
    shapes: per output element, a k x k convolution over c input channels costs k*k*c,
    a k x k depthwise one k*k, a matrix product its inner dimension."""
    total = 0
    for op, shape in zip(operations, output_shapes):
        weights = op.inputs[1].shape.as_list()
        if op.type == "Conv2D":
            per_output = weights[0] * weights[1] * weights[2]
        elif op.type == "DepthwiseConv2dNative":
            per_output = weights[0] * weights[1]
        else:
            per_output = weights[1 if op.get_attr("transpose_b") else 0]
        total += int(np.prod(shape)) * per_output
    return total


@functools.lru_cache(maxsize=None)
def facts(name):
    """Builds ``name`` once with free sizes and its published class count; runs it at
    the published size (one image: end_point shapes, multiply-adds from the measured
    shapes) and on two images at 32 and 64 px.  Cached, and one build per model:
    graph building dominates this file's time."""
    published = PUBLISHED[name]
    size = published.image_size
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [None, None, None, 3])
        logits, end_points = nets_factory.get_network_fn(name, published.num_classes)(images)
        mac_ops = [op for op in graph.get_operations() if op.type in MAC_OPS]
        mac_outputs = [op.outputs[0] for op in mac_ops]
        measured = [tf.shape(t) for t in mac_outputs + list(end_points.values())]
        rng = np.random.RandomState(0)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(measured, {images: np.zeros([1, size, size, 3])})
            outputs = [sess.run(logits, {images: rng.rand(2, side, side, 3)})
                       for side in (32, 64)]
        sizes = dict((v.op.name, int(np.prod(v.shape.as_list())))
                     for v in tf.trainable_variables())
        batch_norm = ("/BatchNorm/gamma", "/BatchNorm/beta")
        return Facts(
            params=sum(sizes.values()),
            params_without_bn=sum(n for name, n in sizes.items()
                                  if not name.endswith(batch_norm)),
            macs=multiply_adds(mac_ops, values[:len(mac_ops)]),
            shapes=shapes(tf.global_variables()),
            end_points=dict((k, list(v)) for k, v in zip(end_points,
                                                         values[len(mac_outputs):])),
            free_outputs=outputs)


# ----------------------------------------------------------------------- every model

@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_NAMES)
def test_builds_at_two_sizes(name):
    """Run at the published size, then at 32 and 64 px (one graph, free sizes)."""
    info = nets_factory.get_model_info(name)
    got = facts(name)
    classes = PUBLISHED[name].num_classes
    assert got.end_points["Logits"] == got.end_points["Predictions"] == [1, classes]
    outputs = got.free_outputs
    assert all(o.shape == (2, classes) and np.all(np.isfinite(o)) for o in outputs)
    assert not np.allclose(outputs[0], outputs[1], rtol=1e-3, atol=0)  # tiny at init
    assert all(n.startswith(info.scope + "/") for n in got.shapes)
    assert info.head_scopes == (info.scope + "/Logits",)
    assert info.default_restore_exclude == info.scope + "/Logits/"
    assert sorted(n for n in got.shapes if n.startswith(info.scope + "/Logits/")) == [
        info.scope + "/Logits/Conv2d_1c_1x1/biases",
        info.scope + "/Logits/Conv2d_1c_1x1/weights"]


@pytest.mark.parametrize("name", NEW_NAMES)
def test_size_matches_published(name):
    """Parameters and multiply-adds at the published resolution and class count,
    counted with or without batch-norm gamma/beta as the source does (nets/README.md)."""
    published = PUBLISHED[name]
    got = facts(name)
    params = got.params if published.with_batch_norm else got.params_without_bn
    assert abs(params - published.params) <= 0.01 * published.params, params
    if published.macs is not None:
        gap = abs(got.macs - published.macs) / published.macs
        assert gap <= MAC_GAPS.get(name, 0.01), got.macs


def test_summary_command_prints_measured_and_published(capsys):
    assert summary.main(["--model_name=mobilenet_v3_small_minimalistic"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 2044736" in out
    assert "published: parameters 2.04M (measured +0.2%)" in out
    assert "multiply-adds n/a" in out
    assert ("published top-1: 61.9% on ImageNet; source: TF-Slim "
            "research/slim/nets/mobilenet/README.md") in out
    assert summary.main(["--model_name=resnet"]) == 2


def test_registry_sizes_and_defaults():
    assert sorted(PUBLISHED) == sorted(NEW_NAMES)  # a published size for every model
    scopes = {"mobilenet_v3": "MobilenetV3", "mnasnet": "MnasNet",
              "efficientnet_v2": "EfficientNetV2"}
    for name in NEW_NAMES:
        info = nets_factory.get_model_info(name)
        family = [f for f in scopes if name.startswith(f)][0]
        assert (info.scope, info.preprocessing_name) == (scopes[family], family)
        assert info.default_drop_path_rate == (0.2 if family == "efficientnet_v2" else 0.0)
        if family != "efficientnet_v2":
            assert info.default_image_size == info.default_eval_image_size == 224
            assert info.size_multiple == 32
    sizes = dict((n, nets_factory.get_model_info(n)) for n in ("efficientnet_v2_s",
                                                               "efficientnet_v2_b0"))
    assert [(i.default_image_size, i.default_eval_image_size) for i in sizes.values()] == [
        (300, 384), (192, 224)]
    assert nets_factory.check_image_size("efficientnet_v2_s", 300) == 300
    with pytest.raises(UserError, match="use at least 32"):
        nets_factory.check_image_size("efficientnet_v2_s", 16)


# Every model's facts as literals: train / eval px, preprocessing, size multiple,
# drop-path rate, published top-1 (percent) and what it was measured on.  Top-1
# sources: TF-Slim's research/slim/nets/mobilenet/README.md (V2 at 224 px, V3 float
# checkpoints); tensorflow/tpu models/official/mnasnet/README.md (A1; B1 in its
# versions of Feb-Mar 2019); google/automl efficientnetv2/README.md (ImageNet-1k);
# kuangliu/pytorch-cifar README.md (MobileNetV2 on CIFAR-10).
IMAGENET_224 = (224, 224)
REGISTRY_FACTS = {
    "mobilenet_v2": IMAGENET_224 + ("inception", 32, 0.0, 71.8, "ImageNet"),
    "mobilenet_v2_140": IMAGENET_224 + ("inception", 32, 0.0, 75.0, "ImageNet"),
    "mobilenet_v2_130": IMAGENET_224 + ("inception", 32, 0.0, 74.4, "ImageNet"),
    "mobilenet_v2_075": IMAGENET_224 + ("inception", 32, 0.0, 69.8, "ImageNet"),
    "mobilenet_v2_050": IMAGENET_224 + ("inception", 32, 0.0, 65.4, "ImageNet"),
    "mobilenet_v2_035": IMAGENET_224 + ("inception", 32, 0.0, 60.3, "ImageNet"),
    "mobilenet_v2_cifar": (32, 32, "cifar", 8, 0.0, 94.43, "CIFAR-10"),
    "mobilenet_v3_large": IMAGENET_224 + ("mobilenet_v3", 32, 0.0, 75.2, "ImageNet"),
    "mobilenet_v3_large_075": IMAGENET_224 + ("mobilenet_v3", 32, 0.0, 73.3, "ImageNet"),
    "mobilenet_v3_small": IMAGENET_224 + ("mobilenet_v3", 32, 0.0, 67.5, "ImageNet"),
    "mobilenet_v3_small_075": IMAGENET_224 + ("mobilenet_v3", 32, 0.0, 65.4, "ImageNet"),
    "mobilenet_v3_large_minimalistic": IMAGENET_224 + ("mobilenet_v3", 32, 0.0, 72.3,
                                                       "ImageNet"),
    "mobilenet_v3_small_minimalistic": IMAGENET_224 + ("mobilenet_v3", 32, 0.0, 61.9,
                                                       "ImageNet"),
    "mobilenet_v3_small_cifar": (32, 32, "cifar", 8, 0.0, None, None),
    "mnasnet_a1": IMAGENET_224 + ("mnasnet", 32, 0.0, 75.2, "ImageNet"),
    "mnasnet_b1": IMAGENET_224 + ("mnasnet", 32, 0.0, 74.4, "ImageNet"),
    "efficientnet_v2_s": (300, 384, "efficientnet_v2", 1, 0.2, 83.9, "ImageNet"),
    "efficientnet_v2_b0": (192, 224, "efficientnet_v2", 1, 0.2, 78.7, "ImageNet"),
}


def info_facts(info):
    return (info.default_image_size, info.default_eval_image_size,
            info.preprocessing_name, info.size_multiple, info.default_drop_path_rate,
            info.published_top1, info.published_top1_dataset)


def test_registry_is_the_union_of_the_families_variants():
    """One generic registration: the registry's names are the families' VARIANTS keys
    (no name twice), each ModelInfo's facts are its row's, its model function has the
    row's arguments, and the facts are the literals above."""
    names = [n for family in nets_factory.FAMILIES for n in family.VARIANTS]
    assert len(names) == len(set(names))
    assert sorted(names) == nets_factory.model_names() == sorted(REGISTRY_FACTS)
    for family in nets_factory.FAMILIES:
        for name, row in family.VARIANTS.items():
            info = nets_factory.get_model_info(name)
            assert info.scope == family.SCOPE
            assert info_facts(info) == (row.image_size, row.eval_image_size,
                                        row.preprocessing, row.size_multiple,
                                        row.drop_path_rate, row.top1, row.top1_dataset)
            assert info.published_top1_source == row.top1_source
            assert (info.published_top1_source is None) == (info.published_top1 is None)
            assert row.kwargs.items() <= family.MODELS[name].keywords.items()
            assert info_facts(info) == REGISTRY_FACTS[name], name


def test_a_new_row_is_a_new_model():
    """A family with one more row registers, builds and carries that row's facts;
    a name given twice and a top-1 without its source are refused."""
    from nets.mobilenet import mobilenet_v2
    variants = collections.OrderedDict([("mobilenet_v2_010", builder.variant(
        depth_multiplier=0.1, image_size=96, top1=42.0, top1_source="a test"))])
    family = collections.namedtuple("Family", "SCOPE VARIANTS MODELS")(
        "MobilenetV2", variants, builder.variants(mobilenet_v2.mobilenet, variants))
    entry = nets_factory.build_registry([family])["mobilenet_v2_010"]
    assert info_facts(entry.info) == (96, 96, "inception", 32, 0.0, 42.0, "ImageNet")
    assert entry.info.published_top1_source == "a test"
    with tf.Graph().as_default():
        logits, _ = do_not_convert(entry.builder)(tf.zeros([1, 32, 32, 3]),
                                                  num_classes=10)
        depths = shapes(tf.global_variables())
    assert logits.shape.as_list() == [1, 10]
    assert depths["MobilenetV2/Conv/weights"] == [3, 3, 3, 8]  # 32 * 0.1 -> min 8
    with pytest.raises(ValueError, match="registered twice"):
        nets_factory.build_registry([family, family])
    with pytest.raises(ValueError, match="top1_source"):
        builder.variant(top1=50.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_INPUT))
def test_small_input_variants_keep_their_parents_variables(name):
    """The 32-px (CIFAR) variants: the parent's variables, names and shapes, so its
    ImageNet checkpoints restore; a total stride of 8 (a 4x4 last feature map at 32
    px, where the parent has 1x1), trained at 32 with the cifar preprocessing."""
    built = {}
    for model in (name, SMALL_INPUT[name]):
        with tf.Graph().as_default():
            _, end_points = nets_factory.get_network_fn(model, 10)(tf.zeros([1, 32, 32, 3]))
            built[model] = (shapes(tf.global_variables()),
                            max((k for k in end_points if k.endswith("/output")),
                                key=lambda k: int(k.split("_")[1].split("/")[0])),
                            end_points)
    variables, last, end_points = built[name]
    assert variables == built[SMALL_INPUT[name]][0]
    assert end_points[last].shape.as_list()[1:3] == [4, 4]
    assert built[SMALL_INPUT[name]][2][last].shape.as_list()[1:3] == [1, 1]
    info = nets_factory.get_model_info(name)
    assert (info.default_image_size, info.default_eval_image_size, info.size_multiple,
            info.preprocessing_name) == (32, 32, 8, "cifar")


def test_depth_multiplier_rules():
    """MnasNet's head stays at 1280 (its source does not scale it); EfficientNetV2's
    and V3's rows scale; V3's finegrain keeps only the last row."""
    from nets import mnasnet
    from nets.mobilenet import mobilenet_v3

    def scaled(row):
        params = dict(row.params)  # the rules edit in place, as TF-Slim's
        row.multiplier_func(params, 0.5)
        return params["num_outputs"]
    assert scaled(mnasnet.MNASNET_A1["spec"][-1]) == 1280
    assert scaled(efficientnet_v2.EFFICIENTNET_V2_B0["spec"][-1]) == 640
    fine = builder.keep_last_depth(mobilenet_v3.V3_LARGE)["spec"]
    assert (scaled(fine[-1]), scaled(fine[-3])) == (1280, 480)


# ----------------------------------------------------------------------- MobileNetV3

def test_mobilenet_v3_large_matches_tf_slim_checkpoint():
    """Built at 1000 classes (the published parameter count's); TF-Slim's checkpoints
    have 1001, which changes only the Logits shapes."""
    got = facts("mobilenet_v3_large")
    assert got.shapes == expected_v3_large_variables(num_classes=1000)
    assert len(got.shapes) == 266
    # Spot checks a reader can hold against TF-Slim's checkpoint listing.
    shape = got.shapes.get
    assert shape("MobilenetV3/expanded_conv_3/squeeze_excite/Conv/weights") == [1, 1, 72, 24]
    assert shape("MobilenetV3/expanded_conv_3/squeeze_excite/Conv_1/biases") == [72]
    assert shape("MobilenetV3/expanded_conv/depthwise/depthwise_weights") == [3, 3, 16, 1]
    assert shape("MobilenetV3/expanded_conv/expand/weights") is None
    assert shape("MobilenetV3/Conv_2/biases") == [1280]
    assert shape("MobilenetV3/Conv_2/BatchNorm/gamma") is None
    assert got.end_points["layer_17"] == [1, 7, 7, 960]
    assert got.end_points["layer_19"] == [1, 1, 1, 1280]


@pytest.mark.parametrize("name, total, head, last_layer", [
    ("mobilenet_v3_small", 210, [1, 1, 576, 1024], "layer_15"),
    ("mobilenet_v3_large_075", 266, [1, 1, 720, 1280], "layer_19"),
    ("mobilenet_v3_large_minimalistic", 234, [1, 1, 960, 1280], "layer_19"),
])
def test_mobilenet_v3_variants(name, total, head, last_layer):
    """Small (TF-Slim's layer_15), 0.75 keeps Conv_2 at 1280, minimalistic loses the
    squeeze-excite variables and the 5x5 kernels but keeps every other name."""
    got = facts(name)
    assert len(got.shapes) == total
    assert got.shapes["MobilenetV3/Conv_2/weights"] == head
    assert got.end_points[last_layer] == [1, 1, 1, head[3]]
    if name.endswith("minimalistic"):
        names = set(got.shapes)
        assert not [n for n in names if "squeeze_excite" in n]
        assert set(tuple(s[:2]) for n, s in got.shapes.items()
                   if n.endswith("depthwise_weights")) == {(3, 3)}
        assert names == set(n for n in expected_v3_large_variables()
                            if "squeeze_excite" not in n)


# ----------------------------------------------------------------------- blocks

def test_block_strings_read_like_the_sources():
    rows = builder.block_rows(["r2_k5_s22_e6_i16_o24_se0.25",
                               "r1_k3_s1_e1_i24_o24_c1_noskip"])
    assert [r.op for r in rows] == [blocks.expanded_conv] * 2 + [blocks.fused_expanded_conv]
    assert [r.params["stride"] for r in rows] == [2, 1, 1]
    first = rows[0].params
    assert (first["num_outputs"], first["kernel_size"], first["residual"]) == (
        24, (5, 5), True)
    assert first["expansion_size"](num_inputs=16) == 96
    assert not rows[2].params["residual"]
    assert "expansion_transform" not in rows[2].params
    with pytest.raises(ValueError):
        builder.block_rows(["r1_k3_s1_e1_o24_x7"])


def test_fused_and_squeeze_from_input_blocks():
    """Fused-MBConv: kxk strided expand, no depthwise; without expansion the kxk conv
    is the projection.  se0.25 squeezes to a quarter of the block's input depth."""
    with tf.Graph().as_default():
        x = tf.zeros([2, 16, 16, 24])
        block = do_not_convert(blocks.expanded_conv)
        fused_block = do_not_convert(blocks.fused_expanded_conv)
        with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                            normalizer_fn=slim.batch_norm, activation_fn=blocks.swish):
            fused = fused_block(x, 48, expansion_size=96, stride=2, scope="fused")
            single = fused_block(x, 24, expansion_size=24, scope="single")
            se = block(x, 32, expansion_size=144, scope="se",
                       expansion_transform=blocks.squeeze_excite_transform(
                           input_ratio=0.25))
        got = shapes(tf.trainable_variables())
    assert fused.get_shape().as_list() == [2, 8, 8, 48]
    assert single.get_shape().as_list() == [2, 16, 16, 24]
    assert got["fused/expand/weights"] == [3, 3, 24, 96]
    assert got["fused/project/weights"] == [1, 1, 96, 48]
    assert got["single/project/weights"] == [3, 3, 24, 24]
    assert not [n for n in got if n.startswith(("fused/depthwise", "single/expand"))]
    assert got["se/squeeze_excite/Conv/weights"] == [1, 1, 144, 6]
    assert se.get_shape().as_list() == [2, 16, 16, 32]


def test_activations():
    x = np.array([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0], np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        got = sess.run([blocks.hard_sigmoid(x), blocks.hard_swish(x),
                        blocks.swish(x)])
    np.testing.assert_allclose(got[0], np.clip(x + 3, 0, 6) / 6, rtol=1e-6)
    np.testing.assert_allclose(got[1], x * np.clip(x + 3, 0, 6) / 6, rtol=1e-6)
    np.testing.assert_allclose(got[2], x / (1 + np.exp(-x)), rtol=1e-5)


# ----------------------------------------------------------------------- stochastic depth

def test_drop_path_rates_rise_linearly_over_blocks():
    rates = builder._drop_path_rates(efficientnet_v2.EFFICIENTNET_V2_B0["spec"], 0.2)
    blocks = sorted(rates)
    assert len(blocks) == 21 and blocks[0] == 1  # row 0 is the stem
    assert rates[blocks[0]] == 0.0
    np.testing.assert_allclose([rates[i] for i in blocks], 0.2 * np.arange(21) / 21.0)
    assert builder._drop_path_rates(efficientnet_v2.EFFICIENTNET_V2_B0["spec"], 0) == {}


# A small table read by the same builder: a fused stage with residuals, an SE stage.
TINY = builder.conv_defs(
    defaults={(slim.conv2d, slim.separable_conv2d): {"activation_fn": blocks.swish}},
    spec=[builder.op(blocks.conv_bn_act, stride=2, num_outputs=8)]
    + builder.block_rows(["r3_k3_s1_e2_i8_o8_c1", "r2_k3_s2_e4_i8_o16_se0.25"]))


def _two_runs(is_training, drop_path_rate):
    batch = np.random.RandomState(2).rand(4, 32, 32, 3).astype(np.float32)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        images = tf.placeholder(tf.float32, [4, 32, 32, 3])
        with slim.arg_scope(builder.training_scope(is_training=is_training,
                                                   dropout_keep_prob=1.0)):
            logits, _ = do_not_convert(builder.mobilenet)(
                images, num_classes=5, conv_defs=TINY, scope="Tiny",
                drop_path_rate=drop_path_rate)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return [sess.run(logits, {images: batch}) for _ in range(2)]


def test_drop_path_only_while_training():
    first, second = _two_runs(is_training=True, drop_path_rate=0.5)
    assert not np.allclose(first, second)
    first, second = _two_runs(is_training=True, drop_path_rate=0.0)
    np.testing.assert_array_equal(first, second)
    first, second = _two_runs(is_training=False, drop_path_rate=0.5)
    np.testing.assert_array_equal(first, second)


def test_drop_path_keeps_the_expectation():
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.ones([20000, 1, 1, 2])
        with slim.arg_scope([blocks.drop_path], is_training=True):
            kept = blocks.drop_path(x, 0.3)
        out = sess.run(kept)
        assert blocks.drop_path(x, 0.3) is x  # eval: identity, no ops
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.7], rtol=1e-6)
    assert np.all(out[:, :, :, 0] == out[:, :, :, 1])  # one draw per example
    assert abs(out.mean() - 1.0) < 0.03


# ----------------------------------------------------------------------- gradient clipping

class _RecordingOptimizer(object):
    """Stands for a device wrapper (loss scaling, all-reduce): records which halves
    of it model_fn calls."""

    def __init__(self, optimizer):
        self.optimizer, self.calls = optimizer, []

    def compute_gradients(self, *args, **kwargs):
        self.calls.append("compute_gradients")
        return self.optimizer.compute_gradients(*args, **kwargs)

    def apply_gradients(self, *args, **kwargs):
        self.calls.append("apply_gradients")
        return self.optimizer.apply_gradients(*args, **kwargs)

    def minimize(self, *args, **kwargs):
        self.calls.append("minimize")
        return self.optimizer.minimize(*args, **kwargs)


@pytest.mark.parametrize("clip_norm, expected", [(None, [30.0, 40.0]), (5.0, [3.0, 4.0])])
def test_clip_gradient_norm_through_the_wrapper(clip_norm, expected):
    with tf.Graph().as_default():
        weights = tf.Variable([0.0, 0.0])
        unused = tf.Variable(1.0)
        loss = tf.reduce_sum(weights * tf.constant([-30.0, -40.0])) + 0 * tf.stop_gradient(unused)
        step = tf.train.get_or_create_global_step()
        wrapper = _RecordingOptimizer(tf.train.GradientDescentOptimizer(1.0))
        train_op = optimization.minimize(wrapper, loss, step, [weights, unused], clip_norm)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(train_op)
            np.testing.assert_allclose(sess.run(weights), expected, rtol=1e-5)
            assert sess.run(step) == 1
    assert wrapper.calls == (["minimize"] if clip_norm is None
                             else ["compute_gradients", "apply_gradients"])


# ----------------------------------------------------------------------- the pipeline

@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("family_ds")), num_classes=3,
                              per_class=4, size=32)


def train_env(dataset_dir, train_dir, **overrides):
    values = dict(dataset_dir=dataset_dir, train_dir=str(train_dir), train_image_size=32,
                  batch_size=4, max_train_steps=2, learning_rate=0.01, bn_decay=0.9,
                  log_every_n_steps=1, seed=4, data_threads=1, device="cpu")
    values.update(overrides)
    return env_lib.load_env(flag_values(**values), environ={})


def test_env_defaults_follow_the_model(tiny_dataset, tmp_path):
    env = train_env(tiny_dataset, tmp_path, model_name="efficientnet_v2_s",
                    train_image_size=None)
    assert (env.image_size, env.eval_image_size, env.drop_path_rate) == (300, 384, 0.2)
    assert env.restore_exclude == ("EfficientNetV2/Logits/",)
    assert env.clip_gradient_norm is None
    env = train_env(tiny_dataset, tmp_path, model_name="efficientnet_v2_b0",
                    drop_path_rate=0.1, clip_gradient_norm=5.0, freeze_backbone=True)
    assert (env.image_size, env.eval_image_size) == (32, 32)
    assert (env.drop_path_rate, env.clip_gradient_norm) == (0.1, 5.0)
    assert env.trainable_scopes == ("EfficientNetV2/Logits",)
    env = train_env(tiny_dataset, tmp_path, model_name="mobilenet_v3_small",
                    train_image_size=None)
    assert (env.image_size, env.eval_image_size, env.drop_path_rate) == (224, 224, 0.0)
    assert env.restore_exclude == ("MobilenetV3/Logits/",)
    assert env.preprocessing_name == "mobilenet_v3"


def test_estimator_builds_the_network_with_the_env_drop_path(tiny_dataset, tmp_path,
                                                             monkeypatch):
    env = train_env(tiny_dataset, tmp_path, model_name="efficientnet_v2_b0")
    seen = {}
    monkeypatch.setattr(nets_factory, "get_network_fn",
                        lambda *args, **kwargs: seen.update(kwargs))
    estimator_impl.network_fn(env, True)
    assert seen["drop_path_rate"] == 0.2


@pytest.mark.parametrize("overrides, fragment", [
    (dict(drop_path_rate=1.0), "--drop_path_rate=1.0 must be in [0, 1)"),
    (dict(drop_path_rate=-0.1), "--drop_path_rate"),
    (dict(clip_gradient_norm=0.0), "--clip_gradient_norm=0.0 must be positive"),
    (dict(model_name="mnasnet_a1", train_image_size=48), "multiple of 32"),
])
def test_bad_new_flags(tiny_dataset, tmp_path, overrides, fragment):
    with pytest.raises(UserError) as err:
        train_env(tiny_dataset, tmp_path, **overrides)
    assert fragment in str(err.value)


def test_evaluator_defaults_to_the_model_eval_size(tiny_dataset, tmp_path):
    # --watch: the folder holds no checkpoint yet (a single checkpoint is read at once).
    config = evaluator_config(checkpoint_path=str(tmp_path), dataset_dir=tiny_dataset,
                              model_name="efficientnet_v2_s", watch=True)
    assert config.image_size == 384 and config.preprocessing_name == "efficientnet_v2"


@pytest.mark.slow
@pytest.mark.parametrize("model_name, extra", [
    ("mobilenet_v3_small", {}),
    ("mnasnet_a1", {}),
    ("efficientnet_v2_b0", dict(clip_gradient_norm=5.0)),  # the V2 fine-tune recipe's
])
def test_family_trains_evaluates_and_fine_tunes(model_name, extra, tiny_dataset, tmp_path):
    """2 steps at 32 px -> checkpoint -> the evaluator scores it as a second route does
    (tests/reference_eval) -> fine-tuning it to 5 classes: train.py's warm start (1
    step, whose run records the weights it started from as model.ckpt-0) starts the
    backbone from the checkpoint bit for bit and the head afresh, by the model's default
    --restore_exclude."""
    log = logger_lib.get_logger()
    env = train_env(tiny_dataset, tmp_path / "train", model_name=model_name, **extra)
    checkpoint = train(env, log)
    assert checkpoint.endswith("model.ckpt-2")

    # The evaluator on PNG copies of the 6 validation images (so Pillow reads the same
    # pixels), against logits of a fresh graph restored by a plain Saver (no
    # --moving_average_decay: the raw weights), fed in the evaluator's batches of 4.
    records = reference_eval.png_copy(tiny_dataset, str(tmp_path / "png_records"))
    config = env.eval_config().replace(
        dataset=dataset_factory.get_dataset("auto", records),
        eval_dir=str(tmp_path / "eval"))
    result = Evaluator(config, log).evaluate(checkpoint)
    pixels, labels = reference_eval.read_split(records)
    assert sorted(labels) == [0, 0, 1, 1, 2, 2]
    images = np.stack([reference_eval.eval_image(p, 32, 0.875) for p in pixels])
    logits = reference_eval.logits(model_name, 3, checkpoint, images, use_ema=False,
                                   batch_size=4)
    # A hit or miss decided by less than 1e-4 of the logits' size is left open (the
    # routes agree to the bit in test_evaluator). Sizes differ: after 2 steps the
    # moving statistics are far from the batches', and MnasNet's ReLU layers (no cap
    # at 6) carry that to logits of ~1e12 at inference.
    scale = max(1.0, np.abs(logits).max())
    expected = reference_eval.scores(logits, labels, tolerance=1e-4 * scale)
    assert result["images"] == 6 and result["ema"] is False
    low, high = expected["top1_range"]
    assert low <= result["top1"] <= high, (result["top1"], expected)
    assert result["top5"] == 1.0  # 3 classes: every label is within the top 5
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)

    tuned_dir = tmp_path / "tuned"
    tuned = train_env(tiny_dataset, tuned_dir, model_name=model_name, num_classes=5,
                      restore_path=str(tmp_path / "train"), max_train_steps=1, **extra)
    assert tuned.restore_checkpoint == checkpoint
    train(tuned, log)
    source = tf.train.load_checkpoint(checkpoint)
    started = tf.train.load_checkpoint(str(tuned_dir / "model.ckpt-0"))
    scope = tuned.model.scope
    head = scope + "/Logits/Conv2d_1c_1x1/"
    model_names = sorted(n for n in started.get_variable_to_shape_map()
                         if n.startswith(scope + "/") and not n.endswith("/Momentum"))
    backbone = [n for n in model_names if not n.startswith(head)]
    assert [n for n in model_names if n.startswith(head)] == [head + "biases",
                                                              head + "weights"]
    assert backbone == sorted(n for n in source.get_variable_to_shape_map()
                              if n.startswith(scope + "/") and not n.endswith("/Momentum")
                              and not n.startswith(head))
    for name in backbone:
        np.testing.assert_array_equal(started.get_tensor(name), source.get_tensor(name),
                                      err_msg=name)
    # The head: 5 classes, initialised as the model's arg_scope says (zero biases,
    # weights from a normal of stddev 0.09 truncated at two deviations: sample std
    # 0.09 x 0.880 = 0.079), not taken from anywhere.
    biases, weights = started.get_tensor(head + "biases"), started.get_tensor(head + "weights")
    assert biases.shape == (5,) and weights.shape[-1] == 5
    assert source.get_tensor(head + "weights").shape[-1] == 3
    np.testing.assert_array_equal(biases, np.zeros(5))
    assert np.abs(weights).max() <= 0.18 and abs(weights.std() - 0.079) < 0.005
    # The optimizer starts afresh: its slots are zeros, not the checkpoint's.
    slots = [n for n in started.get_variable_to_shape_map() if n.endswith("/Momentum")]
    assert slots and all(not started.get_tensor(n).any() for n in slots)
