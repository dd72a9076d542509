"""What quantization-aware training of MobileNetV2 leaves in its checkpoints, checked
against the checkpoints' own weights: the QAT runs on the npu_bridge stand-in and across
two workers share these, and the outlier case of per-tensor int8 (conftest's
``digits_outlier``)."""
import os
import shutil

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


EMA = "/ExponentialMovingAverage"
# The outlier case's layer: MobileNetV2's first depthwise convolution.
OUTLIER_SCOPE = "MobilenetV2/expanded_conv/"


def averaged(reader, name):
    """The checkpoint's value of ``name``: its moving average where it has one (what
    the evaluator restores)."""
    return reader.get_tensor(name + EMA if reader.has_tensor(name + EMA) else name)


def outlier_ratio(checkpoint, scope=OUTLIER_SCOPE + "depthwise"):
    """The largest output channel of ``scope``'s batch-norm-folded weights over their
    median (by largest magnitude): per-tensor int8 gives every channel the largest's
    step."""
    from utils.tf_compat import tf
    reader = tf.train.load_checkpoint(checkpoint)
    weights = averaged(reader, scope + "/depthwise_weights")
    scale = (averaged(reader, scope + "/BatchNorm/gamma")
             / np.sqrt(averaged(reader, scope + "/BatchNorm/moving_variance") + 0.001))
    per_channel = np.abs(weights * scale[:, None]).max(axis=(0, 1, 3))
    return per_channel.max() / np.median(per_channel)


def write_outlier_checkpoint(float_dir, destination, channel=5, ratio=237.0):
    """A copy of the float checkpoint in the folder ``destination`` whose first depthwise
    layer has one folded channel ``ratio`` times the median before the edit (raw weights
    and moving averages alike): the shape of the case where per-tensor int8 loses. The
    projection that reads that channel is zeroed, so the float network simply goes
    without it. Built, not waited for: which channel a short run leaves near-constant
    depends on the machine's float rounding (this one's 440 steps left none; the previous
    one's left a 237x channel). Returns the checkpoint's prefix."""
    from utils.checkpoints import resolve_checkpoint, write_tensors
    from utils.tf_compat import tf
    source = resolve_checkpoint(float_dir)
    reader = tf.train.load_checkpoint(source)
    tensors = dict((n, reader.get_tensor(n)) for n in reader.get_variable_to_shape_map())
    for suffix in ("", EMA):
        weights = tensors[OUTLIER_SCOPE + "depthwise/depthwise_weights" + suffix]
        sigma = np.sqrt(tensors[OUTLIER_SCOPE + "depthwise/BatchNorm/moving_variance"
                                + suffix] + 0.001)
        folded = np.abs(weights / sigma[None, None, :, None]).max(axis=(0, 1, 3))
        weights[:, :, channel, :] *= ratio * np.median(folded) / folded[channel]
        tensors[OUTLIER_SCOPE + "project/weights" + suffix][:, :, channel, :] = 0.0
    prefix = os.path.join(destination, os.path.basename(source))
    write_tensors(prefix, tensors)
    shutil.copyfile(os.path.join(float_dir, "model_spec.json"),
                    os.path.join(destination, "model_spec.json"))
    return prefix
