"""ONNX export of a quantization-aware checkpoint (export/onnx_qdq.py): every trained
range becomes a QuantizeLinear / DequantizeLinear pair whose scale and zero point are
TensorFlow's nudged ones, and onnxruntime's logits follow the simulated int8 graph's.

The digits (MobileNetV2-0.35 at 32 px): the QAT fine-tune of the float model that the
suite shares (conftest's ``digits_qat`` of its ``digits_float``), exported once per
module."""
import os
import re

import numpy as np
import pytest

from tests.cli_helpers import run_python as run
from tests.digits_helpers import MODEL

pytestmark = pytest.mark.slow

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# The scope of a range in a Q/DQ node's name or output: the fake-quant op's, or the
# average pool's re-quantization and the input's fixed range (neither has variables).
RANGE_SCOPE = re.compile(r"^(.*?/(weights_quant|act_quant|post_activation_bypass_quant)"
                         r"|.*/AvgPool_quant|input_quant)(/|_|$)")
UNVARIED = ("MobilenetV2/Logits/AvgPool_quant", "input_quant")
# The TFLite int8 bounds of tests/test_quantization.py (int8 vs simulated): top-1
# agreement on 96% of the images, and top-1 hits at most 4 apart.
AGREEMENT = 0.96
HITS_APART = 4


@pytest.fixture(scope="module")
def qat_dir(digits_qat):
    """The QAT fine-tune of the float checkpoint that tests/test_quantization.py holds
    to its other routes (conftest's ``digits_qat``: one training for both modules)."""
    return digits_qat[0]


def _export(checkpoint_dir, output):
    out = run("export_model.py", "--checkpoint_path=" + checkpoint_dir, "--format=onnx",
              "--output=" + output)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def qat_onnx(digits, qat_dir):
    """The QAT checkpoint's ONNX file, written by export_model.py, and its stdout."""
    path = os.path.join(digits, "qat_model.onnx")
    return path, _export(qat_dir, path).stdout


@pytest.fixture(scope="module")
def float_onnx(digits, digits_float):
    path = os.path.join(digits, "float_for_qdq.onnx")
    _export(digits_float, path)
    return path


def _checkpoint_ranges(train_dir):
    """{scope: (min, max)} of every range the checkpoint holds (``*_quant/min``): float32
    scalars, or vectors for per-channel weights."""
    from utils.checkpoints import resolve_checkpoint
    from utils.tf_compat import tf
    reader = tf.train.load_checkpoint(resolve_checkpoint(train_dir))
    return dict((name[:-len("/min")], (reader.get_tensor(name),
                                       reader.get_tensor(name[:-3] + "max")))
                for name in reader.get_variable_to_shape_map() if name.endswith("_quant/min"))


def nudged(low, high, narrow_range, num_bits=8):
    """(scale, zero point on [quant_min, quant_max]) of TF's FakeQuant over [low, high]:
    the range moved so that 0 is an integer (tensorflow/core/kernels/fake_quant_ops_functor.h,
    Nudge), in float32 as the kernel computes it, rounding half away from zero
    (std::round). The input's [-1, 1] gives 127: 1 / float32(2 / 255) is just under 127.5."""
    low, high = np.float32(low), np.float32(high)
    quant_min, quant_max = np.float32(1 if narrow_range else 0), np.float32(2 ** num_bits - 1)
    scale = (high - low) / (quant_max - quant_min)
    zero_point = np.clip(np.floor(quant_min - low / scale + np.float32(0.5)), quant_min,
                         quant_max)
    return scale, int(zero_point)


def _expected(scope, ranges):
    """(scale, ONNX zero point, its dtype) of ``scope``'s pair: weights symmetric and
    narrow ([-m, m], int8, so the nudged 8-bit zero point 128 is 0), the rest uint8."""
    if scope == "input_quant":
        low, high = -1.0, 1.0
    else:
        low, high = ranges[scope if scope not in UNVARIED else "MobilenetV2/Conv_1/act_quant"]
    if scope.endswith("weights_quant"):
        bound = max(-low, high)
        scale, zero_point = nudged(-bound, bound, narrow_range=True)
        return scale, zero_point - 128, np.int8
    scale, zero_point = nudged(low, high, narrow_range=False)
    return scale, zero_point, np.uint8


def check_pair(scope, found, ranges):
    """``found`` (_qdq_pairs' list for ``scope``) is one pair, per tensor, with the scale
    and zero point computed here from the checkpoint's ``ranges``."""
    scale, zero_point, dtype = _expected(scope, ranges)
    assert len(found) == 1, (scope, len(found))
    got_scale, got_zero_point = found[0]
    assert got_scale.shape == () and got_zero_point.dtype == dtype, (scope, found)
    assert int(got_zero_point) == zero_point, (scope, found, zero_point)
    assert float(got_scale) == pytest.approx(float(scale), rel=1e-6), (scope, found, scale)


