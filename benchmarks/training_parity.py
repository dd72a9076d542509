"""Step parity (issue 34): our train.py under a recipe, deterministic, against an
independent PyTorch implementation of the same recipe (benchmarks/parity_reference.py,
in .venv-bench) from the same starting weights on the same batches.

  .venv/bin/python -m benchmarks.training_parity [--recipe=mobilenet_v2_cifar10] \\
      [--records=CIFAR10_TFRECORDS] [--steps=50] [--batch_size=128] \\
      [--out=benchmarks/TRAINING_PARITY.json]
  .venv/bin/python -m benchmarks.training_parity --quick     # tiny images, 3 steps

1. train.py --deterministic with the recipe's flags (its length cut to --steps, so its
   cosine ends there; --batch_size scales its learning rate as the recipe says), a
   checkpoint at step 0 and at the end, a summary every step;
2. the batches that run read, made again by the same input function with the same seed
   (the first step's loss agreeing to 1e-4 shows they are the same), and its step-0
   weights;
3. the reference, configured from what our graph does (the decayed weights, batch norm's
   epsilon read from the built graph; the run's learning rate, momentum, decay), trains
   the same steps with torch.optim.SGD, nn.BatchNorm2d, nn.CrossEntropyLoss and
   CosineAnnealingLR;
4. the loss at every step (relative difference: first step within 1e-4, every step
   within 2e-2) and the weights at the end.

Then each deliberate choice of ours that the recipe's source does otherwise is measured
on its own: the reference rerun with the source's choice, its loss compared the same way.
``--plant`` gives the reference a semantic difference ours does not have (the check must
then fail: tests/test_training_parity.py).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PYTHON = os.path.join(ROOT, ".venv-bench", "bin", "python")
FIRST_STEP_TOLERANCE = 1e-4   # the first step's loss: the same forward pass
STEP_TOLERANCE = 2e-2         # every step's loss: reported (float32 blurs trajectories)
LEARNING_RATE_TOLERANCE = 1e-6  # the schedule, step by step (float32 summaries)
DECAY_TOLERANCE = 1e-2        # the first step's decay part against -lr * decay * w
STATISTICS_TOLERANCE = 1e-2   # the batch statistics that one step's moving averages took
AVERAGE_TOLERANCE = 1e-3      # the weights' moving averages after one step (of their move)
FLOAT32_ULPS = 4              # float32's resolution: 4 units in the last place of a value
# The first step's decay is measured at this decay, in both implementations: at the
# recipes' (4e-5 to 5e-4) one step's decay part is one or two float32 ulps of a weight.
DECAY_PROBE = 0.05
EMA_SUFFIX = "/ExponentialMovingAverage"
# The recipes the reference implements: recipe -> the reference's network.
NETWORKS = {"mobilenet_v2_cifar10": "mobilenet_v2_cifar", "mobilenet_v2": "mobilenet_v2"}
# What the parity runs change in a recipe, in both implementations: dropout's masks
# cannot be shared between them; ImageNet recipes train at a small image size.
PARITY_OVERRIDES = {"mobilenet_v2": ("dropout_keep_prob=1.0", "train_image_size=64")}
# Where a recipe's source does otherwise than we do on purpose: name -> (what, the
# reference's config changes that make the source's choice).
SOURCE_CHOICES = {
    "mobilenet_v2_cifar10": {
        "decay_every_parameter": (
            "kuangliu's main.py decays every parameter (SGD weight_decay=5e-4 on batch-norm "
            "gammas and betas, depthwise kernels and the head's bias too); TF-Slim's "
            "training_scope, and so ours, decays only the conv and head kernels",
            {"decay_every_parameter": True}),
        "symmetric_padding": (
            "kuangliu's convolutions pad 1 on every side; TensorFlow's SAME pads a stride-2 "
            "3x3 layer on an even size only after (one row and column)",
            {"padding": "symmetric"}),
        "bn_epsilon_1e-5": (
            "PyTorch's BatchNorm2d epsilon is 1e-5; TF-Slim's training_scope uses 1e-3",
            {"bn_epsilon": 1e-5}),
    },
    # The source is TF-Slim itself: these are what a PyTorch port would do by default.
    "mobilenet_v2": {
        "decay_every_parameter": (
            "torch.optim's weight_decay applies to every parameter it is given (batch-norm "
            "parameters, depthwise kernels, biases); TF-Slim decays conv and head kernels",
            {"decay_every_parameter": True}),
        "moving_average_without_warmup": (
            "a fixed-decay average (torch.optim.swa_utils.get_ema_multi_avg_fn, timm's "
            "ModelEmaV2) has no warm-up; TensorFlow's with num_updates averages at "
            "min(decay, (1 + n) / (10 + n)) at step n",
            {"moving_average_warmup": False}),
        "bn_epsilon_1e-5": (
            "PyTorch's BatchNorm2d epsilon is 1e-5; TF-Slim's training_scope uses 1e-3",
            {"bn_epsilon": 1e-5}),
    },
}
# Planted differences (the check must catch them): name -> reference config changes.
PLANTS = {"decay_batch_norm_gammas": {"decay_batch_norm_gammas": True},
          "bn_momentum_0.01": {"bn_momentum": 0.01}}


def _run(command, **kwargs):
    out = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, **kwargs)
    if out.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(command[:3]), out.stderr[-3000:]))
    return out


def _our_flags(recipe, records, train_dir, steps, batch_size, overrides=()):
    """train.py's flags: the recipe's, then ``overrides`` ("name=value"), then the
    run's length, checkpoints and summaries."""
    from training import recipes
    flags = dict(recipes.load(recipe).flags)
    flags.pop("max_epoch", None)
    if batch_size:
        flags["batch_size"] = str(batch_size)
    flags.update(item.split("=", 1) for item in PARITY_OVERRIDES.get(recipe, ()))
    if float(flags.get("warmup_epochs", 0)) > 0:  # the first fifth of the cut run
        with open(os.path.join(records, "dataset_meta.json")) as handle:
            images = json.load(handle)["splits"]["train"]["num_samples"]
        flags["warmup_epochs"] = repr(max(1, steps // 5) / float(
            images // int(flags["batch_size"])))
    flags.update(item.split("=", 1) for item in overrides)
    flags.update(max_train_steps=str(steps), save_checkpoints_steps=str(steps),
                 log_every_n_steps="1", dataset_dir=records, train_dir=train_dir)
    return ["--%s=%s" % item for item in flags.items()] + ["--deterministic"]


def _train_ours(argv, train_dir):
    """train.py with ``argv`` into ``train_dir``, unless a run with the same flags finished
    there (our side does not depend on the reference's config: --plant reuses it)."""
    stamp = os.path.join(train_dir, "parity_argv.json")
    if os.path.exists(stamp):
        with open(stamp) as handle:
            if json.load(handle) == argv:
                return
    shutil.rmtree(train_dir, ignore_errors=True)
    _run([sys.executable, os.path.join(ROOT, "train.py")] + argv)
    with open(stamp, "w") as handle:
        json.dump(argv, handle)


def _env(argv):
    from absl import flags

    import env as env_lib
    env_lib.define_train_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["training_parity"] + argv)
    return env_lib.load_env(flags.FLAGS, environ={})


def _batches(env, steps):
    """The first ``steps`` training batches, as train.py's input function gives them in
    a graph seeded as the Estimator seeds it."""
    from training import loop
    from utils.tf_compat import tf
    with tf.Graph().as_default():
        tf.set_random_seed(env.seed)
        images, labels = tf.data.make_one_shot_iterator(loop.train_input_fn(env)()).get_next()
        with tf.Session() as sess:
            pairs = [sess.run([images, labels]) for _ in range(steps)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _graph_facts(env):
    """(the weights our graph decays, batch norm's epsilon): read from the network our
    training builds, not from its code."""
    import estimator_impl
    from utils.tf_compat import ops_feeding, tf
    with tf.Graph().as_default() as graph:
        estimator_impl.network_fn(env, is_training=True)(
            tf.zeros([2, env.image_size, env.image_size, 3]))
        decayed = set()
        for loss in tf.losses.get_regularization_losses():
            decayed.update(op.name for op in ops_feeding(loss.op)
                           if op.type in ("VarHandleOp", "VariableV2"))
        epsilons = set(op.get_attr("epsilon") for op in graph.get_operations()
                       if op.type.startswith("FusedBatchNorm"))
    if len(epsilons) != 1:
        raise SystemExit("batch norms with several epsilons: %s" % sorted(epsilons))
    return sorted(decayed), float(epsilons.pop())


def _checkpoint(path):
    from utils.tf_compat import tf
    reader = tf.train.load_checkpoint(path)
    return dict((name, reader.get_tensor(name)) for name, _ in tf.train.list_variables(path)
                if "Momentum" not in name and name != "global_step")


def _summaries(train_dir, tags=("loss", "total_loss", "learning_rate")):
    """{tag: [value at step 1, 2, ...]} from the run's event files (float32, exact)."""
    from utils.tf_compat import tf
    found = dict((tag, {}) for tag in tags)
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*"))):
        for event in tf.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag in found:
                    found[value.tag][event.step] = value.simple_value
    return dict((tag, [steps[k] for k in sorted(steps)]) for tag, steps in found.items())


def _relative(ours, reference):
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-12)


def _group(name):
    """The kind of a variable, for the per-kind figures."""
    last = name.rsplit("/", 1)[-1]
    return {"depthwise_weights": "weights", "moving_variance": "moving_mean"}.get(last, last)


def _update_differences(start, ours, reference):
    """{kind: median over its variables of |our update - the reference's| / |the
    reference's update| (largest elements)}: how far the steps themselves agree."""
    kinds = {}
    for name, value in reference.items():
        if name in ("loss", "total_loss", "learning_rate"):
            continue
        theirs = value - start[name]
        diff = float(np.abs((ours[name] - start[name]) - theirs).max())
        kinds.setdefault(_group(name), []).append(diff / max(float(np.abs(theirs).max()), 1e-30))
    return dict((kind, float(np.median(values))) for kind, values in sorted(kinds.items()))


def _weights_difference(ours, reference):
    """Largest relative difference of any variable (its max |diff| over its max |value|)."""
    worst = (0.0, None)
    for name, value in reference.items():
        if name in ("loss", "total_loss", "learning_rate"):
            continue
        scale = max(float(np.abs(ours[name]).max()), 1e-12)
        diff = float(np.abs(ours[name] - value).max()) / scale
        worst = max(worst, (diff, name))
    return worst


def _reference(work, name, config, changes=None):
    """Runs the reference with ``config`` updated by ``changes`` in its own folder
    ``name`` under ``work``, unless it ran there with that config (which names our run's
    flags, so new batches or weights are a new config); its reference.npz."""
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    path, config = os.path.join(folder, "reference_config.json"), dict(config, **(changes or {}))
    done = os.path.join(folder, "reference.npz")
    if os.path.exists(path) and os.path.exists(done):
        with open(path) as handle:
            if json.load(handle) == config:
                with np.load(done) as data:
                    return dict((name, data[name]) for name in data.files)
    with open(path, "w") as handle:
        json.dump(config, handle, indent=1)
    _run([BENCH_PYTHON, os.path.join(ROOT, "benchmarks", "parity_reference.py"), folder])
    with np.load(os.path.join(folder, "reference.npz")) as data:
        return dict((name, data[name]) for name in data.files)


def _compare(ours_losses, ours_weights, reference, start):
    loss = _relative(ours_losses["loss"], reference["loss"])
    weights, worst = _weights_difference(ours_weights, reference)
    return {"update_rel_diff_median": _update_differences(start, ours_weights, reference),
            "loss_reference": [float(x) for x in reference["loss"]],
            "rel_diff_first": float(loss[0]), "rel_diff_max": float(loss.max()),
            "rel_diff_total_loss_max": float(_relative(ours_losses["total_loss"],
                                                       reference["total_loss"]).max()),
            # relative to the peak (warmup starts at 0)
            "rel_diff_learning_rate_max": float(
                np.abs(np.subtract(ours_losses["learning_rate"], reference["learning_rate"])).max()
                / np.abs(reference["learning_rate"]).max()),
            "weights_rel_diff_max": weights, "weights_worst": worst,
            "trajectory_within_tolerance": bool(loss.max() <= STEP_TOLERANCE)}


def _decay_of(with_decay, without_decay, start):
    """{variable: the first step's weight-decay part}: the same step taken with and without
    decay from the same weights on the same batch differs by exactly that (the gradient
    part is bit-identical under --deterministic and in the reference)."""
    return dict((name, with_decay[name].astype(np.float64) - without_decay[name])
                for name in start if not _is_statistic(name))


def _is_statistic(name):
    """A batch-norm moving statistic or a moving average: not trained by the gradient."""
    return name.endswith(("/moving_mean", "/moving_variance", EMA_SUFFIX))


def _average_differences(side, start, decay):
    """The moving averages after one step against TensorFlow's rule computed here from
    the side's own weights: decay min(decay, (1 + n) / (10 + n)) at global step n = 1,
    from averages that start at the initial weights; the largest difference relative to
    the average's move, where float32 resolves it (see _within)."""
    rate = min(decay, 2.0 / 11.0)
    worst = 0.0
    for name in start:
        if name.endswith(EMA_SUFFIX):
            weight = name[:-len(EMA_SUFFIX)]
            expected = rate * start[name].astype(np.float64) + (1 - rate) * side[weight]
            move = float(np.abs(expected - start[name]).max())
            floor = FLOAT32_ULPS * 2.0 ** -23 * float(np.abs(side[name]).max())
            worst = max(worst, _within(side[name] - expected, move, floor, AVERAGE_TOLERANCE))
    return worst


def _same_weights(weights, start):
    return sorted(weights) == sorted(start.files) and all(
        np.array_equal(weights[name], start[name]) for name in weights)


def _one_step(ours, reference, start, learning_rate, weight_decay, decayed, bn_decay,
              moving_average_decay):
    """Exact checks of the first step (from the same weights on the same batch), which
    float32's rounding cannot blur as it blurs a trajectory: ``ours`` / ``reference``
    {"with_decay": weights after one step, "without_decay": the same step at decay 0}.
    1. which weights decay, and by how much: the expected decay part, computed here from
       the formula (-lr * decay * w for the weights our graph's regularization losses
       name, 0 elsewhere), against each side's measured one;
    2. batch norm's moving statistics after the step (the update rule and its momentum):
       ours against the reference's, relative to the size of the update."""
    expected = dict((name, -learning_rate * weight_decay * start[name].astype(np.float64)
                     if name in decayed else np.zeros_like(start[name], np.float64))
                    for name in start if not _is_statistic(name))
    scale = max(float(np.abs(e).max()) for e in expected.values()) or 1.0

    def decay_check(side):
        decay = _decay_of(side["with_decay"], side["without_decay"], start)
        # Decayed: a decay part above a thousandth of the largest expected one.
        applied = set(name for name, d in decay.items() if np.abs(d).max() > 1e-3 * scale)
        # A float32 weight after the step is known to half a unit in the last place, so
        # the difference of two is good to about one ulp of the largest weight.
        ulps, errors = [], []
        for name in sorted(applied & set(decayed)):
            error = float(np.abs(decay[name] - expected[name]).max())
            errors.append(error / float(np.abs(expected[name]).max()))
            ulps.append(error / (float(np.abs(start[name]).max()) * 2.0 ** -23))
        return {"decayed": len(applied),
                "not_decayed_but_expected": sorted(set(decayed) - applied),
                "decayed_but_not_expected": sorted(applied - set(decayed)),
                "rel_diff_max": max(errors) if errors else None,
                "float32_ulps_max": max(ulps) if ulps else None}

    result = {"decay_ours": decay_check(ours), "decay_reference": decay_check(reference)}
    if moving_average_decay:
        result["average_ours_rel_diff_max"], result["average_reference_rel_diff_max"] = (
            _average_differences(side["with_decay"], start, moving_average_decay)
            for side in (ours, reference))
    result.update(_statistics_differences(ours["with_decay"], reference["with_decay"], start,
                                          bn_decay))
    result["agree"] = bool(
        all(not side[key] for side in (result["decay_ours"], result["decay_reference"])
            for key in ("not_decayed_but_expected", "decayed_but_not_expected"))
        and all(side["rel_diff_max"] is None or side["rel_diff_max"] <= DECAY_TOLERANCE
                for side in (result["decay_ours"], result["decay_reference"]))
        and result["bn_mean_diff_max"] <= STATISTICS_TOLERANCE
        and result["bn_variance_rel_diff_max"] <= STATISTICS_TOLERANCE
        and all(result.get("average_%s_rel_diff_max" % side, 0) <= AVERAGE_TOLERANCE
                for side in ("ours", "reference")))
    return result


def _statistics_differences(ours, reference, start, bn_decay):
    """The batch statistics each side's moving averages took in after one step, with our
    momentum (a side with another momentum, or another variance, shows here): the mean's
    difference in units of the batch's standard deviation, the variance's relative; or
    within float32's resolution of them (a moving value's half ulp, divided by 1 - decay,
    on each side)."""
    means, variances = [], []
    for name in start:
        if name.endswith("/moving_mean"):
            layer = name[:-len("moving_mean")]

            def batch(side, statistic):
                key = layer + statistic
                return (side[key].astype(np.float64) - bn_decay * start[key]) / (1 - bn_decay)

            def floor(statistic):
                key = layer + statistic
                largest = np.maximum(np.abs(ours[key]), np.abs(reference[key]))
                return FLOAT32_ULPS * 2.0 ** -23 * largest / (1 - bn_decay)

            variance = batch(reference, "moving_variance")
            spread = np.sqrt(np.maximum(variance, 0))
            means.append(_within(batch(ours, "moving_mean") - batch(reference, "moving_mean"),
                                 spread, floor("moving_mean"), STATISTICS_TOLERANCE))
            variances.append(_within(batch(ours, "moving_variance") - variance, variance,
                                     floor("moving_variance"), STATISTICS_TOLERANCE))
    return {"bn_mean_diff_max": max(means), "bn_variance_rel_diff_max": max(variances)}


def _within(difference, scale, floor, tolerance):
    """The largest |difference| relative to ``scale``, where float32 resolves it: below
    ``floor`` it counts as at most ``tolerance``."""
    return float((np.abs(difference) / np.maximum(scale, floor / tolerance + 1e-300)).max())


def _first_steps(recipe, records, work, batch_size, overrides, config, plant):
    """Both sides' first step, with and without weight decay (see _one_step)."""
    ours, reference = {}, {}
    for name, decay in (("with_decay", DECAY_PROBE), ("without_decay", 0.0)):
        train_dir = os.path.join(work, "ours_step1_" + name)
        # warmup off: the first step at the peak rate, so that it moves
        extra = ("warmup_epochs=0", "weight_decay=%r" % decay)
        _train_ours(_our_flags(recipe, records, train_dir, 1, batch_size,
                               tuple(overrides) + extra), train_dir)
        if not _same_weights(_checkpoint(os.path.join(train_dir, "model.ckpt-0")),
                             np.load(config["start"])):
            raise SystemExit("%s did not start from the weights of %s: --deterministic "
                             "runs of the same recipe must" % (train_dir, config["start"]))
        ours[name] = _checkpoint(os.path.join(train_dir, "model.ckpt-1"))
        changes = dict(PLANTS.get(plant) or {}, steps=1, warmup_steps=0, weight_decay=decay)
        reference[name] = _reference(work, "reference_step1_" + name, config, changes)
    return ours, reference


def parity(recipe, records, work, steps, batch_size, plant=None, overrides=(),
           float64_floor=True):
    """The recipe's row: our losses, the reference's, their differences and the
    measured effect of each deliberate choice."""
    if recipe not in NETWORKS:
        raise SystemExit("no reference for recipe %s (have: %s)" % (recipe, ", ".join(NETWORKS)))
    train_dir = os.path.join(work, "ours")
    argv = _our_flags(recipe, records, train_dir, steps, batch_size, overrides)
    _train_ours(argv, train_dir)
    env = _env(argv)
    images, labels = _batches(env, steps)
    batches, start = os.path.join(work, "batches.npz"), os.path.join(work, "start.npz")
    np.savez(batches, images=images, labels=labels)
    np.savez(start, **_checkpoint(os.path.join(train_dir, "model.ckpt-0")))
    decayed, epsilon = _graph_facts(env)
    from training import optimization
    config = {"network": NETWORKS[recipe], "num_classes": env.num_classes, "steps": steps,
              "learning_rate": env.learning_rate, "schedule": env.lr_decay_type,
              "decay_steps": optimization.decay_span(env), "momentum": env.momentum,
              "weight_decay": env.weight_decay, "decayed": decayed,
              "bn_momentum": 1.0 - env.bn_decay, "bn_epsilon": epsilon,
              "label_smoothing": env.label_smoothing, "padding": "tf_same",
              "warmup_steps": env.warmup_steps,
              "moving_average_decay": env.moving_average_decay,
              "batches": batches, "start": start, "ours": argv}
    ours_losses = _summaries(train_dir)
    ours_weights = _checkpoint(os.path.join(train_dir, "model.ckpt-%d" % steps))
    row = {"steps": steps, "batch_size": env.batch_size, "overrides": list(overrides), "image_size": env.image_size,
           "records": os.path.basename(os.path.normpath(records)), "reference_config": config,
           "loss_ours": [float(x) for x in ours_losses["loss"]]}
    start_weights = _checkpoint(os.path.join(train_dir, "model.ckpt-0"))
    reference = _reference(work, "reference", config, PLANTS.get(plant))
    row.update(_compare(ours_losses, ours_weights, reference, start_weights))
    row["one_step"] = _one_step(*_first_steps(recipe, records, work, batch_size, overrides,
                                              config, plant),
                                start=start_weights, learning_rate=env.learning_rate,
                                weight_decay=DECAY_PROBE, decayed=decayed,
                                bn_decay=env.bn_decay,
                                moving_average_decay=env.moving_average_decay)
    row["agree"] = bool(row["rel_diff_first"] <= FIRST_STEP_TOLERANCE
                        and row["rel_diff_learning_rate_max"] <= LEARNING_RATE_TOLERANCE
                        and row["one_step"]["agree"])
    row["planted"] = plant
    row["differences"] = []
    if plant is None and float64_floor:
        # The floor: the reference against itself in float64, compared the same way.
        floor = _reference(work, "reference_float64", config, {"dtype": "float64"})
        row["float32_floor"] = {
            "what": "the float32 reference against the same steps in float64",
            "rel_diff": [float(x) for x in _relative(reference["loss"], floor["loss"])],
            "ours_vs_float64": [float(x) for x in _relative(ours_losses["loss"],
                                                             floor["loss"])]}
    if plant is None:
        for name, (what, changes) in SOURCE_CHOICES[recipe].items():
            with_choice = _reference(work, "reference_" + name, config, changes)
            effect = _compare(ours_losses, ours_weights, with_choice, start_weights)
            row["differences"].append(dict({
                "name": name, "what": what, "kept": "ours (deliberate)",
                "loss_last_ours": row["loss_ours"][-1],
                "loss_last_with_source_choice": effect["loss_reference"][-1],
                "rel_diff_max": effect["rel_diff_max"],
                "weights_rel_diff_max": effect["weights_rel_diff_max"]},
                **_choice_alone(reference, with_choice)))
    return row


def _choice_alone(reference, with_choice):
    """The choice's effect within one implementation: the reference against itself with
    the choice (float32's rounding still parts them; the moving averages, which do not
    feed back into training, only by the choice)."""
    effect = {"reference_loss_rel_diff_max": float(
        _relative(with_choice["loss"], reference["loss"]).max())}
    averages = [name for name in reference if name.endswith(EMA_SUFFIX)]
    if averages:
        effect["reference_averages_rel_diff_max"] = max(
            float(np.abs(with_choice[n] - reference[n]).max() / max(np.abs(reference[n]).max(),
                                                                   1e-12))
            for n in averages)
    return effect


def _disagreements(row):
    """What failed, one phrase each."""
    found = []
    if row["rel_diff_first"] > FIRST_STEP_TOLERANCE:
        found.append("first step's loss %.2g apart" % row["rel_diff_first"])
    if row["rel_diff_learning_rate_max"] > LEARNING_RATE_TOLERANCE:
        found.append("learning rates %.2g apart" % row["rel_diff_learning_rate_max"])
    step = row["one_step"]
    for side in ("ours", "reference"):
        decay = step["decay_" + side]
        for key, what in (("decayed_but_not_expected", "decays what our graph does not"),
                          ("not_decayed_but_expected", "does not decay what our graph does")):
            if decay[key]:
                found.append("%s %s (%d: %s)" % (side, what, len(decay[key]),
                                                  ", ".join(decay[key][:2])))
        if decay["rel_diff_max"] is not None and decay["rel_diff_max"] > DECAY_TOLERANCE:
            found.append("%s's decay is %.2g from -lr * decay * w" % (side, decay["rel_diff_max"]))
    for side in ("ours", "reference"):
        if step.get("average_%s_rel_diff_max" % side, 0) > AVERAGE_TOLERANCE:
            found.append("%s's moving averages are %.2g (of their move) from TensorFlow's "
                         "rule" % (side, step["average_%s_rel_diff_max" % side]))
    if step["bn_mean_diff_max"] > STATISTICS_TOLERANCE:
        found.append("the batch means in the moving averages %.2g standard deviations apart"
                     % step["bn_mean_diff_max"])
    if step["bn_variance_rel_diff_max"] > STATISTICS_TOLERANCE:
        found.append("the batch variances in the moving averages %.2g apart"
                     % step["bn_variance_rel_diff_max"])
    return found


def _quick_records(work):
    from tests.ds_helpers import write_tiny_dataset
    shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
    return write_tiny_dataset(os.path.join(work, "data"), num_classes=10, per_class=10,
                              size=32, train_shards=2, validation_shards=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="mobilenet_v2_cifar10")
    parser.add_argument("--records", help="the recipe's TFRecords (default with --quick: a "
                                          "tiny generated set)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=None,
                        help="default: the recipe's")
    parser.add_argument("--quick", action="store_true",
                        help="3 steps of batch 32 on 100 generated 32-px images")
    parser.add_argument("--plant", choices=sorted(PLANTS),
                        help="a semantic difference in the reference (the check must fail)")
    parser.add_argument("--override", action="append", default=[], metavar="FLAG=VALUE",
                        help="a train.py flag over the recipe's, in both runs (e.g. "
                             "learning_rate_per_256=0.002); repeatable")
    parser.add_argument("--no_float64", action="store_true",
                        help="leave out the float64 run of the reference (the float32 floor): "
                             "PyTorch's float64 CPU convolutions: over 35 min for 50 steps at batch 128 here, against about 6 for float32")
    parser.add_argument("--work", default="/tmp/training_parity")
    parser.add_argument("--out", default=None,
                        help="JSON to add the recipe's row to (e.g. "
                             "benchmarks/TRAINING_PARITY.json)")
    args = parser.parse_args(argv)
    if not os.path.exists(BENCH_PYTHON):
        raise SystemExit("no %s: bash scripts/setup_bench_env.sh installs it "
                         "(benchmarks/requirements.txt)" % BENCH_PYTHON)
    os.makedirs(args.work, exist_ok=True)
    steps, batch = (3, 32) if args.quick else (args.steps, args.batch_size)
    records = args.records or _quick_records(args.work)
    row = parity(args.recipe, records, args.work, steps, batch, args.plant, args.override,
                 not args.no_float64)
    print(json.dumps(dict((k, v) for k, v in row.items() if k != "reference_config"),
                     indent=1))
    if args.out:
        result = {"recipes": {}}
        if os.path.exists(args.out):
            with open(args.out) as handle:
                result = json.load(handle)
        result.setdefault("recipes", {})[args.recipe] = row
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1, sort_keys=True)
    if not row["agree"]:
        raise SystemExit("%s: ours and the reference disagree: %s"
                         % (args.recipe, "; ".join(_disagreements(row))))


if __name__ == "__main__":
    main()
