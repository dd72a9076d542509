"""TF-Slim's public MobileNet API as its users write it: output_stride (atrous), the
depth_multiplier arg_scope, mobilenet_base, the refused ``multiplier=``, op()'s
keyword, the variant partials.

Expected shapes and depths are literals worked out from the tables by hand (strides
and depths of TF-Slim's V2_DEF, google/automl's B0 block strings) or from TF-Slim's
rounding rule written out below, not from nets/.
"""
import functools

import numpy as np
import pytest

from nets import blocks, builder, efficientnet_v2, mnasnet, nets_factory
from nets.mobilenet import mobilenet, mobilenet_v2, mobilenet_v3
from utils.tf_compat import do_not_convert, slim, tf

SIZE = 64

# As TF-Slim's users build (training_scope(is_training=False) for inference); its
# batch-norm settings also keep slim on its fast fused batch norm.
inference_scope = functools.partial(slim.arg_scope,
                                    builder.training_scope(is_training=False))


def slim_make_divisible(value, divisor, min_value):
    """TF-Slim's _make_divisible, written out again here."""
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


# ----------------------------------------------------------------------- output_stride

# Spatial side of layer_1 .. layer_N at 64 px.  MobileNetV2 strides 2 at layers 1, 3,
# 5, 8 and 15; EfficientNetV2-B0 at its stem and the first rows of its s2 blocks
# (layers 3, 5, 7, 15).  Past the target stride every row keeps the side.
V2_SIDES = {
    None: [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2],
    16: [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4],
    8: [32, 32, 16, 16, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8],
}
V2_SIDES[32] = V2_SIDES[None]
B0_SIDES = {
    None: [32, 32, 16, 16, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4] + [2] * 9,
    16: [32, 32, 16, 16, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4] + [4] * 9,
    8: [32, 32, 16, 16, 8, 8] + [8] * 17,
}
B0_SIDES[32] = B0_SIDES[None]
SIDES = {"mobilenet_v2": V2_SIDES, "efficientnet_v2_b0": B0_SIDES}
# The feature map: MobileNetV2 1.0 ends in Conv_1 (1280; layer_18 is the 320-deep
# last block), B0 at depth multiplier 0.5 in its 1x1 head (640).
DEPTHS = {"mobilenet_v2": 1280, "efficientnet_v2_b0": 640}


def _layers(end_points):
    count = sum(1 for k in end_points if k.startswith("layer_") and "/" not in k)
    return [end_points["layer_%d" % i] for i in range(1, count + 1)]