def _qdq_pairs(path):
    """{range scope: [(scale, zero point) of each QuantizeLinear]}, every Q node checked
    to feed a DequantizeLinear with the same scale and zero point."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    constants = dict((t.name, numpy_helper.to_array(t)) for t in graph.initializer)
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pairs = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        dequantize = consumers[node.output[0]]
        assert [d.op_type for d in dequantize] == ["DequantizeLinear"], node.name
        assert list(dequantize[0].input[1:]) == list(node.input[1:]), node.name
        match = (RANGE_SCOPE.match(node.name) or RANGE_SCOPE.match(dequantize[0].output[0]))
        assert match, (node.name, dequantize[0].output[0])
        pairs.setdefault(match.group(1), []).append(
            tuple(constants[name] for name in node.input[1:]))
    return pairs


def test_qat_onnx_holds_a_qdq_pair_per_trained_range(qat_dir, qat_onnx):
    """One pair per range of the checkpoint, plus the average pool's and the input's;
    each pair's scale and zero point are those computed here from the checkpoint."""
    from export import metadata
    path, stdout = qat_onnx
    assert "quantized (QDQ, per-tensor)" in stdout
    assert metadata.read_meta(path)["onnx_quantization"] == "qdq_per_tensor"
    ranges = _checkpoint_ranges(qat_dir)
    assert len(ranges) == 53 * 2 + 10  # each layer's weights and activation, each add
    pairs = _qdq_pairs(path)
    assert sorted(pairs) == sorted(list(ranges) + list(UNVARIED)), sorted(
        set(pairs) ^ set(list(ranges) + list(UNVARIED)))[:5]
    for scope, found in sorted(pairs.items()):
        check_pair(scope, found, ranges)


def _onnx_logits(path, images):
    """onnxruntime's logits (CPU EP, its default optimizations: int8 kernels where it
    fuses the pairs)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": images})[0]


def _simulated_logits(qat_dir, images, per_channel=False):
    """tests/reference_eval's route: the simulated int8 graph restored by a plain Saver
    (the fine-tune keeps no moving averages)."""
    from quantization.rewrite import INFERENCE
    from tests import reference_eval
    from utils.checkpoints import resolve_checkpoint
    return reference_eval.logits(MODEL, 10, resolve_checkpoint(qat_dir), images,
                                 use_ema=False, batch_size=len(images),
                                 quantize=INFERENCE._replace(per_channel=per_channel))


def test_onnxruntime_gives_the_simulated_logits(qat_dir, qat_onnx, validation_images):
    """Held to test_quantization's int8-vs-simulated bounds (AGREEMENT, HITS_APART).
    The logits themselves differ by whole steps of the logits' range:
    each layer's rounding, fed float sums taken in another order (and ONNX rounding
    ties to even where FakeQuant rounds them up), moves some values one step, as in
    TFLite. Measured on the 359 images (the 88-step fine-tune): max 0.47 (7 steps of
    0.067), mean 0.054 (0.81 of a step), 3 top-1 apart (99.2%), hits 330 and 331; the
    float checkpoint's ONNX model is 0.13 (2.0 steps) from them on average: the mean's
    bound lies between. (On 48 of them, as when this module fine-tuned its own 30
    steps: 1 top-1 apart, the most 96% allows there; hence all 359.)"""
    images, labels = validation_images
    assert_follows_simulated(_onnx_logits(qat_onnx[0], images),
                             _simulated_logits(qat_dir, images), labels, qat_dir)


def assert_follows_simulated(got, simulated, labels, qat_dir):
    """``got`` are within test_quantization's int8-vs-simulated bounds of ``simulated``
    (AGREEMENT, HITS_APART), the logits 1.25 steps of their range apart on average and
    10 at most."""
    low, high = _checkpoint_ranges(qat_dir)["MobilenetV2/Logits/Conv2d_1c_1x1/act_quant"]
    step = (high - low) / 255
    difference = np.abs(got - simulated)
    assert difference.mean() <= 1.25 * step, (difference.mean(), step)
    assert difference.max() <= 10 * step, (difference.max(), step)
    agreement = np.mean(got.argmax(1) == simulated.argmax(1))
    assert agreement >= AGREEMENT, agreement
    hits = [int(np.sum(logits.argmax(1) == labels)) for logits in (got, simulated)]
    assert abs(hits[0] - hits[1]) <= HITS_APART, hits


def test_a_float_checkpoints_onnx_has_no_qdq(float_onnx):
    """The pairs come from the quantization-aware checkpoint's ranges, nothing else."""
    import onnx
    from export import metadata
    found = [node.op_type for node in onnx.load(float_onnx).graph.node
             if node.op_type in QDQ_OPS]
    assert found == [], found[:4]
    assert "onnx_quantization" not in metadata.read_meta(float_onnx)
