"""Training speed of quantization-aware training against float, side by side in one
process (issue 33): the same MobileNetV2-CIFAR training step in bare tf.compat.v1
sessions, as

  float     the network as built
  contrib   TF 1.15's own tf.contrib.quantize.create_training_graph, loaded from the
            tensorflow-cpu 1.15.0 wheel given as --contrib_wheel (its pure-Python
            contrib/quantize and contrib/graph_editor, extracted to a temporary folder)
  before    ours with the two-convolution training fold: quantization/fold_batch_norm.py
            as of --before_commit (read with git show), swapped in while its graph is built
  after     ours as checked out (one convolution per folded layer)

Every variant quantizes from the first step (quant_delay 0) with batch norm not frozen,
contrib's create_training_graph defaults. Get the wheel (110 MB; never commit it) with

  pip download --no-deps --only-binary=:all: --python-version 37 \\
      --platform manylinux2010_x86_64 --implementation cp --abi cp37m \\
      tensorflow-cpu==1.15.0 -d /tmp/tf115

  .venv/bin/python -m benchmarks.qat_speed --contrib_wheel=/tmp/tf115/tensorflow_cpu-...whl \\
      [--batch_size=128 --rounds=7 --steps=4] [--out=benchmarks/QAT_SPEED.json]

All sessions are built first; then each round times --steps steps of every variant in
turn, the order rotated each round, so a neighbour's load or a drifting clock hits all
of them alike. Warm-up steps (first runs: Grappler, allocations) are not timed. Figures:
the median over rounds of steps/s and of this process's CPU seconds per step, and of
each round's ratios (by wall clock and by CPU time); the share of the CPU that other
work took meanwhile is recorded, since a busy neighbour makes the wall clock noisy.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zipfile

from benchmarks import machine
from utils import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The last commit whose fold ran each folded layer's convolution twice.
BEFORE_COMMIT = "7c12e8ca24f7ead421d5be2edb5250f5af5732bb"
CONTRIB_PARTS = ("tensorflow_core/contrib/quantize/", "tensorflow_core/contrib/graph_editor/")
VARIANTS = ("float", "contrib", "before", "after")
NUM_CLASSES = 10


def _load_contrib(wheel, folder):
    """TF 1.15's contrib.quantize from ``wheel``: its files under ``folder``, and
    ``tensorflow.contrib`` a package whose path is that folder, so its own imports
    (``tensorflow.contrib.quantize.python...``, ``tensorflow.contrib.graph_editor``)
    resolve there. TF 2.15 still has every ``tensorflow.python`` module they import:
    no other shim. Returns its quantize_graph module."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(CONTRIB_PARTS)
                 and n.endswith(".py") and "_test" not in n]
        archive.extractall(folder, names)
    import tensorflow  # noqa: F401  (the real package; contrib is added under it)
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.__path__ = [os.path.join(folder, "tensorflow_core", "contrib")]
    sys.modules["tensorflow.contrib"] = contrib
    from tensorflow.contrib.quantize.python import quantize_graph
    return quantize_graph


def _old_fold_module(commit):
    """quantization/fold_batch_norm.py as of ``commit``, as a module."""
    source = subprocess.check_output(
        ["git", "show", "%s:quantization/fold_batch_norm.py" % commit], cwd=ROOT)
    module = types.ModuleType("fold_batch_norm_" + commit[:7])
    exec(compile(source, "fold_batch_norm@" + commit[:7], "exec"), module.__dict__)
    return module


def _network(args, quantize):
    """Logits of the model on a fixed random batch, built in the default graph."""
    import numpy as np

    from nets import nets_factory
    from utils.tf_compat import tf
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(-1, 1, [args.batch_size, args.image_size,
                                             args.image_size, 3]).astype(np.float32))
    labels = tf.constant(rng.randint(0, NUM_CLASSES, args.batch_size))
    logits, _ = nets_factory.get_network_fn(args.model, NUM_CLASSES, is_training=True,
                                            quantize=quantize)(images)
    return logits, labels


def _train_op(logits, labels):
    from utils.tf_compat import tf
    loss = tf.losses.sparse_softmax_cross_entropy(labels, logits)
    loss += tf.losses.get_regularization_loss()
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        return tf.train.MomentumOptimizer(0.01, 0.9).minimize(loss)


def _build(variant, args, contrib, old_fold):
    """(session, train_op) of ``variant`` in its own graph."""
    from quantization import rewrite
    from utils.tf_compat import tf
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        ours = rewrite.Settings(0, None) if variant in ("before", "after") else None
        saved = rewrite.fold_batch_norm
        if variant == "before":
            rewrite.fold_batch_norm = old_fold
        try:
            logits, labels = _network(args, ours)
        finally:
            rewrite.fold_batch_norm = saved
        if variant == "contrib":
            contrib.create_training_graph(graph, quant_delay=0)
        train_op = _train_op(logits, labels)
        init = tf.global_variables_initializer()
    config = tf.ConfigProto(intra_op_parallelism_threads=args.threads,
                            inter_op_parallelism_threads=args.threads)
    session = tf.Session(graph=graph, config=config)
    session.run(init)
    return session, train_op


