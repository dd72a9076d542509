"""The one place that imports TensorFlow and tf-slim for the project.

Everything imports ``tf`` and ``slim`` from here so that the two TensorFlow worlds
(TF 2.15 here, the vendor's TF 1.15 on Ascend) see the same ``tf.compat.v1`` API.
"""
import importlib
import importlib.machinery
import importlib.util
import os
import sys

# TF's C++ side prints start-up noise (cuFFT/cuBLAS registration, CPU features) at import,
# before any flag is parsed; keep it off the console unless the user set a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow.compat.v1 as tf  # noqa: E402


class _LegacyLayersAlias(object):
    """Answers ``import tf_keras.legacy_tf_layers[.x]`` with tf-keras 2.15's
    ``tf_keras.src.legacy_tf_layers[.x]``: tf-slim 1.1.0's batch norm imports the old
    name on its Keras-layer path. Only when something imports it: importing tf_keras costs
    every process ~0.8 s, and our networks' batch norm takes slim's fused path, which
    never does. A tf_keras that has the old name keeps it; TF 1.15 has no tf_keras and
    never asks. Submodules resolve to the same module objects as under the new name (a
    second copy of a module would hold second copies of its classes)."""
    OLD, NEW = "tf_keras.legacy_tf_layers", "tf_keras.src.legacy_tf_layers"

    def __init__(self):
        self._real_specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.OLD:
            if importlib.machinery.PathFinder.find_spec(fullname, path) is not None:
                return None  # this tf_keras has it under the old name
        elif not (fullname.startswith(self.OLD + ".")
                  and sys.modules.get(self.OLD) is sys.modules.get(self.NEW)):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        real = importlib.import_module(self.NEW + spec.name[len(self.OLD):])
        self._real_specs[spec.name] = real.__spec__
        return real

    def exec_module(self, module):
        # The import system stamped the alias's spec on the real module; give it back.
        module.__spec__ = self._real_specs.pop(module.__spec__.name, module.__spec__)


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
    # tf-slim's own fused batch norm (see nets/builder.py training_scope)
    # checks isinstance(x, ops.Tensor); TF 2.14+ moved the class out of that module and
    # kept it as tf.Tensor. TF 1.15 still has it: nothing to do there.
    from tensorflow.python.framework import ops
    if not hasattr(ops, "Tensor"):
        ops.Tensor = tf.Tensor


sys.meta_path.insert(0, _LegacyLayersAlias())
_bridge_ops_tensor()
slim = _import_slim_without_sklearn()  # must follow the bridges


def do_not_convert(func):
    """Keeps autograph away from graph-building code (model_fn, tf.data map functions):
    on TF 2.15 it spends ~20 s converting MobileNetV2's slim layers and seconds on the
    preprocessing, for nothing, since neither has data-dependent Python control flow. Absent on old 1.x builds: then a no-op."""
    experimental = getattr(getattr(tf, "autograph", None), "experimental", None)
    wrapper = getattr(experimental, "do_not_convert", None)
    return wrapper(func) if wrapper is not None else func


def reroute(consumers, old, new):
    """Makes each op in ``consumers`` read ``new`` where it read ``old``; returns how
    many inputs changed. Rewriting a built graph in place (quantization/) has no public
    API in either TensorFlow: ``Operation._update_input`` is what TF 1.15's own
    contrib.quantize (through graph_editor) used, and TF 2.15 keeps it."""
    changed = 0
    for op in consumers:
        for index, tensor in enumerate(list(op.inputs)):
            if tensor.name == old.name:
                op._update_input(index, new)  # pylint: disable=protected-access
                changed += 1
    return changed


def ops_feeding(op):
    """Every op that running ``op`` runs: its data and control inputs, transitively."""
    seen, pending = set(), [op]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(t.op for t in current.inputs)
            pending.extend(current.control_inputs)
    return seen


__all__ = ["tf", "slim", "do_not_convert", "reroute", "ops_feeding"]
