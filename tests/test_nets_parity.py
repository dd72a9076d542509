"""Logits parity: every family, built through nets_factory, against a golden file.

Each case builds one registry model at 64 px (batch 2, 10 classes), sets every
variable to values derived only from its name (``variable_value``), feeds a fixed
input and compares with tests/data/nets_parity.{json,npz}: the sorted (variable,
shape) list and end_point keys with static shapes exactly, the logits bit for bit
when this machine is the one that wrote the golden (same CPU model name, AVX-512 flag
and TensorFlow version), else to rtol 1e-4 and a floor of a few hundred float32 steps of
the largest logit (another CPU may pick other kernels; see test_logits).
The cases run in a fresh interpreter: TensorFlow sizes its CPU thread pool by the first
session of a process, and batch statistics summed by two threads differ from one
thread's in the last bits. The golden was written from the code before the nets/
restructuring; rewrite it only for an intended change of the networks:

    .venv/bin/python -m tests.test_nets_parity --write
"""
import collections
import functools
import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from nets import nets_factory
from tests.cli_helpers import ROOT
from utils.tf_compat import tf

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GOLDEN_JSON = os.path.join(DATA, "nets_parity.json")
GOLDEN_NPZ = os.path.join(DATA, "nets_parity.npz")

SIZE, BATCH, CLASSES = 64, 2, 10

# case -> (registry name, get_network_fn kwargs).  Together they cover every family,
# finegrain (v2_035, v3_small_075), a multiplier > 1, the minimalistic V3, both MnasNets,
# fused and squeeze-excite EfficientNetV2 blocks, explicit padding (3x3, 5x5, fused)
# and batch norm on batch statistics (dropout and stochastic depth off, so the
# training case is deterministic).
CASES = collections.OrderedDict([
    ("mobilenet_v2", ("mobilenet_v2", {})),
    ("mobilenet_v2_035", ("mobilenet_v2_035", {})),
    ("mobilenet_v2_140", ("mobilenet_v2_140", {})),
    ("mobilenet_v3_large", ("mobilenet_v3_large", {})),
    ("mobilenet_v3_small_075", ("mobilenet_v3_small_075", {})),
    ("mobilenet_v3_small_minimalistic", ("mobilenet_v3_small_minimalistic", {})),
    ("mnasnet_a1", ("mnasnet_a1", {})),
    ("mnasnet_b1", ("mnasnet_b1", {})),
    ("efficientnet_v2_b0", ("efficientnet_v2_b0", {})),
    ("efficientnet_v2_s", ("efficientnet_v2_s", {})),
    ("mobilenet_v3_large_explicit_padding",
     ("mobilenet_v3_large", {"use_explicit_padding": True})),
    ("efficientnet_v2_b0_explicit_padding",
     ("efficientnet_v2_b0", {"use_explicit_padding": True})),
    ("efficientnet_v2_b0_training",
     ("efficientnet_v2_b0", {"is_training": True, "drop_path_rate": 0.0,
                             "dropout_keep_prob": 1.0})),
    ("mobilenet_v2_training",
     ("mobilenet_v2", {"is_training": True, "dropout_keep_prob": 1.0})),
])

# Cases that magnify rounding far more (test_logits' floor, in float32 steps of their
# largest logit): EfficientNetV2-S's residual stream grows to logits in the hundreds;
# batch norm on batch statistics divides by the variance of 2 images' few last-stage
# pixels. Measured on an AVX2 EPYC against the AVX-512 golden: 5470, 2389 and 151 steps
# (an Intel Xeon: 1930 for EfficientNetV2-S); each allowance is 3x or more of that.
ROUNDING_GAIN = {"efficientnet_v2_s": 2 ** 14, "mobilenet_v2_training": 2 ** 14,
                 "efficientnet_v2_b0_training": 2 ** 11}


def variable_value(name, shape):
    """Values from the variable's name alone (numpy's RandomState is stable across
    versions): He-scaled weights (LeCun-scaled for the linear projections, which feed
    the residual stream), batch-norm statistics near identity with positive variances,
    small offsets, so the logits follow the input rather than the constants and stay
    within a few hundred in every family."""
    rng = np.random.RandomState(zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF)
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "moving_variance":
        value = rng.uniform(0.5, 1.5, shape)
    elif leaf == "gamma":
        value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif leaf in ("beta", "moving_mean", "biases"):
        value = 0.02 * rng.standard_normal(shape)
    else:  # weights [kh, kw, in, out] or depthwise_weights [kh, kw, in, multiplier]
        fan_in = shape[0] * shape[1] * (1 if leaf == "depthwise_weights" else shape[2])
        gain = 1.0 if "/project/" in name else 2.0
        value = np.sqrt(gain / fan_in) * rng.standard_normal(shape)
    return value.astype(np.float32)