@functools.lru_cache(maxsize=None)
def features(family, output_stride, use_explicit_padding):
    """Builds a family's pre-pooling features once (MobileNetV2 through TF-Slim's
    mobilenet_v2.mobilenet_base, B0 through the registry with base_only); returns
    (graph, images, net, end_points)."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [2, SIZE, SIZE, 3])
        if family == "mobilenet_v2":
            with inference_scope():
                net, end_points = do_not_convert(mobilenet_v2.mobilenet_base)(
                    images, output_stride=output_stride,
                    use_explicit_padding=use_explicit_padding)
        else:
            network_fn = nets_factory.get_network_fn(
                family, 0, depth_multiplier=0.5, base_only=True,
                output_stride=output_stride, use_explicit_padding=use_explicit_padding)
            net, end_points = network_fn(images)
    return graph, images, net, end_points


@pytest.mark.slow
@pytest.mark.parametrize("family", ["mobilenet_v2", "efficientnet_v2_b0"])
@pytest.mark.parametrize("output_stride, use_explicit_padding", [
    (None, False), (32, True), (16, False), (16, True), (8, False), (8, True)])
def test_output_stride_feature_shapes(family, output_stride, use_explicit_padding):
    _, _, net, end_points = features(family, output_stride, use_explicit_padding)
    sides = SIDES[family][output_stride]
    side = sides[-1]
    assert net.get_shape().as_list() == [2, side, side, DEPTHS[family]]
    assert [t.get_shape().as_list()[1] for t in _layers(end_points)] == sides


def test_output_stride_atrous_rates_and_explicit_padding():
    """Output stride 8 on MobileNetV2: the running stride is 8 after layer_5, so
    layer_8 (expanded_conv_6), which would stride, runs at stride 1 undilated,
    layers 9-15 dilated 2 (layer_15 would stride too: the rate doubles after it),
    layers 16-18 dilated 4.  Explicit padding pads each depthwise input for its
    dilated 3x3 (1, 2 or 4 a side), and the network runs."""
    graph, images, net, _ = features("mobilenet_v2", 8, True)
    padded = {}
    for block in (3, 5, 6, 7, 13, 14, 16):  # expanded_conv_<block> is layer_<block + 2>
        pad = graph.get_operation_by_name("MobilenetV2/expanded_conv_%d/Pad" % block)
        padded[block] = pad.outputs[0].get_shape().as_list()[1]
    assert padded == {3: 16 + 2, 5: 8 + 2, 6: 8 + 2, 7: 8 + 4, 13: 8 + 4, 14: 8 + 8,
                      16: 8 + 8}
    with graph.as_default(), tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out = sess.run(net, {images: np.random.RandomState(0).rand(2, SIZE, SIZE, 3)})
    assert out.shape == (2, 8, 8, 1280) and np.all(np.isfinite(out))


def test_output_stride_rule_row_by_row():
    """(stride, rate) given to each V2 row; 1x1 convs get no rate."""
    def given(output_stride):
        strides = builder._OutputStride(output_stride)
        rows = []
        for row in mobilenet_v2.V2_DEF["spec"]:
            params = dict(row.params)
            strides.apply(params)
            rows.append((params.get("stride", 1), params.get("rate", 1)))
        return rows
    base = [(2, 1), (1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (1, 1), (2, 1)] + [(1, 1)] * 6
    assert given(None) == given(32) == base + [(2, 1)] + [(1, 1)] * 4
    assert given(16) == base + [(1, 1)] + [(1, 2)] * 3 + [(1, 1)]
    assert given(8) == base[:7] + [(1, 1)] + [(1, 2)] * 7 + [(1, 4)] * 3 + [(1, 1)]
    with pytest.raises(ValueError, match="output_stride"):
        with tf.Graph().as_default():
            mobilenet.mobilenet_base(tf.zeros([1, 32, 32, 3]), mobilenet_v2.V2_DEF,
                                     output_stride=3)


def test_deeplab_features_at_output_stride_16():
    """DeepLab's use: the last 320-deep block at stride 16."""
    with tf.Graph().as_default(), inference_scope():
        net, end_points = do_not_convert(mobilenet_v2.mobilenet_base)(
            tf.zeros([1, SIZE, SIZE, 3]), output_stride=16, final_endpoint="layer_18")
    assert net.get_shape().as_list() == [1, 4, 4, 320]
    assert "layer_19" not in end_points
    assert net.op.name == "MobilenetV2/expanded_conv_16/output"


# ----------------------------------------------------------------------- mobilenet_base

def test_mobilenet_base_returns_pre_pooling_features():
    graph, _, net, end_points = features("mobilenet_v2", None, False)
    assert net is end_points["layer_19"]
    assert net.get_shape().as_list() == [2, 2, 2, 1280]
    assert not [k for k in end_points if k in ("global_pool", "Logits", "Predictions")]
    with graph.as_default():
        assert not [v for v in tf.global_variables() if "Logits" in v.op.name]


def test_mobilenet_v3_base_and_generic_base():
    """V3's table holds its own pooling row (TF-Slim's too): layer_17 is the last
    feature map, layer_19 (Conv_2) the base's output.  The generic builder's
    mobilenet_base takes TF-Slim's ``multiplier``."""
    with tf.Graph().as_default(), inference_scope():
        images = tf.zeros([1, SIZE, SIZE, 3])
        net, end_points = do_not_convert(mobilenet_v3.mobilenet_base)(images)
        small, _ = do_not_convert(mobilenet.mobilenet_base)(
            images, mobilenet_v2.V2_DEF, multiplier=0.35, final_endpoint="layer_3",
            scope="Generic")
    assert end_points["layer_17"].get_shape().as_list() == [1, 2, 2, 960]
    assert net.get_shape().as_list() == [1, 1, 1, 1280]
    assert small.get_shape().as_list() == [1, 16, 16, 8]  # 24 * 0.35 -> 8


# ----------------------------------------------------------------------- depth multiplier

V2_DEPTHS = [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320,
             1280]


def _v2_depths(scope, **kwargs):
    """Output depth of every layer of MobileNetV2 (depth multiplier 0.5) built in the
    caller's graph and arg_scope."""
    _, end_points = do_not_convert(mobilenet_v2.mobilenet)(
        tf.zeros([1, 32, 32, 3]), num_classes=10, depth_multiplier=0.5, scope=scope,
        **kwargs)
    return [t.get_shape().as_list()[3] for t in _layers(end_points)]


