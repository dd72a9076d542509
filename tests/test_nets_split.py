"""TF-Slim's split 1x1 convolutions in ``expanded_conv``: ``split_expansion``,
``split_projection``, ``split_divisible_by``.

The expected variables are written by hand from TF-Slim's conv_blocks.py
(research/slim/nets/mobilenet/conv_blocks.py): ``split_conv`` names part i of scope
``expand`` ``expand_part_<i>``, cuts input and output channels with
``_split_divisible`` (multiples of ``divisible_by``, the running total the smallest
that reaches ``num * (i + 1) / num_ways``) and builds one plain conv when a part would
get fewer than ``divisible_by`` channels on either side.  The numbers are not taken
from nets/.
"""
import copy
import functools

import numpy as np
import pytest

from nets import blocks
from nets.mobilenet import conv_blocks, mobilenet, mobilenet_v2
from utils.tf_compat import do_not_convert, slim, tf

EPSILON = 0.001
# As TF-Slim's users build for inference.
inference_scope = functools.partial(slim.arg_scope,
                                    mobilenet.training_scope(is_training=False))
BN_STATS = ("beta", "gamma", "moving_mean", "moving_variance")


def conv_bn(scope, weights_shape, depthwise=False):
    """{variable: shape} of one slim conv with batch norm (center and scale)."""
    table = {scope + ("/depthwise_weights" if depthwise else "/weights"): weights_shape}
    depth = weights_shape[2] if depthwise else weights_shape[3]
    table.update((scope + "/BatchNorm/" + stat, [depth]) for stat in BN_STATS)
    return table


# A 24 -> 144 -> 40 block (expansion 6).  Two ways by 8: inputs 24 -> [16, 8],
# expansion 144 -> [72, 72], outputs 40 -> [24, 16].
SPLIT_2 = {}
SPLIT_2.update(conv_bn("block/expand_part_0", [1, 1, 16, 72]))
SPLIT_2.update(conv_bn("block/expand_part_1", [1, 1, 8, 72]))
SPLIT_2.update(conv_bn("block/depthwise", [3, 3, 144, 1], depthwise=True))
SPLIT_2.update(conv_bn("block/project_part_0", [1, 1, 72, 24]))
SPLIT_2.update(conv_bn("block/project_part_1", [1, 1, 72, 16]))

# Four ways: 24 // 4 = 6 < 8 input channels, so the expansion stays one conv; the
# projection splits 144 -> [40, 32, 40, 32] and 40 -> [16, 8, 8, 8].
SPLIT_4 = {}
SPLIT_4.update(conv_bn("block/expand", [1, 1, 24, 144]))
SPLIT_4.update(conv_bn("block/depthwise", [3, 3, 144, 1], depthwise=True))
SPLIT_4.update(conv_bn("block/project_part_0", [1, 1, 40, 16]))
SPLIT_4.update(conv_bn("block/project_part_1", [1, 1, 32, 8]))
SPLIT_4.update(conv_bn("block/project_part_2", [1, 1, 40, 8]))
SPLIT_4.update(conv_bn("block/project_part_3", [1, 1, 32, 8]))


def build_block(images, **split):
    """A 24 -> 40 ``expanded_conv`` (expansion 6) named ``block``, inference-mode
    batch norm with center and scale, relu6 inside; its end_points."""
    endpoints = {}
    # A list of update collections keeps slim on its fused batch norm (faster to build).
    with slim.arg_scope([slim.batch_norm], center=True, scale=True, epsilon=EPSILON,
                        is_training=False,
                        updates_collections=[tf.GraphKeys.UPDATE_OPS]), \
            slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                           activation_fn=tf.nn.relu6):
        output = blocks.expanded_conv(images, 40, normalizer_fn=slim.batch_norm,
                                      endpoints=endpoints, scope="block", **split)
    endpoints["output"] = output
    return endpoints


def shapes():
    return dict((v.op.name, v.shape.as_list()) for v in tf.global_variables())


@pytest.mark.parametrize("split, expected", [
    (dict(split_expansion=2, split_projection=2), SPLIT_2),
    (dict(split_expansion=4, split_projection=4), SPLIT_4),
])
def test_split_block_has_tf_slims_variables(split, expected):
    with tf.Graph().as_default() as graph:
        build_block(tf.zeros([1, 8, 8, 24]), **split)
        assert shapes() == expected
        names = set(op.name for op in graph.get_operations())
    if split["split_expansion"] == 2:  # TF-Slim's op names around the parts
        assert {"block/split_expand", "block/expand_part_0_output",
                "block/expand_part_1_output", "block/expand_part_1_concat",
                "block/split_project", "block/project_part_1_concat"} <= names


def test_split_divisible_as_tf_slim():
    assert blocks.split_divisible(24, 2) == [16, 8]
    assert blocks.split_divisible(40, 4) == [16, 8, 8, 8]
    assert blocks.split_divisible(144, 4) == [40, 32, 40, 32]
    assert blocks.split_divisible(96, 2, divisible_by=16) == [48, 48]
    for bad in ((20, 2), (8, 2)):  # not a multiple of 8; parts under 8
        with pytest.raises(ValueError):
            blocks.split_divisible(*bad)


def test_split_divisible_by_decides_whether_to_split():
    """split_divisible_by 16: the expansion (24 // 2 = 12 input channels a part)
    stays whole; the projection (72 and 20 a part) passes the size check, but 40 is
    no multiple of 16, which TF-Slim's _split_divisible refuses too (an assert)."""
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="cannot split 40 channels"):
            build_block(tf.zeros([1, 8, 8, 24]), split_projection=2,
                        split_divisible_by=16)
    with tf.Graph().as_default():
        build_block(tf.zeros([1, 8, 8, 24]), split_expansion=2, split_divisible_by=16)
        assert shapes()["block/expand/weights"] == [1, 1, 24, 144]


