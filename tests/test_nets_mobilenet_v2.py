"""MobileNetV2: TF-Slim checkpoint names/shapes, published sizes, end_points, modes.

The expected variable table below is written from TF-Slim's V2_DEF
(research/slim/nets/mobilenet/mobilenet_v2.py), not from nets/.
"""
import numpy as np
import pytest

from nets import blocks, builder, nets_factory
from utils.errors import UserError
from utils.tf_compat import do_not_convert, slim, tf

ALL_NAMES = ["mobilenet_v2", "mobilenet_v2_035", "mobilenet_v2_050", "mobilenet_v2_075",
             "mobilenet_v2_130", "mobilenet_v2_140"]

# MobileNetV2 1.0: (input depth, expanded depth or None, output depth, stride) of
# expanded_conv, expanded_conv_1 .. expanded_conv_16.
V2_BLOCKS = [
    (32, None, 16, 1),
    (16, 96, 24, 2), (24, 144, 24, 1),
    (24, 144, 32, 2), (32, 192, 32, 1), (32, 192, 32, 1),
    (32, 192, 64, 2), (64, 384, 64, 1), (64, 384, 64, 1), (64, 384, 64, 1),
    (64, 384, 96, 1), (96, 576, 96, 1), (96, 576, 96, 1),
    (96, 576, 160, 2), (160, 960, 160, 1), (160, 960, 160, 1),
    (160, 960, 320, 1),
]

# Published TF-Slim figures at 1001 classes (conv weights + biases; the published
# table leaves out batch-norm gamma/beta).
PUBLISHED_PARAMS = {"mobilenet_v2": 3.47e6, "mobilenet_v2_140": 6.06e6,
                    "mobilenet_v2_130": 5.34e6, "mobilenet_v2_075": 2.61e6,
                    "mobilenet_v2_050": 1.95e6, "mobilenet_v2_035": 1.66e6}
CONV_1_DEPTH = {"mobilenet_v2": 1280, "mobilenet_v2_140": 1792, "mobilenet_v2_130": 1664,
                "mobilenet_v2_075": 1280, "mobilenet_v2_050": 1280,
                "mobilenet_v2_035": 1280}


