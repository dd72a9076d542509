"""Equal budget (issue 34): RECIPE=mobilenet_v2_cifar10 trained by our train.py against
the same recipe in PyTorch (benchmarks/equal_budget_reference.py: its source's
initialisation, augmentation and network padding), the same epochs on the same images,
top-1 on the 10,000 test images after every epoch, several seeds each.

  .venv/bin/python -m benchmarks.equal_budget --records=CIFAR10_TFRECORDS --work=DIR \\
      [--train_shards=2] [--epochs=3] [--seeds=0,1] [--weights_init=slim,pytorch] \\
      [--reference_variant=--as_ours=all] [--key=equal_budget] \\
      [--out=benchmarks/TRAINING_PARITY.json] [--plot=benchmarks/training_parity_cifar10.png]

--train_shards keeps the first K training shards (a fixed subset sized to the hour this
machine has; 0: all). Each run's result is kept under --work and reused when present, so
an interrupted sweep goes on where it stopped; the results are every finished run under
--work (--collect: only those, training nothing). --reference_variant adds reference runs
with other equal_budget_reference.py arguments: --as_ours=... takes some of our recipe's
choices (init, inputs, decay, epsilon, padding, or all), --network=source kuangliu's
network: what parts the two, if anything does. Writes the --key part of TRAINING_PARITY.json
(the rest of the file is kept) and a plot of top-1 per epoch.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PYTHON = os.path.join(ROOT, ".venv-bench", "bin", "python")
RECIPE = "mobilenet_v2_cifar10"


def _subset(records, shards, work):
    """A dataset folder with the first ``shards`` training shards (all when 0) and every
    validation shard, its dataset_meta.json counting what it holds."""
    train = sorted(glob.glob(os.path.join(records, "train-*")))
    train = train[:shards] if shards else train
    folder = os.path.join(work, "records")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(records, "dataset_meta.json")) as handle:
        meta = json.load(handle)
    names = ["train-%05d-of-%05d" % (i, len(train)) for i in range(len(train))]
    validation = sorted(glob.glob(os.path.join(records, "validation-*")))
    for path, name in zip(train + validation, names + [os.path.basename(p) for p in validation]):
        link = os.path.join(folder, name)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(path), link)
    meta["splits"]["train"] = {"num_samples": _count(train), "num_shards": len(train)}
    with open(os.path.join(folder, "dataset_meta.json"), "w") as handle:
        json.dump(meta, handle, indent=1)
    return folder, train


def _count(paths):
    from utils.tf_compat import tf
    return sum(1 for path in paths for _ in tf.io.tf_record_iterator(path))


def _decoded(folder, train_shards, path):
    """The subset's images and labels as uint8 arrays (the reference reads these)."""
    if os.path.exists(path):
        return
    from utils.tf_compat import tf
    tf.enable_eager_execution()

    def read(paths):
        images, labels = [], []
        for record in tf.data.TFRecordDataset(paths):
            example = tf.io.parse_single_example(record, {
                "image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)})
            images.append(tf.io.decode_image(example["image/encoded"], channels=3).numpy())
            labels.append(int(example["image/class/label"]))
        return np.stack(images), np.array(labels)

    train_images, train_labels = read(train_shards)
    test_images, test_labels = read(sorted(glob.glob(os.path.join(folder, "validation-*"))))
    np.savez(path, train_images=train_images, train_labels=train_labels,
             test_images=test_images, test_labels=test_labels)


def _ours(folder, work, epochs, seed, weights_init):
    """train.py under the recipe for ``epochs`` (its cosine over them), evaluating the test
    split after every epoch into <train_dir>/eval/eval_results.json; kept when done."""
    from training import recipes
    train_dir = os.path.join(work, "ours_%s_seed%d" % (weights_init, seed))
    if len(_evaluations(train_dir)) >= epochs:  # a cut-short run resumes from its checkpoint
        return
    flags = dict(recipes.load(RECIPE).flags)
    flags.update(max_epoch=str(epochs), seed=str(seed), weights_init=weights_init,
                 dataset_dir=folder, train_dir=train_dir, eval_every_n_epochs="1",
                 keep_checkpoint_max=str(epochs + 1))
    command = [sys.executable, "train.py"] + ["--%s=%s" % item for item in flags.items()]
    _logged(command, train_dir + ".log")


def _evaluations(train_dir):
    """The run's evaluations so far, in step order ([] before the first)."""
    path = os.path.join(train_dir, "eval", "eval_results.json")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return sorted(json.load(handle)["results"], key=lambda r: r["global_step"])


def _logged(command, log_path):
    """Runs ``command`` with its output in ``log_path``; one line naming the log if it fails."""
    with open(log_path, "w") as log:
        code = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit("%s failed (exit %d); its output: %s" % (command[1], code, log_path))


def _reference(data, work, epochs, seed, variant=""):
    """The PyTorch run; ``variant``: more equal_budget_reference.py arguments (e.g.
    "--as_ours=all"), kept as reference[_as_ours=all]_seed<seed>.json."""
    out = os.path.join(work, "reference%s_seed%d.json" % (
        "".join("_" + arg.lstrip("-") for arg in variant.split()), seed))
    if os.path.exists(out):
        return
    _logged([BENCH_PYTHON, os.path.join("benchmarks", "equal_budget_reference.py"), data, out,
             "--epochs=%d" % epochs, "--seed=%d" % seed] + variant.split(), out[:-5] + ".log")


def _reference_label(record):
    """"reference (PyTorch)", with the variant's network and our choices it took."""
    variant = []
    if record.get("network", "ours") != "ours":
        variant.append("kuangliu's network")
    if record.get("as_ours"):
        variant.append("our " + ", ".join(record["as_ours"]))
    return "reference (PyTorch%s)" % "".join(", " + part for part in variant)


def _finished(work, epochs):
    """{label: {seed: top-1 per epoch}} of every finished run under ``work``."""
    curves = {}
    for train_dir in sorted(glob.glob(os.path.join(work, "ours_*_seed*[0-9]"))):
        init, seed = os.path.basename(train_dir)[len("ours_"):].rsplit("_seed", 1)
        curves.setdefault("ours (--weights_init=%s)" % init, {})[seed] = [
            round(100.0 * r["top1"], 2) for r in _evaluations(train_dir)]
    for path in sorted(glob.glob(os.path.join(work, "reference*_seed*.json"))):
        with open(path) as handle:
            record = json.load(handle)
        curves.setdefault(_reference_label(record), {})[str(record["seed"])] = [
            round(x, 2) for x in record["top1"]]
    return dict((label, dict((seed, curve) for seed, curve in runs.items()
                             if len(curve) == epochs)) for label, runs in curves.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--train_shards", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--weights_init", default="slim,pytorch")
    parser.add_argument("--reference_variant", action="append", default=[], metavar="ARGS",
                        help="also a reference run with these equal_budget_reference.py "
                             "arguments (--as_ours=..., --network=source); repeatable")
    parser.add_argument("--no_reference", action="store_true",
                        help="train ours only (the reference's finished runs still count)")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: write the JSON and plot of the finished runs")
    parser.add_argument("--key", default="equal_budget",
                        help="where in --out the results go (another budget: another key)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "TRAINING_PARITY.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "benchmarks",
                                                       "training_parity_cifar10.png"))
    args = parser.parse_args()
    if not os.path.exists(BENCH_PYTHON):
        raise SystemExit("no %s: bash scripts/setup_bench_env.sh installs it "
                         "(benchmarks/requirements.txt)" % BENCH_PYTHON)
    os.makedirs(args.work, exist_ok=True)
    seeds = [] if args.collect else [int(s) for s in args.seeds.split(",")]
    folder, train = _subset(args.records, args.train_shards, args.work)
    data = os.path.join(args.work, "images.npz")
    _decoded(folder, train, data)
    images = int(np.load(data)["train_labels"].shape[0])
    for seed in seeds:  # seed by seed, so a cut-short sweep still has every kind of run
        for init in args.weights_init.split(","):
            _ours(folder, args.work, args.epochs, seed, init)
        if not args.no_reference:
            for variant in [""] + args.reference_variant:
                _reference(data, args.work, args.epochs, seed, variant)
    curves = _finished(args.work, args.epochs)
    if not any(curves.values()):
        raise SystemExit("no finished run of %d epochs under %s: run without --collect to "
                         "train them" % (args.epochs, args.work))
    final = dict((label, [runs[seed][-1] for seed in sorted(runs)])
                 for label, runs in curves.items())
    result = {"recipe": RECIPE,
              "budget": "%d epochs of %d training images (the first %d of 8 shards), batch "
                        "128, top-1 on the 10,000 test images" % (args.epochs, images,
                                                                   len(train)),
              "ours": final.get("ours (--weights_init=slim)", []),
              "reference": final.get("reference (PyTorch)", []),
              "final": final, "curves": curves}
    content = {}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            content = json.load(handle)
    content[args.key] = result
    with open(args.out, "w") as handle:
        json.dump(content, handle, indent=1)
    subprocess.run([BENCH_PYTHON, os.path.join("benchmarks", "plot_curves.py"), args.out,
                    args.plot, args.key], cwd=ROOT, check=True)
    print(json.dumps(final))


if __name__ == "__main__":
    main()
