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


def _import_slim_without_sklearn():
    # tf-slim imports sklearn.metrics at import time, for a metric-learning loss we never
    # use; with scikit-learn installed (the digits demo needs it) that pulls in scipy and
    # costs every process ~1.3 s of start-up. Hide sklearn.metrics while tf-slim loads
    # (its import then fails, as tf-slim allows) and let later imports find it.
    hidden = "sklearn.metrics" not in sys.modules
    if hidden:
        sys.modules["sklearn.metrics"] = None
    try:
        return importlib.import_module("tf_slim")
    finally:
        if hidden:
            del sys.modules["sklearn.metrics"]


def _bridge_ops_tensor():
    # tf-slim's own fused batch norm (see nets/mobilenet/mobilenet.py training_scope)
    # checks isinstance(x, ops.Tensor); TF 2.14+ moved the class out of that module and
    # kept it as tf.Tensor. TF 1.15 still has it: nothing to do there.
    from tensorflow.python.framework import ops
    if not hasattr(ops, "Tensor"):
        ops.Tensor = tf.Tensor


_bridge_tf_keras_legacy_layers()
_bridge_ops_tensor()
slim = _import_slim_without_sklearn()  # must follow the bridges


def do_not_convert(func):
    """Keeps autograph away from graph-building code (model_fn, tf.data map functions):
    on TF 2.15 it spends ~20 s converting MobileNetV2's slim layers and seconds on the
    preprocessing, for nothing, since neither has data-dependent Python control flow. Absent on old 1.x builds: then a no-op."""
    experimental = getattr(getattr(tf, "autograph", None), "experimental", None)
    wrapper = getattr(experimental, "do_not_convert", None)
    return wrapper(func) if wrapper is not None else func


__all__ = ["tf", "slim", "do_not_convert"]
