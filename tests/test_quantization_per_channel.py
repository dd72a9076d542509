"""Per-channel weight ranges (``--quantize_per_channel``): every convolution and depthwise
convolution gets a range per output channel under contrib's names, the simulated graph
quantizes each channel with its own step, and the int8 TFLite model carries one scale
per channel; on the case where one folded channel dwarfs the rest, per-channel QAT beats
TFLite's per-channel post-training quantization.

The unit tests build MobileNetV2-0.35 graphs at 32 px; the slow one fine-tunes the
digits' shared float model (conftest's ``digits_float``) as tests/test_quantization.py's
outlier case does."""
import os

import numpy as np
import pytest

from tests.cli_helpers import run_python as run
from tests.digits_helpers import MODEL, evaluator, train

BN_EPSILON = 0.001  # TF-Slim's MobileNet batch norm
OUTLIER = "MobilenetV2/expanded_conv/"  # the outlier case's layer (tests/qat_checks.py)
SETTINGS_FIELDS = dict(quant_delay=0, freeze_bn_delay=None, per_channel=True)


def _build(is_training, per_channel=True, seed=0):
    """(graph, input placeholder) of MobileNetV2-0.35 at 32 px, quantized (per channel)
    or float (per_channel None)."""
    from nets import nets_factory
    from quantization import rewrite
    from utils.tf_compat import tf
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        quantize = None
        if per_channel is not None:
            quantize = rewrite.Settings(**dict(SETTINGS_FIELDS, per_channel=per_channel,
                                               quant_delay=0 if is_training else None))
        images = tf.placeholder(tf.float32, [4, 32, 32, 3], name="images")
        nets_factory.get_network_fn(MODEL, 10, is_training=is_training,
                                    quantize=quantize)(images)
    return graph, images


def _kernel_channels(graph):
    """{layer scope: output channels} of every kernel in a float graph, from its shape:
    a conv's [H, W, C_in, C_out] has C_out, a depthwise [H, W, C, M] has C * M."""
    channels = {}
    for variable in graph.get_collection("variables"):
        scope, _, last = variable.op.name.rpartition("/")
        shape = variable.shape.as_list()
        if last == "weights":
            channels[scope] = shape[-1]
        elif last == "depthwise_weights":
            channels[scope] = shape[2] * shape[3]
    return channels


@pytest.fixture(scope="module")
def training_graph():
    """(graph, images) of the per-channel training graph, built once."""
    return _build(True)


def _weight_ranges(graph):
    return dict((v.op.name, v.shape.as_list()) for v in graph.get_collection("variables")
                if "/weights_quant/" in v.op.name)


def test_every_kernel_has_one_range_per_output_channel(training_graph):
    """The range variables' shapes, against the float graph's kernels: one min / max per
    output channel for each of them, and no other weight ranges; the inference graph
    (which reads a checkpoint of the training graph) has the same."""
    expected = dict((scope + "/weights_quant/" + end, [channels])
                    for scope, channels in _kernel_channels(_build(True, None)[0]).items()
                    for end in ("min", "max"))
    graph, _ = training_graph
    assert len(expected) == 2 * 53 and _weight_ranges(graph) == expected
    inference, _ = _build(False)
    assert _weight_ranges(inference) == expected
    for quantized in (graph, inference):
        ops = [op.type for op in quantized.get_operations()]
        assert ops.count("FakeQuantWithMinMaxVarsPerChannel") == 53
        assert "FakeQuantWithMinMaxVars" in ops  # activations: per tensor


def _quantized_per_channel(weights, channel_axis):
    """numpy: symmetric narrow-range 8-bit quantization with one step per channel along
    ``channel_axis`` (max |w| / 127), as TFLite's per-channel int8 weights."""
    other_axes = tuple(a for a in range(weights.ndim) if a != channel_axis)
    step = np.abs(weights).max(axis=other_axes, keepdims=True) / 127.0
    return np.clip(np.round(weights / step), -127, 127) * step


