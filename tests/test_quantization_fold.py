"""The training fold of quantization/fold_batch_norm.py at the cost of one convolution:
conv(x, w * scale) unfolded back and batch-normalized with its own moments, checked on one
tiny layer (a conv, a depthwise conv) against the two-convolution form written here in
plain TF ops, against slim's own batch norm, and on MobileNetV2's first blocks for what
the train op runs."""
import functools

import numpy as np
import pytest

from utils.tf_compat import ops_feeding, slim, tf

# float32 rounding only, relative to the largest value: the fold and the references
# compute the same numbers in a different order (moments of y or of y / scale, a
# correction factor or a division), about one ulp (1.2e-7) of it; measured 0.7e-7 to
# 1.8e-7 over these tests, the bound ten times that.
TOLERANCE = 2e-6
# With quantized weights, the fold's batch moments are those of the quantized layer, the
# two-convolution form's those of the float one: they differ by the weights' rounding
# (a 254-step grid over the largest folded weight), measured 1.6e-3 and 2.4e-3 here.
QUANTIZATION_NOISE = 2e-2
EPSILON = 0.001
DECAY = 0.5
LAYERS = ("Conv2D", "DepthwiseConv2dNative")


def _inputs():
    # 2 x 3 x 3 per channel: 18 values, so a batch variance's n / (n - 1) is 6%.
    return np.random.RandomState(0).uniform(-1, 1, [2, 3, 3, 3]).astype(np.float32)


def _statistics(channels, gamma="random"):
    """Non-trivial batch-norm variables, seeded; ``gamma``: "random" (both signs),
    "zero" (channel 0's is 0) or "none" (batch norm without scale)."""
    rng = np.random.RandomState(1)
    values = {"gamma": rng.uniform(0.5, 1.5, channels) * rng.choice([-1, 1], channels),
              "beta": rng.uniform(-0.5, 0.5, channels),
              "moving_mean": rng.uniform(-0.5, 0.5, channels),
              "moving_variance": rng.uniform(0.5, 2.0, channels)}
    if gamma == "zero":
        values["gamma"][0] = 0.0
    if gamma == "none":
        del values["gamma"]
    return dict((name, value.astype(np.float32)) for name, value in values.items())


def _layer(kind, scale=True):
    """One layer with slim's fused batch norm (MobileNetV2's arg scope; ``scale``:
    whether it has gamma) in the default graph: (its batch-norm op, the channels)."""
    from nets import builder
    tf.set_random_seed(1)  # the same weights in every graph
    x = tf.constant(_inputs())
    with slim.arg_scope(builder.training_scope(is_training=True, bn_decay=DECAY,
                                               bn_epsilon=EPSILON)), \
            slim.arg_scope([slim.batch_norm], center=True, scale=scale):
        if kind == "Conv2D":
            slim.conv2d(x, 4, [3, 3], activation_fn=None, scope="layer")
        else:
            slim.separable_conv2d(x, None, [3, 3], depth_multiplier=2, activation_fn=None,
                                  scope="layer")
    bn_op = next(op for op in tf.get_default_graph().get_operations()
                 if op.type.startswith("FusedBatchNorm"))
    return bn_op, bn_op.outputs[0].get_shape().as_list()[-1]


def _load(sess, statistics):
    sess.run(tf.global_variables_initializer())
    for name, value in statistics.items():
        tf.global_variables("layer/BatchNorm/" + name)[0].load(value, sess)


def _quantize_weights():
    from quantization import fake_quant
    return functools.partial(fake_quant.fake_quantize, scope="layer/weights_quant",
                             is_training=True, moving_average=False, symmetric=True)


def _fold(kind, quantize, bn_frozen):
    """The folded layer's output, its batch-norm match."""
    from quantization import fold_batch_norm
    bn_op, _ = _layer(kind)
    match = fold_batch_norm.find(bn_op)
    return fold_batch_norm.fold(match, True, bn_frozen,
                                _quantize_weights() if quantize else None), match


