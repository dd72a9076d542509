"""Reference data from google/automl's own EfficientNetV2 code, and what rebuilds it.

tests/data/automl_parity.json.gz holds, for efficientnetv2-b0 and -s, what
tests/make_automl_reference.py recorded from automl's ``effnetv2_model.EffNetV2Model``:
every tensor name and shape a training run of automl's main.py writes (weights, their
ExponentialMovingAverage shadows, RMSProp slots, global_step), the 21k head's shapes,
and the logits of the network on ``fixed_input()`` with every weight set to
``automl_value(name, shape)`` and the batch-norm statistics to those recorded in
automl_parity_bn.npz (the input's own). The weights come from the automl name alone,
so a test writes the same checkpoint without automl's code and checks our network
against the recorded logits.
"""
import gzip
import json
import os
import zlib

import numpy as np


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REFERENCE = os.path.join(DATA, "automl_parity.json.gz")
BATCH_NORM = os.path.join(DATA, "automl_parity_bn.npz")
SIZE = 128  # at 64 px S's last blocks are 2 x 2 and float32 rounding grows too much
EMA = "/ExponentialMovingAverage"
# What automl's training writes beside a variable: the moving average and RMSProp's
# two slots (mean square, momentum).
COMPANIONS = (EMA, "/RMSProp", "/RMSProp_1")


def automl_value(name, shape):
    """A tensor's value from its automl name alone (numpy's RandomState is stable across
    versions): convolution kernels He-scaled, LeCun-scaled where linear (the dense head,
    and the projections, conv2d_1, which feed the residual stream), so the input still
    shows in the logits and they stay moderate; batch-norm statistics near identity,
    small offsets."""
    rng = np.random.RandomState(zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF)
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "moving_variance":
        value = rng.uniform(0.5, 1.5, shape)
    elif leaf == "gamma" and "/tpu_batch_normalization_2/" in name:
        value = 0.1 + 0.01 * rng.standard_normal(shape)
    elif leaf == "gamma":
        value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif leaf in ("beta", "moving_mean", "bias"):
        value = 0.02 * rng.standard_normal(shape)
    else:  # kernel [kh, kw, in, out], depthwise_kernel [kh, kw, in, 1], dense [in, out]
        fan_in = int(np.prod(shape[:-1])) if leaf != "depthwise_kernel" else shape[0] * shape[1]
        gain = 1.0 if "/dense/" in name else 2.0
        value = np.sqrt(gain / fan_in) * rng.standard_normal(shape)
    return value.astype(np.float32)


def fixed_input(size=SIZE):
    """Two images: noise, and half-strength noise over a ramp (tests/test_nets_parity.py's
    input at any size)."""
    noise = np.random.RandomState(0).uniform(-1.0, 1.0, [2, size, size, 3])
    rows, cols = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size),
                             indexing="ij")
    noise[1] = 0.5 * noise[1] + np.stack([cols, rows, cols * rows], axis=-1)
    return noise.astype(np.float32)


def load_reference():
    with gzip.open(REFERENCE, "rt") as stream:
        return json.load(stream)


def write_reference(data, path=REFERENCE):
    with gzip.open(path, "wt") as stream:
        json.dump(data, stream, sort_keys=True)


def load_batch_norm():
    """{automl name: float32 array}: the recorded batch-norm statistics."""
    with np.load(BATCH_NORM) as stored:
        return dict((key, stored[key]) for key in stored.files)


def write_batch_norm(statistics, path=BATCH_NORM):
    np.savez_compressed(path, **dict((k, np.asarray(v, np.float32))
                                     for k, v in statistics.items()))
