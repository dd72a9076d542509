"""What quantization-aware training of MobileNetV2 leaves in its checkpoints, checked
against the checkpoints' own weights: the QAT runs on the npu_bridge stand-in and across
two workers share these."""
import numpy as np
import pytest

# The one layer without batch norm: the range of its weights is theirs, unfolded.
LOGITS = "MobilenetV2/Logits/Conv2d_1c_1x1/"


def moving_statistics(reader):
    """{name: value} of every batch-norm moving statistic a checkpoint holds."""
    found = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
             if name.endswith(("/moving_mean", "/moving_variance"))}
    assert found, "no batch-norm statistics in the checkpoint"
    return found


def changed(before, after):
    """Names of the moving statistics (moving_statistics) that differ between the two."""
    assert sorted(before) == sorted(after), "different batch norms"
    return sorted(name for name in before if not np.array_equal(before[name], after[name]))


def assert_ranges_learned(reader, weights_read, steps):
    """The logits' ranges in ``reader`` are learned ones, not their initial [-6, 6] and
    [0, 6]: the weights' is [-m, m] with m = max |w| of ``weights_read``, the weights the
    last step read (contrib's last-value range, symmetric for int8 kernels); the
    activations' moving average counted ``steps`` steps and reached below 0 (logits of a
    freshly initialized layer are of both signs). Messages say what differs: pytest
    rewrites the asserts of test modules only."""
    bound = float(np.abs(weights_read).max())
    expected = {"weights_quant/min": -bound, "weights_quant/max": bound,
                "act_quant/min/local_step": steps}
    learned = {name: float(reader.get_tensor(LOGITS + name)) for name in expected}
    assert learned == pytest.approx(expected, rel=1e-5), (learned, expected)
    minimum = float(reader.get_tensor(LOGITS + "act_quant/min"))
    assert minimum < 0.0, minimum