def _conv(layer_op, weights):
    x = layer_op.inputs[0]
    if layer_op.type == "Conv2D":
        return tf.nn.conv2d(x, weights, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d_native(x, weights, [1, 1, 1, 1], "SAME")


def _two_conv_form(match, quantize, bn_frozen, moments_of_quantized=False):
    """The fold as this module computed it before, in plain TF ops over the same
    variables: conv(x, q(w * scale)) corrected to the batch moments of a second, float
    convolution (or, ``moments_of_quantized``, of the first one divided by the scale),
    y * sigma_mv / sigma_b + beta - mu_b * gamma / sigma_b; once frozen y + beta -
    mu_mv * scale."""
    layer_op, v = match.layer_op, match.variables
    weights = layer_op.inputs[1]
    gamma, beta, moving_mean, moving_variance = [
        v[name].read_value() for name in ("gamma", "beta", "moving_mean", "moving_variance")]
    scale = gamma * tf.rsqrt(moving_variance + EPSILON)
    if layer_op.type != "Conv2D":  # depthwise: output channel c * M + m is [c, m]
        scale = tf.reshape(scale, weights.get_shape().as_list()[2:])
    folded = weights * scale
    if quantize:  # symmetric, narrow range, over the batch's range
        bound = tf.stop_gradient(tf.reduce_max(tf.abs(folded)))
        folded = tf.fake_quant_with_min_max_vars(folded, -bound, bound, num_bits=8,
                                                 narrow_range=True)
    y = _conv(layer_op, folded)
    source = y / tf.reshape(scale, [-1]) if moments_of_quantized else _conv(layer_op, weights)
    mean, variance = tf.nn.moments(source, axes=[0, 1, 2])
    sigma_b, sigma_mv = tf.sqrt(variance + EPSILON), tf.sqrt(moving_variance + EPSILON)
    batch = y * sigma_mv / sigma_b + beta - mean * gamma / sigma_b
    return tf.where(bn_frozen, y + beta - moving_mean * tf.reshape(scale, [-1]), batch)


def _relative(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


CASES = [(kind, quantize) for kind in LAYERS for quantize in (False, True)]


@pytest.mark.parametrize("kind,quantize", CASES)
def test_one_convolution_is_the_two_convolution_fold(kind, quantize):
    """Before and after freezing, with and without quantized weights. Unquantized and
    frozen, the fold is the old form to float rounding. Quantized and not frozen, its
    batch moments are the quantized layer's: it is the old form with those moments to
    float rounding, and the old form itself to the weights' rounding."""
    with tf.Graph().as_default():
        bn_frozen = tf.placeholder(tf.bool, [])
        output, match = _fold(kind, quantize, bn_frozen)
        references = [_two_conv_form(match, quantize, bn_frozen),
                      _two_conv_form(match, quantize, bn_frozen, moments_of_quantized=True)]
        with tf.Session() as sess:
            _load(sess, _statistics(output.get_shape().as_list()[-1]))
            for frozen in (False, True):
                got, old, quantized_moments = sess.run([output] + references,
                                                       {bn_frozen: frozen})
                assert _relative(got, quantized_moments) <= TOLERANCE, frozen
                exact = frozen or not quantize
                assert _relative(got, old) <= (TOLERANCE if exact else QUANTIZATION_NOISE)


@pytest.mark.parametrize("kind,quantize", CASES)
def test_gradients_reach_gamma_beta_and_weights_as_in_the_two_convolution_fold(kind,
                                                                               quantize):
    """The gradients of a random projection of the output: non-zero, and the old form's
    (its moments the quantized layer's when quantized and not frozen, as above)."""
    with tf.Graph().as_default():
        bn_frozen = tf.placeholder(tf.bool, [])
        output, match = _fold(kind, quantize, bn_frozen)
        reference = _two_conv_form(match, quantize, bn_frozen, moments_of_quantized=True)
        projection = tf.constant(np.random.RandomState(2).normal(
            size=output.get_shape().as_list()).astype(np.float32))
        trained = [match.variables["gamma"], match.variables["beta"],
                   match.layer_op.inputs[1]]
        grads = [tf.gradients(tf.reduce_sum(tensor * projection), trained)
                 for tensor in (output, reference)]
        with tf.Session() as sess:
            _load(sess, _statistics(output.get_shape().as_list()[-1]))
            for frozen in (False, True):
                got, want = sess.run(grads, {bn_frozen: frozen})
                for name, g, w in zip(("gamma", "beta", "weights"), got, want):
                    assert np.abs(g).min() > 0 if name != "weights" else np.abs(g).max() > 0
                    assert _relative(g, w) <= TOLERANCE, (frozen, name)


def _after_one_update(kind, statistics, rewrite, frozen=False):
    """(the layer's output, moving mean, moving variance) after one run of its update
    ops, slim's batch norm as built or folded (weights unquantized)."""
    from quantization import fold_batch_norm
    with tf.Graph().as_default():
        bn_op, _ = _layer(kind, scale="gamma" in statistics)
        output = bn_op.outputs[0]
        if rewrite:
            output = fold_batch_norm.fold(fold_batch_norm.find(bn_op), True,
                                          tf.constant(frozen))
        with tf.Session() as sess:
            _load(sess, statistics)
            got = sess.run([output, tf.get_collection(tf.GraphKeys.UPDATE_OPS)])[0]
            return [got] + sess.run(tf.global_variables("layer/BatchNorm/moving_"))


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("gamma", ("random", "zero", "none"))
def test_moving_statistics_are_slims_after_a_step(kind, gamma):
    """One step updates the moving statistics as slim's fused batch norm does (its
    batch variance has n / (n - 1): test_bessel_factor_is_tensorflows), and the output
    is its output; a gamma of 0 (one channel) changes neither, nor makes a NaN, and
    no gamma is gamma 1. Frozen, the moving statistics stay."""
    channels = 4 if kind == "Conv2D" else 6
    statistics = _statistics(channels, gamma)
    want_output, want_mean, want_variance = _after_one_update(kind, statistics, False)
    got_output, got_mean, got_variance = _after_one_update(kind, statistics, True)
    assert np.isfinite(got_output).all()
    assert _relative(got_output, want_output) <= TOLERANCE
    assert _relative(got_mean, want_mean) <= TOLERANCE
    assert _relative(got_variance, want_variance) <= TOLERANCE
    frozen = _after_one_update(kind, statistics, True, frozen=True)
    assert np.array_equal(frozen[1], statistics["moving_mean"])
    assert np.array_equal(frozen[2], statistics["moving_variance"])


def test_bessel_factor_is_tensorflows():
    """What the two tests above rely on: a training FusedBatchNorm's outputs[2] is the
    batch variance times n / (n - 1)."""
    x = np.random.RandomState(3).normal(size=[2, 3, 3, 4]).astype(np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        _, _, variance = tf.nn.fused_batch_norm(x, tf.ones([4]), tf.zeros([4]),
                                                epsilon=EPSILON)
        got = sess.run(variance)
    want = x.reshape(-1, 4).var(axis=0) * 18 / 17
    assert _relative(got, want) <= TOLERANCE


def test_the_train_op_runs_one_convolution_per_layer():
    """MobileNetV2's stem and first three blocks, quantized for training with a batch
    norm to freeze later: the train op (gradient step and moving-average updates) runs
    one forward convolution per layer, the folded one, and no batch-norm op."""
    from nets import builder
    from nets.mobilenet import mobilenet_v2
    from quantization import rewrite
    head = dict(mobilenet_v2.V2_DEF, spec=mobilenet_v2.V2_DEF["spec"][:4])
    with tf.Graph().as_default() as graph:
        with slim.arg_scope(builder.training_scope(is_training=True)):
            net, _ = builder.mobilenet_base(tf.zeros([2, 32, 32, 3]), head, multiplier=0.35,
                                            scope="MobilenetV2", is_training=True)
        layers = [op.name for op in graph.get_operations() if op.type in LAYERS]
        rewrite.quantize_network(graph.get_operations(), True, rewrite.Settings(0, 5), "")
        minimize = tf.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(net))
        train_op = tf.group(minimize, *tf.get_collection(tf.GraphKeys.UPDATE_OPS))
        needed = ops_feeding(train_op)
    assert len(layers) == 9
    convolutions = sorted(op.name for op in needed if op.type in LAYERS)
    assert convolutions == sorted(name + "_Fold" for name in layers), convolutions
    assert not [op.name for op in needed if op.type.startswith("FusedBatchNorm")]
    # The batch moments' gradient broadcasts its vectors (reduce_mean's tiles them; the
    # loss here, a reduce_mean, still does).
    assert not [op.name for op in needed if op.type == "Tile" and "BatchNorm_Fold" in op.name]


def test_batch_moments_gradient_is_tf_nn_moments():
    """The fold's own moments (their gradient written out) against tf.nn.moments and its
    automatic gradient, for upstream gradients on the mean, on the variance and on both,
    on a batch large enough that a wrong count or a missing term shows."""
    from quantization import fold_batch_norm
    rng = np.random.RandomState(4)
    values = rng.normal(2.0, 3.0, [4, 5, 6, 7]).astype(np.float32)
    upstream = [rng.normal(size=[7]).astype(np.float32) for _ in range(2)]
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.constant(values)
        ours = fold_batch_norm._batch_moments(x)
        reference = tf.nn.moments(x, axes=[0, 1, 2])
        runs = []
        for weights in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
            runs.append([tf.gradients(sum(w * tf.reduce_sum(m * u) for w, m, u in
                                          zip(weights, moments, upstream)), x)[0]
                         for moments in (ours, reference)])
        got = sess.run([list(ours), list(reference), runs])
    for ours_value, reference_value in zip(got[0], got[1]):
        assert _relative(ours_value, reference_value) <= TOLERANCE
    for ours_gradient, reference_gradient in got[2]:
        assert _relative(ours_gradient, reference_gradient) <= TOLERANCE
