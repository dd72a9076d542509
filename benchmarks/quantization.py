"""Float, post-training int8 and quantization-aware int8 top-1 on the same data and
checkpoints, through the user's command lines (train.py, the evaluator, export_model.py).

For each model, on scikit-learn's digits at 32 px (datasets/digits_demo.py, nothing
downloaded):

  float        the demo's recipe, --max_epoch epochs; its checkpoint (moving averages)
  ptq_tflite   tflite_int8 of the float checkpoint, calibrated on 200 training images
               (TFLite's post-training quantization: per-channel weights)
  ptq_tensor   the same int8 scheme as QAT (per-tensor weights, contrib.quantize's
               ranges) without training: 20 steps at a learning rate of 1e-12 with batch
               norm frozen only learn the ranges, then the simulated int8 graph is scored
  qat          a --quantize_delay=0 fine-tune of the float checkpoint (--qat_epochs),
               batch norm frozen for its last third; its simulated int8 graph ...
  qat_tflite   ... and its tflite_int8, from the trained ranges with no calibration

  .venv/bin/python -m benchmarks.quantization [--models=mobilenet_v2_035,mobilenet_v2] \\
      [--work=/tmp/qat_bench] [--out=benchmarks/QUANTIZATION.json]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ("--train_image_size=32", "--batch_size=32", "--optimizer=momentum",
          "--learning_rate_decay_type=cosine", "--weight_decay=0.00004",
          "--label_smoothing=0.1", "--bn_decay=0.9", "--min_crop_area=0.5",
          "--random_flip=false", "--log_every_n_steps=1000")


def _python(script, *args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, script)] + list(args),
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    if out.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (script, out.stderr[-3000:]))
    return out.stdout


def _top1(records, source, eval_dir, model_file=False):
    flag = "--model_file=" if model_file else "--checkpoint_path="
    _python("eval_image_classifier_mobilenet.py", flag + source, "--dataset_dir=" + records,
            "--batch_size=100", "--eval_dir=" + eval_dir)
    with open(os.path.join(eval_dir, "eval_results.json")) as handle:
        results = json.load(handle)["results"]
    return [r for r in results if r["checkpoint"].startswith(source)][-1]["top1"]


def _train(records, train_dir, model, *flags):
    started = time.time()
    _python("train.py", "--dataset_dir=" + records, "--train_dir=" + train_dir,
            "--model_name=" + model, *(COMMON + flags))
    return time.time() - started


def _tflite(train_dir, output):
    _python("export_model.py", "--checkpoint_path=" + train_dir, "--format=tflite_int8",
            "--output=" + output, "--overwrite")
    return output


def measure_model(model, records, work, epochs, qat_epochs):
    """The row of one model (see the module docstring)."""
    steps_per_epoch = 45  # 1,438 training digits at batch 32
    float_dir = os.path.join(work, model, "float")
    row = {"model": model, "float_epochs": epochs, "qat_epochs": qat_epochs,
           "qat_steps": qat_epochs * steps_per_epoch}
    row["float_seconds"] = round(_train(
        records, float_dir, model, "--max_epoch=%d" % epochs, "--learning_rate=0.005",
        "--warmup_epochs=1", "--moving_average_decay=0.99"), 1)
    evals = os.path.join(work, model, "eval")
    row["float"] = _top1(records, float_dir, evals)
    row["ptq_tflite"] = _top1(records, _tflite(float_dir, float_dir + ".tflite"), evals,
                              model_file=True)
    calibrated = os.path.join(work, model, "ptq_tensor")
    _train(records, calibrated, model, "--max_train_steps=20", "--learning_rate=1e-12",
           "--restore_path=" + float_dir, "--restore_exclude=none", "--quantize_delay=0",
           "--freeze_bn_delay=0")
    row["ptq_tensor"] = _top1(records, calibrated, evals)
    qat_dir = os.path.join(work, model, "qat")
    row["qat_seconds"] = round(_train(
        records, qat_dir, model, "--max_epoch=%d" % qat_epochs, "--learning_rate=0.001",
        "--restore_path=" + float_dir, "--restore_exclude=none", "--quantize_delay=0",
        "--freeze_bn_delay=%d" % (qat_epochs * steps_per_epoch * 2 // 3)), 1)
    row["qat"] = _top1(records, qat_dir, evals)
    row["qat_tflite"] = _top1(records, _tflite(qat_dir, qat_dir + ".tflite"), evals,
                              model_file=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mobilenet_v2_035,mobilenet_v2")
    parser.add_argument("--work", default="/tmp/qat_bench")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--qat_epochs", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "QUANTIZATION.json"))
    args = parser.parse_args()
    records = os.path.join(args.work, "records")
    if not os.path.exists(os.path.join(records, "dataset_meta.json")):
        images = os.path.join(args.work, "images")
        for command in (["datasets.digits_demo", "--output_dir=" + images, "--image_size=32"],
                        ["datasets.build_tfrecords",
                         "--train_directory=" + os.path.join(images, "train"),
                         "--validation_directory=" + os.path.join(images, "validation"),
                         "--output_directory=" + records, "--train_shards=4",
                         "--validation_shards=2", "--overwrite"]):
            subprocess.run([sys.executable, "-m"] + command, cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [measure_model(model, records, args.work, args.epochs, args.qat_epochs)
            for model in args.models.split(",")]
    result = {"dataset": "scikit-learn digits, 1,438 train / 359 validation, 32 px",
              "machine": "%s, %d cores" % (platform.processor() or platform.machine(),
                                            os.cpu_count()),
              "rows": rows}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