def expected_v2_variables(num_classes=1001):
    table = {}

    def conv_bn(scope, shape):
        table[scope + "/" + ("depthwise_weights" if shape[3] == 1 and "depthwise" in scope
                             else "weights")] = shape
        depth = shape[2] if scope.endswith("depthwise") else shape[3]
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            table[scope + "/BatchNorm/" + name] = [depth]

    conv_bn("MobilenetV2/Conv", [3, 3, 3, 32])
    for i, (c_in, c_mid, c_out, _) in enumerate(V2_BLOCKS):
        block = "MobilenetV2/expanded_conv" + ("_%d" % i if i else "")
        if c_mid is not None:
            conv_bn(block + "/expand", [1, 1, c_in, c_mid])
        else:
            c_mid = c_in
        conv_bn(block + "/depthwise", [3, 3, c_mid, 1])
        conv_bn(block + "/project", [1, 1, c_mid, c_out])
    conv_bn("MobilenetV2/Conv_1", [1, 1, 320, 1280])
    table["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] = [1, 1, 1280, num_classes]
    table["MobilenetV2/Logits/Conv2d_1c_1x1/biases"] = [num_classes]
    return table


def build(name, size, num_classes=1001, is_training=False, batch=1, **kwargs):
    """Builds ``name`` in the current graph; returns (images, logits, end_points)."""
    images = tf.placeholder(tf.float32, [batch, size, size, 3], name="images")
    network_fn = nets_factory.get_network_fn(name, num_classes, is_training=is_training,
                                             **kwargs)
    logits, end_points = network_fn(images)
    return images, logits, end_points


def shapes(variables):
    return dict((v.op.name, v.get_shape().as_list()) for v in variables)


def test_variables_match_tf_slim_checkpoint():
    expected = expected_v2_variables()
    assert len(expected) == 262
    with tf.Graph().as_default():
        build("mobilenet_v2", 224)
        variables = tf.global_variables()
        assert len(variables) == 262
        assert shapes(variables) == expected
        trainable = shapes(tf.trainable_variables())
    assert not [n for n in trainable if "moving_" in n]
    assert len(trainable) == 262 - 2 * 52


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_NAMES)
def test_param_counts_match_published(name):
    with tf.Graph().as_default():
        build(name, 224)
        variables = tf.trainable_variables()
        weights = sum(int(np.prod(v.get_shape().as_list())) for v in variables
                      if "/BatchNorm/" not in v.op.name)
        conv_1 = shapes(variables)["MobilenetV2/Conv_1/weights"]
    assert abs(weights - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.005, weights
    assert conv_1[3] == CONV_1_DEPTH[name]


def expected_end_point_shapes(size, num_classes=1001):
    side = size // 2
    expected = {"layer_1": [1, side, side, 32]}
    for i, (c_in, c_mid, c_out, stride) in enumerate(V2_BLOCKS):
        layer = "layer_%d" % (i + 2)
        if c_mid is not None:
            expected[layer + "/expansion_output"] = [1, side, side, c_mid]
        else:
            c_mid = c_in
        side //= stride
        expected[layer + "/depthwise_output"] = [1, side, side, c_mid]
        expected[layer + "/output"] = [1, side, side, c_out]
        expected[layer] = [1, side, side, c_out]
    expected["layer_19"] = [1, side, side, 1280]
    expected["global_pool"] = [1, 1, 1, 1280]
    expected["Logits"] = [1, num_classes]
    expected["Predictions"] = [1, num_classes]
    return expected


@pytest.mark.slow
@pytest.mark.parametrize("size", [224, 64])
def test_end_points(size):
    with tf.Graph().as_default():
        _, logits, end_points = build("mobilenet_v2", size)
        got = dict((k, v.get_shape().as_list()) for k, v in end_points.items())
        assert end_points["Logits"] is logits
        assert end_points["layer_2/output"].op.name == "MobilenetV2/expanded_conv/output"
        assert (end_points["layer_18/depthwise_output"].op.name
                == "MobilenetV2/expanded_conv_16/depthwise_output")
    assert got == expected_end_point_shapes(size)
    assert sum(1 for k in got if "/" not in k and k.startswith("layer_")) == 19


def test_forward_pass_tiny_network():
    with tf.Graph().as_default():
        images, logits, end_points = build("mobilenet_v2", 32, num_classes=5,
                                           is_training=True, batch=3,
                                           depth_multiplier=0.1, min_depth=4)
        assert logits.get_shape().as_list() == [3, 5]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out, probs = sess.run([logits, end_points["Predictions"]],
                                  {images: np.random.RandomState(0).rand(3, 32, 32, 3)})
    assert out.shape == (3, 5) and np.all(np.isfinite(out))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_num_classes_zero_returns_pooled_features():
    with tf.Graph().as_default():
        _, features, end_points = build("mobilenet_v2_035", 32, num_classes=0)
        assert features.get_shape().as_list() == [1, 1, 1, 1280]
        assert "Logits" not in end_points
        assert not [v for v in tf.global_variables() if "/Logits/" in v.op.name]


def source_variables(tensor):
    """Names of the variables a tensor is computed from (walking the graph back)."""
    found, seen, todo = set(), set(), [tensor.op]
    while todo:
        operation = todo.pop()
        if operation.name in seen:
            continue
        seen.add(operation.name)
        if operation.type in ("VariableV2", "VarHandleOp", "Variable"):
            found.add(operation.name)
        todo.extend(t.op for t in operation.inputs)
    return found


@pytest.mark.slow
def test_weight_decay_on_conv_weights_not_depthwise():
    with tf.Graph().as_default():
        build("mobilenet_v2_035", 32, num_classes=7, is_training=True)
        losses = tf.losses.get_regularization_losses()
        regularized = set()
        for loss in losses:
            regularized.update(source_variables(loss))
        names = [v.op.name for v in tf.global_variables()]
    conv_weights = set(n for n in names if n.endswith("/weights"))
    assert len(conv_weights) == 1 + 16 + 17 + 1 + 1
    assert len(losses) == len(conv_weights)
    assert regularized == conv_weights
    assert not [n for n in regularized if "depthwise" in n]


@pytest.mark.slow
def test_batch_norm_modes():
    """Training: batch statistics and moving-average update ops; eval: moving
    statistics (an image's logits do not depend on the rest of its batch)."""
    rng = np.random.RandomState(1)
    batch = rng.rand(4, 32, 32, 3).astype(np.float32)
    results = {}
    for is_training in (False, True):
        with tf.Graph().as_default():
            tf.set_random_seed(3)
            images = tf.placeholder(tf.float32, [None, 32, 32, 3])
            network_fn = nets_factory.get_network_fn(
                "mobilenet_v2", 4, is_training=is_training, dropout_keep_prob=1.0,
                depth_multiplier=0.1, min_depth=4)
            logits, _ = network_fn(images)
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                full = sess.run(logits, {images: batch})
                alone = sess.run(logits, {images: batch[:2]})
        results[is_training] = (len(update_ops), full, alone)
    eval_updates, full, alone = results[False]
    assert eval_updates == 0
    np.testing.assert_allclose(full[:2], alone, rtol=1e-4, atol=1e-5)
    train_updates, full, alone = results[True]
    assert train_updates >= 52
    assert not np.allclose(full[:2], alone, rtol=1e-4, atol=1e-5)


def test_unknown_model_name_lists_known_ones():
    for call in (lambda: nets_factory.get_model_info("resnet_50"),
                 lambda: nets_factory.get_network_fn("resnet_50", 10),
                 lambda: nets_factory.check_image_size("resnet_50", 224)):
        with pytest.raises(UserError) as info:
            call()
        assert "resnet_50" in str(info.value)
        for name in ALL_NAMES:
            assert name in str(info.value)


@pytest.mark.parametrize("size", [50, 16, 0, -32, 33, 100, 224.0, "224", None])
def test_bad_image_sizes(size):
    with pytest.raises(UserError) as info:
        nets_factory.check_image_size("mobilenet_v2", size)
    assert "multiple of 32" in str(info.value)


# Top-1 of TF-Slim's 224-px checkpoints, research/slim/nets/mobilenet/README.md.
PUBLISHED_TOP1 = {"mobilenet_v2": 71.8, "mobilenet_v2_140": 75.0,
                  "mobilenet_v2_130": 74.4, "mobilenet_v2_075": 69.8,
                  "mobilenet_v2_050": 65.4, "mobilenet_v2_035": 60.3}


def test_registry_facts():
    assert set(ALL_NAMES) <= set(nets_factory.model_names())
    for name in ALL_NAMES:
        info = nets_factory.get_model_info(name)
        assert info == nets_factory.ModelInfo(
            name=name, scope="MobilenetV2", default_image_size=224,
            head_scopes=("MobilenetV2/Logits",),
            default_restore_exclude="MobilenetV2/Logits/",
            preprocessing_name="inception", min_image_size=32, size_multiple=32,
            default_eval_image_size=224, default_drop_path_rate=0.0,
            published_top1=PUBLISHED_TOP1[name], published_top1_dataset="ImageNet",
            published_top1_source="TF-Slim research/slim/nets/mobilenet/README.md")
        for size in (32, 64, 96, 224, 256):
            assert nets_factory.check_image_size(name, size) == size
        assert nets_factory.get_network_fn(name, 10).default_image_size == 224


def test_make_divisible_rule():
    assert blocks.make_divisible(32 * 0.35, 8) == 16   # 11.2 -> 8 is >10% down
    assert blocks.make_divisible(24 * 0.5, 8) == 16    # 12 rounds half up
    assert blocks.make_divisible(16 * 0.35, 8) == 8
    assert blocks.make_divisible(320 * 1.4, 8) == 448
    assert blocks.make_divisible(96 * 0.75, 8) == 72
    assert blocks.make_divisible(3.0, 8, min_value=4) == 4
    assert blocks.make_divisible(1280 / 0.35 * 0.35, 8) == 1280


def test_squeeze_excite_hook():
    """The V3-style hook: squeeze-excite gates the depthwise output."""
    with tf.Graph().as_default():
        x = tf.zeros([2, 8, 8, 16])
        with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                            activation_fn=tf.nn.relu):
            out = do_not_convert(blocks.expanded_conv)(
                x, 16, expansion_size=blocks.expand_input_by_factor(4),
                expansion_transform=blocks.squeeze_excite_transform(
                    squeeze_factor=4, gating_fn=tf.sigmoid))
        got = shapes(tf.global_variables())
    assert out.get_shape().as_list() == [2, 8, 8, 16]
    assert got["expanded_conv/squeeze_excite/Conv/weights"] == [1, 1, 64, 16]
    assert got["expanded_conv/squeeze_excite/Conv/biases"] == [16]
    assert got["expanded_conv/squeeze_excite/Conv_1/weights"] == [1, 1, 16, 64]
    assert got["expanded_conv/project/weights"] == [1, 1, 64, 16]