def fixed_input():
    """Noise, and half-strength noise over a ramp: two images whose pooled features
    differ, so the logits of one are not those of the other."""
    noise = np.random.RandomState(0).uniform(-1.0, 1.0, [BATCH, SIZE, SIZE, 3])
    rows, cols = np.meshgrid(np.linspace(-1, 1, SIZE), np.linspace(-1, 1, SIZE),
                             indexing="ij")
    noise[1] = 0.5 * noise[1] + np.stack([cols, rows, cols * rows], axis=-1)
    return noise.astype(np.float32)


def machine():
    """What decides whether two runs may differ in the last bit."""
    model, avx512 = "unknown", False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags":
                    avx512 = avx512 or "avx512f" in value.split()
    except IOError:
        pass
    return {"cpu": model, "avx512f": avx512, "tensorflow": tf.version.VERSION}


@functools.lru_cache(maxsize=None)
def run_case(case):
    """Builds, fills and runs one case in its own graph (one thread: a fixed
    reduction order).  Returns (variables, end_points, logits)."""
    name, kwargs = CASES[case]
    kwargs = dict(kwargs)
    is_training = kwargs.pop("is_training", False)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [BATCH, SIZE, SIZE, 3])
        network_fn = nets_factory.get_network_fn(name, CLASSES, is_training=is_training,
                                                 **kwargs)
        logits, end_points = network_fn(images)
        variables = sorted(tf.global_variables(), key=lambda v: v.op.name)
        feed = dict((v.initializer.inputs[1],
                     variable_value(v.op.name, v.get_shape().as_list()))
                    for v in variables)
        feed_images = fixed_input()
        config = tf.ConfigProto(intra_op_parallelism_threads=1,
                                inter_op_parallelism_threads=1)
        with tf.Session(graph=graph, config=config) as sess:
            sess.run([v.initializer for v in variables], feed)
            out = sess.run(logits, {images: feed_images})
    return ([[v.op.name, v.get_shape().as_list()] for v in variables],
            sorted([k, t.get_shape().as_list()] for k, t in end_points.items()),
            out)


@functools.lru_cache(maxsize=None)
def golden():
    with open(GOLDEN_JSON) as f:
        meta = json.load(f)
    with np.load(GOLDEN_NPZ) as logits:
        return meta, dict((k, logits[k]) for k in logits.files)


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """{case: (variables, end_points, logits)} from a fresh interpreter (see above)."""
    out = str(tmp_path_factory.mktemp("parity"))
    done = subprocess.run([sys.executable, "-m", "tests.test_nets_parity", "--dump", out],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(out, "cases.json")) as f:
        cases = json.load(f)["cases"]
    with np.load(os.path.join(out, "logits.npz")) as logits:
        return dict((case, (cases[case]["variables"], cases[case]["end_points"],
                            logits[case])) for case in cases)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_names_shapes_and_end_points(case, computed):
    meta, _ = golden()
    variables, end_points, _ = computed[case]
    assert variables == meta["cases"][case]["variables"]
    assert end_points == meta["cases"][case]["end_points"]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_logits(case, computed):
    meta, logits = golden()
    got = computed[case][2]
    assert got.shape == (BATCH, CLASSES) and np.all(np.isfinite(got))
    if meta["machine"] == machine():
        np.testing.assert_array_equal(got, logits[case])
    else:
        # Another CPU's kernels sum in another order. A logit is a sum of terms about as
        # large as the largest logit, so its rounding error is counted in float32 steps
        # of that scale (eps32 * scale), however small the logit itself: the floor. The
        # other cases differed by at most 22 steps here (an AVX2 EPYC against the
        # AVX-512 golden): 256 keeps 10x in hand, on top of rtol.
        scale = float(np.abs(logits[case]).max())
        steps = ROUNDING_GAIN.get(case, 2 ** 8)
        np.testing.assert_allclose(got, logits[case], rtol=1e-4,
                                   atol=steps * np.finfo(np.float32).eps * scale)


def test_golden_covers_every_case():
    meta, logits = golden()
    assert sorted(meta["cases"]) == sorted(logits) == sorted(CASES)


def write_cases(json_path, npz_path, extra=None):
    """Runs every case; writes their variables and end_points (json) and logits (npz)."""
    cases, logits = {}, {}
    for case in CASES:
        variables, end_points, out = run_case(case)
        cases[case] = {"model": CASES[case][0], "kwargs": CASES[case][1],
                       "variables": variables, "end_points": end_points}
        logits[case] = out
        print("%-40s %4d variables  |logits| max %.3g" % (case, len(variables),
                                                          np.abs(out).max()))
    record = dict(extra or {}, cases=cases)
    with open(json_path, "w") as f:
        json.dump(record, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    np.savez(npz_path, **logits)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        if not os.path.isdir(DATA):
            os.makedirs(DATA)
        write_cases(GOLDEN_JSON, GOLDEN_NPZ, {"machine": machine(), "size": SIZE,
                                              "batch": BATCH, "num_classes": CLASSES})
    elif len(sys.argv) == 3 and sys.argv[1] == "--dump":
        write_cases(os.path.join(sys.argv[2], "cases.json"),
                    os.path.join(sys.argv[2], "logits.npz"))
    else:
        sys.exit("usage: python -m tests.test_nets_parity --write | --dump DIR")