def numpy_split_conv(x, checkpoint, scope, sizes, relu6):
    """Concatenation of separate 1x1 convs (+ inference batch norm) on the channel
    groups of ``x`` (split by ``sizes``), from the checkpoint's tensors."""
    outputs = []
    for i, part in enumerate(np.split(x, np.cumsum(sizes)[:-1], axis=-1)):
        get = checkpoint.get_tensor
        prefix = "%s_part_%d/" % (scope, i)
        y = np.einsum("bhwc,cd->bhwd", part, get(prefix + "weights")[0, 0])
        y = ((y - get(prefix + "BatchNorm/moving_mean"))
             / np.sqrt(get(prefix + "BatchNorm/moving_variance") + EPSILON)
             * get(prefix + "BatchNorm/gamma") + get(prefix + "BatchNorm/beta"))
        outputs.append(np.clip(y, 0, 6) if relu6 else y)
    return np.concatenate(outputs, axis=-1)


def test_split_convs_compute_grouped_convolutions(tmp_path):
    """Random weights and statistics, saved; a fresh graph restores them and runs the
    block; numpy recomputes its expansion and projection from the checkpoint."""
    rng = np.random.RandomState(0)
    images = rng.randn(2, 8, 8, 24).astype(np.float32)
    path = str(tmp_path / "split.ckpt")
    with tf.Graph().as_default():
        build_block(tf.constant(images), split_expansion=2, split_projection=2)
        with tf.Session() as sess:
            for variable in tf.global_variables():
                value = rng.uniform(0.5, 1.5, variable.shape.as_list())
                if not variable.op.name.endswith(("moving_variance", "gamma")):
                    value -= 1.0
                variable.load(value.astype(np.float32), sess)
            tf.train.Saver().save(sess, path)
    with tf.Graph().as_default():
        endpoints = build_block(tf.constant(images), split_expansion=2,
                                split_projection=2)
        with tf.Session() as sess:
            tf.train.Saver().restore(sess, path)
            got = sess.run(endpoints)
    checkpoint = tf.train.load_checkpoint(path)
    expansion = numpy_split_conv(images, checkpoint, "block/expand", [16, 8], True)
    np.testing.assert_allclose(got["expansion_output"], expansion, rtol=1e-4, atol=1e-4)
    projection = numpy_split_conv(got["depthwise_output"], checkpoint, "block/project",
                                  [72, 72], False)
    np.testing.assert_allclose(got["projection_output"], projection, rtol=1e-4,
                               atol=1e-4)
    assert got["output"].shape == (2, 8, 8, 40)


@pytest.mark.slow
def test_mobilenet_v2_with_splits_as_tf_slims_test():
    """TF-Slim's mobilenet_v2_test.testWithSplits (16-channel input, the generic
    mobilenet, split_expansion=2 as an override on expanded_conv): every block but
    the first splits its expansion, so 19 rows give 19 * 3 - 5 Conv2D ops; then
    run at 32 px."""
    spec = copy.deepcopy(mobilenet_v2.V2_DEF)
    spec["overrides"] = {(conv_blocks.expanded_conv,): dict(split_expansion=2)}
    with tf.Graph().as_default() as graph:
        images = tf.placeholder(tf.float32, (2, 32, 32, 16))
        with inference_scope():
            logits, end_points = do_not_convert(mobilenet.mobilenet)(images,
                                                                     conv_defs=spec)
        convs = [op for op in graph.get_operations() if op.type == "Conv2D"]
        assert len(convs) == len(spec["spec"]) * 3 - 5 == 52
        variables = shapes()
        part = "Mobilenet/expanded_conv_%d/expand_part_%d/weights"
        assert variables[part % (1, 0)] == variables[part % (1, 1)] == [1, 1, 8, 48]
        assert variables[part % (16, 1)] == [1, 1, 80, 480]
        assert "Mobilenet/expanded_conv_1/expand/weights" not in variables
        assert "Mobilenet/expanded_conv/project/weights" in variables  # no expansion
        assert "layer_3/expand_part_1_output" in end_points
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(logits, {images: np.ones((2, 32, 32, 16))})
    assert out.shape == (2, 1001) and np.all(np.isfinite(out))


@pytest.mark.slow
def test_split_through_an_arg_scope():
    """The split set by an arg_scope on expanded_conv around TF-Slim's
    mobilenet_v2.mobilenet, at depth multiplier 0.35: blocks whose input is 8 deep
    (expanded_conv_1 .. _3) stay whole, expanded_conv_4 (16 deep, after the
    32 * 0.35 -> 16 rounding) splits; projections stay whole.  It runs."""
    with tf.Graph().as_default():
        with inference_scope(), \
                slim.arg_scope([conv_blocks.expanded_conv], split_expansion=2):
            logits, _ = do_not_convert(mobilenet_v2.mobilenet)(
                tf.ones([1, 32, 32, 3]), depth_multiplier=0.35)
        variables = shapes()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(logits)
    assert out.shape == (1, 1001) and np.all(np.isfinite(out))
    assert variables["MobilenetV2/expanded_conv_1/expand/weights"] == [1, 1, 8, 48]
    assert variables["MobilenetV2/expanded_conv_3/expand/weights"] == [1, 1, 8, 48]
    assert variables["MobilenetV2/expanded_conv_4/expand_part_0/weights"] == [
        1, 1, 8, 48]
    assert not [n for n in variables if "project_part" in n]