def test_spec_rows_are_data():
    """A new variant is a new table read by the same builder."""
    tiny = builder.conv_defs(
        defaults={(slim.conv2d, slim.separable_conv2d): {"activation_fn": tf.nn.relu6}},
        spec=[builder.op(blocks.conv_bn_act, stride=2, num_outputs=16),
              builder.op(blocks.expanded_conv, stride=2, num_outputs=24),
              builder.op(blocks.expanded_conv, num_outputs=24)])
    with tf.Graph().as_default():
        net, end_points = builder.mobilenet_base(tf.zeros([1, 32, 32, 3]), tiny,
                                                 scope="Tiny")
        names = sorted(v.op.name for v in tf.global_variables() if "BatchNorm" not in
                       v.op.name)
    assert net.get_shape().as_list() == [1, 8, 8, 24]
    assert names == ["Tiny/Conv/weights", "Tiny/expanded_conv/depthwise/depthwise_weights",
                     "Tiny/expanded_conv/expand/weights",
                     "Tiny/expanded_conv/project/weights",
                     "Tiny/expanded_conv_1/depthwise/depthwise_weights",
                     "Tiny/expanded_conv_1/expand/weights",
                     "Tiny/expanded_conv_1/project/weights"]
    assert sorted(end_points) == ["layer_1", "layer_2", "layer_2/depthwise_output",
                                  "layer_2/expansion_output", "layer_2/output",
                                  "layer_3", "layer_3/depthwise_output",
                                  "layer_3/expansion_output", "layer_3/output"]


@pytest.mark.slow
def test_get_network_fn_takes_tf_slims_positional_order():
    """TF-Slim's get_network_fn(name, num_classes, weight_decay, is_training): code
    written against it passes them positionally."""
    with tf.Graph().as_default():
        nets_factory.get_network_fn("mobilenet_v2_035", 10, 0.0, True)(
            tf.zeros([1, 32, 32, 3]))
        assert tf.get_collection(tf.GraphKeys.UPDATE_OPS)  # batch norm in training mode
        assert tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES) == []  # decay 0.0
    with tf.Graph().as_default():
        nets_factory.get_network_fn("mobilenet_v2_035", 10, 0.00004, False)(
            tf.zeros([1, 32, 32, 3]))
        assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []
        assert tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