def _convolutions_run(train_op):
    """Forward Conv2D / DepthwiseConv2dNative ops the train op depends on."""
    from utils.tf_compat import ops_feeding
    return sum(1 for op in ops_feeding(train_op)
               if op.type in ("Conv2D", "DepthwiseConv2dNative"))


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(session, train_op, steps):
    """{"steps_per_s": over ``steps`` steps, "cpu_s_per_step": this process's CPU
    seconds per step (only this session runs meanwhile: a measure of the work that a
    neighbour's load changes far less than the wall clock), "others_cpu": others'
    share of the machine meanwhile}."""
    meter = machine.LoadMeter()
    meter.start()
    started, cpu = time.time(), _cpu_seconds()
    for _ in range(steps):
        session.run(train_op)
    return {"steps_per_s": steps / (time.time() - started),
            "cpu_s_per_step": (_cpu_seconds() - cpu) / steps, "others_cpu": meter.stop()}


def _measure(sessions, args):
    """{variant: [_timed(...) per round]}."""
    for session, train_op in sessions.values():
        for _ in range(args.warmup):
            session.run(train_op)
    rounds = dict((v, []) for v in sessions)
    names = list(sessions)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for variant in names[shift:] + names[:shift]:
            figures = _timed(sessions[variant][0], sessions[variant][1], args.steps)
            rounds[variant].append(figures)
            print("round %d %-8s %.3f steps/s, %.2f CPU s/step (others' CPU %s)" % (
                round_index, variant, figures["steps_per_s"], figures["cpu_s_per_step"],
                "?" if figures["others_cpu"] is None else "%.2f" % figures["others_cpu"]),
                flush=True)
    return rounds


def _ratio(rounds, key, over, under):
    """Median over rounds of ``over``'s figure / ``under``'s (paired by round)."""
    return statistics.median([a[key] / b[key] for a, b in zip(rounds[over], rounds[under])])


def _summary(rounds, batch_size):
    """Medians per variant; speed ratios by wall clock and by CPU time (the inverse
    ratio of CPU seconds per step)."""
    summary = {}
    for variant, figures in rounds.items():
        rate = statistics.median(f["steps_per_s"] for f in figures)
        shares = [f["others_cpu"] for f in figures if f["others_cpu"] is not None]
        summary[variant] = {
            "steps_per_s": rate, "images_per_s": rate * batch_size,
            "cpu_s_per_step": statistics.median(f["cpu_s_per_step"] for f in figures),
            "ratio_to_float": _ratio(rounds, "steps_per_s", variant, "float"),
            "cpu_ratio_to_float": _ratio(rounds, "cpu_s_per_step", "float", variant),
            "others_cpu_share": statistics.median(shares) if shares else None}
    for other in ("contrib", "before"):
        if other in rounds:
            summary["after_over_" + other] = _ratio(rounds, "steps_per_s", "after", other)
            summary["cpu_after_over_" + other] = _ratio(rounds, "cpu_s_per_step", other,
                                                        "after")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contrib_wheel", help="tensorflow-cpu 1.15.0 wheel (else no "
                        "contrib figure)")
    parser.add_argument("--before_commit", default=BEFORE_COMMIT)
    parser.add_argument("--model", default="mobilenet_v2_cifar")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "QAT_SPEED.json"))
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="contrib_quantize_")
    try:
        contrib = _load_contrib(args.contrib_wheel, folder) if args.contrib_wheel else None
        old_fold = _old_fold_module(args.before_commit)
        variants = [v for v in VARIANTS if v != "contrib" or contrib is not None]
        sessions = dict((v, _build(v, args, contrib, old_fold)) for v in variants)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    convolutions = dict((v, _convolutions_run(s[1])) for v, s in sessions.items())
    print("forward convolutions per train step: %s" % convolutions, flush=True)
    rounds = _measure(sessions, args)
    result = {
        "settings": dict(vars(args), out=None),
        "contrib_wheel": None if not args.contrib_wheel else {
            "file": os.path.basename(args.contrib_wheel),
            "sha256": files.sha256_of(args.contrib_wheel)},
        "before": "quantization/fold_batch_norm.py at " + args.before_commit,
        "after": machine.git_commit(ROOT),
        "machine": machine.describe(),
        "versions": machine.package_versions(["tensorflow", "tensorflow-cpu", "tf-slim"]),
        "forward_convolutions_per_step": convolutions,
        "by_round": rounds, "summary": _summary(rounds, args.batch_size)}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
    print(json.dumps(result["summary"], indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
