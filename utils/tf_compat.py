"""The one place that imports TensorFlow and tf-slim for the project.

Everything imports ``tf`` and ``slim`` from here so that the two TensorFlow worlds
(TF 2.15 here, the vendor's TF 1.15 on Ascend) see the same ``tf.compat.v1`` API.
"""
import importlib
import os
import sys

# TF's C++ side prints start-up noise (cuFFT/cuBLAS registration, CPU features) at import,
# before any flag is parsed; keep it off the console unless the user set a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow.compat.v1 as tf  # noqa: E402


def _bridge_tf_keras_legacy_layers():
    # tf-slim 1.1.0's batch_norm imports ``tf_keras.legacy_tf_layers``; tf-keras 2.15
    # ships that package as ``tf_keras.src.legacy_tf_layers``. Alias it (and its
    # submodules) once so slim finds it. TF 1.15 has no tf_keras: nothing to do.
    try:
        importlib.import_module("tf_keras.legacy_tf_layers")
        return
    except ImportError:
        pass
    try:
        legacy = importlib.import_module("tf_keras.src.legacy_tf_layers")
    except ImportError:
        return
    sys.modules["tf_keras.legacy_tf_layers"] = legacy
    for name in ("base", "convolutional", "core", "normalization", "pooling",
                 "variable_scope_shim"):
        try:
            sys.modules["tf_keras.legacy_tf_layers." + name] = importlib.import_module(
                "tf_keras.src.legacy_tf_layers." + name)
        except ImportError:
            pass


_bridge_tf_keras_legacy_layers()

import tf_slim as slim  # noqa: E402  (must follow the bridge)


def do_not_convert(func):
    """Keeps autograph away from graph-building code (model_fn): on TF 2.15 it spends
    ~20 s converting 52 slim.batch_norm calls for nothing, since model_fn has no
    data-dependent Python control flow. Absent on old 1.x builds: then a no-op."""
    experimental = getattr(getattr(tf, "autograph", None), "experimental", None)
    wrapper = getattr(experimental, "do_not_convert", None)
    return wrapper(func) if wrapper is not None else func


__all__ = ["tf", "slim", "do_not_convert"]