@pytest.mark.slow
def test_depth_multiplier_arg_scope():
    """TF-Slim's way to set the rounding: an arg_scope on mobilenet.depth_multiplier;
    mobilenet_v2.mobilenet's own min_depth / divisible_by win when given."""
    with tf.Graph().as_default(), inference_scope():
        default = _v2_depths("default")
        with slim.arg_scope((mobilenet.depth_multiplier,), min_depth=16, divisible_by=16):
            scoped = _v2_depths("scoped")
            given = _v2_depths("given", min_depth=8, divisible_by=8)
    assert scoped == [slim_make_divisible(d * 0.5, 16, 16) for d in V2_DEPTHS]
    assert scoped == [16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 80, 80, 80,
                      160, 640]
    assert default == given == [slim_make_divisible(d * 0.5, 8, 8) for d in V2_DEPTHS]
    assert default[:3] == [16, 8, 16]


@pytest.mark.slow
def test_finegrain_matches_tf_slim():
    """V2 (TF-Slim's rule): the last depth becomes 1280 / 0.5, then rounds like any
    row, so divisible_by 24 gives 1272; V3: the last row ignores the multiplier."""
    with tf.Graph().as_default(), inference_scope():
        with slim.arg_scope((mobilenet.depth_multiplier,), divisible_by=24, min_depth=24):
            v2 = _v2_depths("v2", finegrain_classification_mode=True)
            _, v3 = do_not_convert(mobilenet_v3.small)(
                tf.zeros([1, 32, 32, 3]), depth_multiplier=0.5,
                finegrain_classification_mode=True)
        plain = _v2_depths("plain", finegrain_classification_mode=True)
    assert v2[-1] == slim_make_divisible(1280 / 0.5 * 0.5, 24, 24) == 1272
    assert v2[-2] == slim_make_divisible(320 * 0.5, 24, 24)
    assert v3["layer_15"].get_shape().as_list() == [1, 1, 1, 1024]
    assert v3["layer_13"].get_shape().as_list()[3] == slim_make_divisible(576 * 0.5, 24, 24)
    assert plain[-1] == 1280


def test_multiplier_is_refused_by_the_families():
    with tf.Graph().as_default():
        images = tf.zeros([1, 32, 32, 3])
        for model_fn in (mobilenet_v2.mobilenet, mobilenet_v3.mobilenet, mnasnet.mnasnet,
                         efficientnet_v2.efficientnet_v2):
            with pytest.raises(ValueError, match="depth_multiplier"):
                model_fn(images, multiplier=0.5)
        assert not tf.global_variables()


def test_op_takes_tf_slim_multiplier_keyword():
    for keyword in ("multiplier_transorm", "multiplier_transform", "multiplier_func"):
        row = mobilenet.op(blocks.conv_bn_act, num_outputs=40,
                           **{keyword: builder.fixed_depth})
        assert row.multiplier_func is builder.fixed_depth
        assert row.params == {"num_outputs": 40}
    row = mobilenet.op(blocks.conv_bn_act, num_outputs=40)
    assert row.multiplier_func is mobilenet.depth_multiplier
    params = dict(row.params)
    row.multiplier_func(params, 0.5)  # in place, as TF-Slim's
    assert params == {"num_outputs": 24}


# ----------------------------------------------------------------------- variants

def test_variants_are_one_table():
    """TF-Slim's partials and the registry come from each family's VARIANTS rows (the
    32-px variants included), and carry the row's training size."""
    families = (mobilenet_v2, mobilenet_v3, mnasnet, efficientnet_v2)
    names = [n for family in families for n in family.VARIANTS]
    assert sorted(names) == nets_factory.model_names()
    assert mobilenet_v2.mobilenet_v2_140.keywords == {"depth_multiplier": 1.4}
    assert mobilenet_v2.mobilenet_v2_035.keywords == {
        "depth_multiplier": 0.35, "finegrain_classification_mode": True}
    assert mobilenet_v2.mobilenet_v2_075.__name__ == "mobilenet"
    assert mobilenet_v2.mobilenet_v2_075.default_image_size == 224
    assert mobilenet_v2.MODELS["mobilenet_v2_cifar"].default_image_size == 32
    assert efficientnet_v2.efficientnet_v2_s.default_image_size == 300
    assert mobilenet_v3.small.keywords == {"conv_defs": mobilenet_v3.V3_SMALL}
    assert mobilenet_v3.large_minimalistic.keywords == {
        "conv_defs": mobilenet_v3.V3_LARGE_MINIMALISTIC}
    edge = mobilenet_v3.wrapped_partial(mobilenet_v3.mobilenet,
                                        new_defaults={"scope": "Edge"},
                                        conv_defs=mobilenet_v3.V3_SMALL)
    assert edge.keywords == {"scope": "Edge", "conv_defs": mobilenet_v3.V3_SMALL}
