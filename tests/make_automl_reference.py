"""Writes tests/data/automl_parity.json.gz from google/automl's own EfficientNetV2 code.

Not run by the tests (it needs automl's code, which this project does not ship). Made
with the project's TensorFlow 2.15 and automl's efficientnetv2/ folder at commit
HEAD of github.com/google/automl, extracted outside this project:

    git --git-dir=<automl mirror> archive HEAD efficientnetv2 | tar x -C /tmp/automl
    .venv/bin/python -m tests.make_automl_reference /tmp/automl/efficientnetv2

For each of efficientnetv2-b0 and -s it builds ``effnetv2_model.EffNetV2Model`` in a
graph (1000 classes), adds what automl's main.py adds when training (RMSProp with
decay 0.9, momentum 0.9, epsilon 1e-3; ExponentialMovingAverage over
``utils.get_ema_vars()``: trainable variables and batch-norm statistics), and records
every variable's name and shape; sets each model variable to
``automl_value(name, shape)`` and then the batch-norm statistics to those of the input
(``_calibrated``; kept in automl_parity_bn.npz); and records the logits
(training=False) on ``fixed_input()`` (128 px, batch 2) run on one thread. It records the head's shapes with 21,843 classes
(the ImageNet-21k checkpoints) from a second build. Two modules automl imports only for
other paths (tensorflow_addons: group norm; yaml: config files) are stubbed when absent.

automl builds its dense head under tf.name_scope('head'), which TensorFlow 2.x's graph
mode uniquifies to ``head_1``; the published checkpoints (written by TF 1.x / TPU
training) say ``head/dense``, so the names are recorded with ``head/dense``.
"""
import sys
import types

import numpy as np

from tests.automl_reference import (SIZE, automl_value, fixed_input, write_batch_norm,
                                    write_reference)

MODELS = ("efficientnetv2-b0", "efficientnetv2-s")
CLASSES_21K = 21843
CALIBRATION_STEPS = 150  # batch-norm momentum 0.9: 0.9 ** 150 of the start is left


def _import_automl(folder):
    sys.path.insert(0, folder)
    for name in ("tensorflow_addons", "tensorflow_addons.layers", "yaml"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)  # never used on this path
    sys.modules["tensorflow_addons"].layers = sys.modules["tensorflow_addons.layers"]
    # automl's utils.py shares its name with this project's utils package: import
    # theirs in the project's absence, then put ours back.
    ours = dict((k, sys.modules.pop(k)) for k in list(sys.modules)
                if k == "utils" or k.startswith("utils."))
    import effnetv2_model
    automl_utils = sys.modules.pop("utils")
    sys.path.remove(folder)  # its modules stay loaded; "utils" is ours again
    sys.modules.update(ours)
    return effnetv2_model, automl_utils


def _published(name):
    return name.replace("/head_1/dense/", "/head/dense/")


def build(effnetv2_model, automl_utils, tf, model_name, num_classes):
    """(graph, images, logits, batch-norm updates of a training-mode call, model
    variables, every variable) of a training-style build (no stochastic depth or
    dropout, so the training-mode call is deterministic)."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [2, SIZE, SIZE, 3])
        model = effnetv2_model.EffNetV2Model(model_name, {
            "num_classes": num_classes, "survival_prob": None, "dropout_rate": 0.0})
        logits = model(images, training=False)
        model(images, training=True)
        updates = model.updates
        model_variables = tf.compat.v1.global_variables()
        global_step = tf.compat.v1.train.get_or_create_global_step()
        optimizer = tf.compat.v1.train.RMSPropOptimizer(0.01, 0.9, 0.9, 1e-3)
        train_op = optimizer.minimize(tf.reduce_mean(logits), global_step)
        ema = tf.compat.v1.train.ExponentialMovingAverage(0.9999, num_updates=global_step)
        with tf.control_dependencies([train_op]):
            ema.apply(automl_utils.get_ema_vars())
        return (graph, images, logits, updates, model_variables,
                tf.compat.v1.global_variables())


def _calibrated(sess, model_vars, updates, images):
    """Sets every model variable to automl_value, then the batch-norm statistics to the
    reference input's own (training-mode updates until the start has decayed away), so
    each batch norm normalises and the random network stays far from chaos (with
    statistics near identity, float32 rounding grew 1e-4-fold over S's 40 blocks);
    returns {name: statistics}."""
    for var in model_vars:
        var.load(automl_value(_published(var.op.name), var.shape.as_list()), sess)
    for _ in range(CALIBRATION_STEPS):
        sess.run(updates, {images: fixed_input()})
    return dict((_published(v.op.name), sess.run(v)) for v in model_vars
                if "/moving_" in v.op.name)


def reference(folder):
    import tensorflow as tf  # automl's own TF 2 code runs here, never on TF 1.15
    effnetv2_model, automl_utils = _import_automl(folder)
    data, statistics = {}, {}
    for model_name in MODELS:
        graph, images, logits, updates, model_vars, every = build(
            effnetv2_model, automl_utils, tf, model_name, 1000)
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                          inter_op_parallelism_threads=1)
        with graph.as_default(), tf.compat.v1.Session(config=config) as sess:
            statistics.update(_calibrated(sess, model_vars, updates, images))
            out = sess.run(logits, {images: fixed_input()})
        head = [v for v in build(effnetv2_model, automl_utils, tf, model_name,
                                 CLASSES_21K)[4] if "/dense/" in v.op.name]
        data[model_name] = {
            "variables": sorted([_published(v.op.name), v.shape.as_list()] for v in every),
            "model_variables": sorted(_published(v.op.name) for v in model_vars),
            "head_21k": sorted([_published(v.op.name), v.shape.as_list()] for v in head),
            "logits": np.asarray(out, np.float64).tolist(),
            "params": int(sum(np.prod(v.shape.as_list()) for v in model_vars
                              if "moving_" not in v.op.name)),
        }
        print("%s: %d tensors, logits max |x| %.4f, input effect %.4f" % (
            model_name, len(data[model_name]["variables"]), np.abs(out).max(),
            np.abs(out[0] - out[1]).max()))
    return data, statistics


if __name__ == "__main__":
    DATA, STATISTICS = reference(sys.argv[1])
    write_reference(DATA)
    write_batch_norm(STATISTICS)
