"""ONNX export of a per-channel quantization-aware checkpoint (--quantize_per_channel;
export/onnx_qdq.py): each convolution's weights one per-axis QuantizeLinear /
DequantizeLinear pair, int8 with a scale per output channel on axis 0 of ONNX's
[C_out, C_in / group, kH, kW] (a depthwise one as a grouped convolution), the other
pairs per tensor as in tests/test_quantization_onnx.py, and onnxruntime's logits follow
the simulated graph's.

The digits: that module's short fine-tune of conftest's ``digits_float``, with
--quantize_per_channel, exported once per module."""
import os

import numpy as np
import pytest

from tests import test_quantization_onnx as per_tensor
from tests.digits_helpers import train

pytestmark = pytest.mark.slow

CONVOLUTIONS, DEPTHWISE = 53, 17  # MobileNetV2's, the logits' 1x1 included
# A short per-channel QAT fine-tune of the float checkpoint.
FINE_TUNE = ("--max_train_steps=30", "--learning_rate=0.001", "--restore_exclude=none",
             "--quantize_delay=0", "--freeze_bn_delay=20", "--quantize_per_channel")


@pytest.fixture(scope="module")
def qat_dir(digits, digits_float):
    return train(digits, "qat_onnx_per_channel", "--restore_path=" + digits_float,
                 *FINE_TUNE)[0]


@pytest.fixture(scope="module")
def qat_onnx(digits, qat_dir):
    """The checkpoint's ONNX file, written by export_model.py, and its stdout."""
    path = os.path.join(digits, "qat_per_channel.onnx")
    return path, per_tensor._export(qat_dir, path).stdout


def _expected_scales(low, high):
    """The scale of each channel of a weight range of the checkpoint (its min and max
    vectors), nudged one channel at a time as per_tensor.nudged does: symmetric
    [-m, m], narrow, so every 8-bit zero point is 128 (int8's 0)."""
    found = [per_tensor.nudged(-bound, bound, narrow_range=True)
             for bound in np.maximum(-low, high)]
    assert set(zero_point for _, zero_point in found) == {128}
    return np.array([scale for scale, _ in found], np.float32)


def _attribute(node, name):
    from onnx import helper
    return [helper.get_attribute_value(a) for a in node.attribute if a.name == name]


def _convolution_weights(path):
    """[(Conv, its weights' QuantizeLinear and DequantizeLinear, the weights, [scale,
    zero point])] of the model: each Conv's weights checked to come straight from a
    DequantizeLinear of a QuantizeLinear of a constant."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    constants = dict((t.name, numpy_helper.to_array(t)) for t in graph.initializer)
    producers = dict((name, node) for node in graph.node for name in node.output)
    found = []
    for conv in [node for node in graph.node if node.op_type == "Conv"]:
        dequantize = producers[conv.input[1]]
        quantize = producers.get(dequantize.input[0])
        assert (dequantize.op_type, getattr(quantize, "op_type", None)) == \
            per_tensor.QDQ_OPS[::-1], conv.name
        found.append((conv, quantize, dequantize, constants[quantize.input[0]],
                      [constants[name] for name in quantize.input[1:]]))
    return found


def test_each_convolution_has_a_scale_per_output_channel(qat_dir, qat_onnx):
    """Every convolution's weight pair is per axis 0 with the checkpoint's C_out ranges.
    Measured: the largest channel's scale over the smallest's is above 1.5 in 52 of the
    53 layers, up to 30 (a 1x1 projection); a single scale would not pass."""
    from export import metadata
    path, stdout = qat_onnx
    assert "quantized (QDQ, per-channel weights)" in stdout
    assert metadata.read_meta(path)["onnx_quantization"] == "qdq_per_channel"
    ranges = per_tensor._checkpoint_ranges(qat_dir)
    ratios = []
    convolutions = _convolution_weights(path)
    assert len(convolutions) == CONVOLUTIONS
    for conv, quantize, dequantize, weights, (scale, zero_point) in convolutions:
        scope = quantize.name[:-len("/QuantizeLinear")]
        expected = _expected_scales(*ranges[scope])
        assert _attribute(quantize, "axis") == _attribute(dequantize, "axis") == [0], scope
        assert scale.shape == zero_point.shape == (weights.shape[0],) == expected.shape, scope
        assert zero_point.dtype == np.int8 and not zero_point.any(), scope
        np.testing.assert_allclose(scale, expected, rtol=1e-6, err_msg=scope)
        ratios.append(scale.max() / scale.min())
    groups = [_attribute(conv, "group") for conv, _, _, weights, _ in convolutions]
    assert sum(group not in ([], [1]) for group in groups) == DEPTHWISE
    assert max(ratios) > 1.5, ratios


def test_the_other_pairs_stay_per_tensor(qat_dir, qat_onnx):
    """The activations', adds', the average pool's and the input's pairs: one scale and
    zero point each, as in the per-tensor model."""
    ranges = per_tensor._checkpoint_ranges(qat_dir)
    pairs = per_tensor._qdq_pairs(qat_onnx[0])
    assert sorted(pairs) == sorted(list(ranges) + list(per_tensor.UNVARIED))
    for scope, found in sorted(pairs.items()):
        if not scope.endswith("/weights_quant"):
            per_tensor.check_pair(scope, found, ranges)


def _fused_convolutions(path, tmp_path):
    """How many Conv ops the evaluator's onnxruntime session (models.load_model) runs as
    int8 QLinearConv (what it writes as its optimized model)."""
    import onnx
    import onnxruntime
    from export import metadata, onnx_qdq
    options = onnx_qdq.session_options(onnxruntime, metadata.read_meta(path))
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return sum(node.op_type == "QLinearConv"
               for node in onnx.load(options.optimized_model_filepath).graph.node)


def test_onnxruntime_gives_the_simulated_logits(qat_dir, qat_onnx, validation_images,
                                                tmp_path):
    """The evaluator's onnxruntime session (export/models.py) held to the per-tensor
    bounds. Measured on the 48 images: max 0.30 (5 steps of 0.060), mean 0.044 (0.73 of
    a step), every top-1 the same; on all 359: max 9 steps, mean 0.85, agreement 0.981,
    the same 334 hits, as the unfused QDQ graph and the per-tensor model (9 steps):
    rounding, not the kernels. onnxruntime's default session on this AVX2 CPU instead
    was 100 steps off, top-1 agreement 0.65 (onnx_qdq.X64_QUANT_PRECISION)."""
    from export import models
    images, labels = validation_images
    got = models.load_model(qat_onnx[0]).logits(images)
    simulated = per_tensor._simulated_logits(qat_dir, images, per_channel=True)
    per_tensor.assert_follows_simulated(got, simulated, labels, qat_dir)
    assert _fused_convolutions(qat_onnx[0], tmp_path) > 0  # int8 kernels ran