def test_training_quantizes_each_channel_with_its_own_step(training_graph):
    """One training-mode run: the weights each layer convolves with are its folded
    weights (w * gamma / sigma_moving, per output channel) quantized per channel, computed
    here in numpy from the variables (the depthwise layer's channels on axis 2, the
    logits' without batch norm on axis 3); the ranges learned are max |folded| per
    channel. A layer is given channels of very different sizes first, so one step for all
    would not pass."""
    graph, images = training_graph
    depthwise = "MobilenetV2/expanded_conv/depthwise"
    logits = "MobilenetV2/Logits/Conv2d_1c_1x1"
    variables = dict((v.op.name, v) for v in graph.get_collection("variables"))
    names = {"depthwise": depthwise + "/depthwise_weights", "gamma": depthwise + "/BatchNorm/gamma",
             "variance": depthwise + "/BatchNorm/moving_variance", "logits": logits + "/weights"}
    with graph.as_default():
        from utils.tf_compat import tf
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            kernel = variables[names["depthwise"]]
            kernel.load(sess.run(kernel) * np.linspace(0.1, 50.0, 16)[None, None, :, None],
                        sess)
            variables[names["variance"]].load(np.linspace(0.5, 4.0, 16), sess)
            raw = dict((key, sess.run(variables[name])) for key, name in names.items())
            fed = dict((scope, graph.get_operation_by_name(
                scope + "/weights_quant/FakeQuantWithMinMaxVarsPerChannel").outputs[0])
                for scope in (depthwise, logits))
            values = sess.run(fed, {images: np.random.RandomState(0).uniform(
                -1, 1, [4, 32, 32, 3])})
            learned_max = sess.run(variables[depthwise + "/weights_quant/max"])
    folded = raw["depthwise"] * (raw["gamma"] / np.sqrt(raw["variance"] + BN_EPSILON))[
        None, None, :, None]
    np.testing.assert_allclose(values[depthwise].reshape(folded.shape),
                               _quantized_per_channel(folded, 2), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(learned_max, np.abs(folded).max(axis=(0, 1, 3)), rtol=1e-6)
    assert learned_max.max() / learned_max.min() > 100
    np.testing.assert_allclose(values[logits], _quantized_per_channel(raw["logits"], 3),
                               rtol=1e-5, atol=1e-7)




def _top1(digits, name, source):
    """The evaluator's top-1 of a checkpoint (its simulated int8 graph when it holds
    ranges) or of an exported model file, on the 359 validation digits."""
    from export import models
    with evaluator(digits, "per_channel_" + name) as scorer:
        if source.endswith(".tflite"):
            model = models.load_model(source)
            try:
                return scorer.evaluate_model(model)["top1"]
            finally:
                model.close()
        return scorer.evaluate(source)["top1"]


def _tflite_int8(digits, checkpoint, name):
    path = os.path.join(digits, name + ".tflite")
    out = run("export_model.py", "--checkpoint_path=" + checkpoint, "--format=tflite_int8",
              "--output=" + path)
    assert out.returncode == 0, out.stderr[-3000:]
    return path


def _depthwise_scales(tflite):
    """(scales, quantized dimension) of the int8 weights of the first depthwise layer."""
    from utils.tf_compat import tf
    for detail in tf.lite.Interpreter(model_path=tflite).get_tensor_details():
        if detail["dtype"] == np.int8 and detail["name"].startswith(
                OUTLIER + "depthwise/") and list(detail["shape"][:3]) == [1, 3, 3]:
            parameters = detail["quantization_parameters"]
            return parameters["scales"], parameters["quantized_dimension"]
    raise AssertionError("no int8 depthwise weights in %s" % tflite)


def _depthwise_range(train_dir):
    """The first depthwise layer's weight range maxima, per channel, from the checkpoint."""
    from utils.checkpoints import resolve_checkpoint
    from utils.tf_compat import tf
    reader = tf.train.load_checkpoint(resolve_checkpoint(train_dir))
    return reader.get_tensor(OUTLIER + "depthwise/weights_quant/max")


@pytest.mark.slow
def test_per_channel_qat_beats_post_training_quantization_on_the_outlier(
        digits, digits_outlier, digits_outlier_ranges):
    """The case where per-tensor int8 loses (conftest's digits_outlier: one folded channel
    of the first depthwise layer 237 times the median). Ranges learned without training
    (20 steps at a learning rate of 1e-12, batch norm frozen) score per channel what the
    float model does, per tensor (conftest's digits_outlier_ranges) far less; the
    per-channel QAT fine-tune (as tests/test_quantization.py's per-tensor one) beats
    TFLite's per-channel post-training int8 of the float model, and its own int8 TFLite
    has the checkpoint's ranges as its scales, one per channel, and the simulated
    graph's top-1. Measured here: float 0.883, ranges per tensor 0.351, per
    channel 0.883, QAT 0.919 simulated and in TFLite, TFLite PTQ 0.877 (the per-tensor
    fine-tune of tests/test_quantization.py: 0.914). Margins: a third of each gap."""
    from utils.checkpoints import resolve_checkpoint
    start = ("--restore_path=" + digits_outlier, "--restore_exclude=none",
             "--quantize_delay=0", "--quantize_per_channel")
    per_channel, _ = train(digits, "pc_outlier_per_channel_ranges", "--max_train_steps=20",
                           "--learning_rate=1e-12", "--freeze_bn_delay=0", *start)
    fine_tuned, _ = train(digits, "pc_outlier_finetune", "--max_epoch=2",
                          "--learning_rate=0.001", "--freeze_bn_delay=60", *start)
    # The ranges hold the outlier (the fine-tune's batch norm re-learns that channel's
    # moving variance, which shrinks it back: 5 times the median after it, measured).
    ranges = _depthwise_range(per_channel)
    assert ranges.shape == (16,) and ranges.max() / np.median(ranges) > 100, ranges
    tflite = _tflite_int8(digits, fine_tuned, "pc_outlier_qat")
    scales, axis = _depthwise_scales(tflite)
    # Symmetric narrow range [-m, m] over 254 steps: scale m / 127, channel by channel.
    assert axis == 3
    np.testing.assert_allclose(scales, _depthwise_range(fine_tuned) / 127.0, rtol=1e-5)
    top1 = dict((name, _top1(digits, name, source)) for name, source in (
        ("float", digits_outlier),
        ("per_tensor_ranges", resolve_checkpoint(digits_outlier_ranges)),
        ("per_channel_ranges", resolve_checkpoint(per_channel)),
        ("qat", resolve_checkpoint(fine_tuned)), ("qat_tflite", tflite),
        ("ptq_tflite", _tflite_int8(digits, digits_outlier, "pc_outlier_ptq"))))
    assert top1["per_tensor_ranges"] <= top1["float"] - 0.15, top1
    assert top1["per_channel_ranges"] >= top1["float"] - 0.01, top1
    assert top1["qat"] >= top1["ptq_tflite"] + 0.014, top1
    # int8 kernels round where fake-quant ops do not: 4 images apart at most, as
    # tests/test_quantization.py's per-tensor bound.
    assert abs(top1["qat_tflite"] - top1["qat"]) <= 4 / 359.0, top1


@pytest.mark.slow
def test_a_per_tensor_checkpoint_fine_tunes_per_channel(digits, digits_qat):
    """Per-channel QAT from a per-tensor QAT checkpoint (conftest's digits_qat): the plan
    (--restore_dry_run) restores every weight and starts exactly the weight ranges anew,
    min and max of each of MobileNetV2's 53 kernels, whose shapes differ; nothing is
    written."""
    train_dir = os.path.join(digits, "pc_from_per_tensor")
    _, out = train(digits, "pc_from_per_tensor", "--restore_path=" + digits_qat[0],
                   "--restore_exclude=none", "--quantize_delay=0", "--quantize_per_channel",
                   "--max_train_steps=1", "--restore_dry_run")
    logged = out.stdout + out.stderr
    assert "quantization: %d range variables start from the first batches" % (2 * 53) \
        in logged, logged[-3000:]
    assert not os.path.exists(train_dir) or not os.listdir(train_dir)
