"""What each export format costs: top-1 on a validation split, file size, and
single-image latency on this machine, for one trained checkpoint.

  python -m benchmarks.export_formats --checkpoint_path=demo_output/train \
      --dataset_dir=demo_output/records [--output=benchmarks/EXPORT_RESULTS.md]

Every format is exported from the checkpoint into a temporary folder, evaluated on every
validation image in its own runtime (TF session, TFLite interpreter, onnxruntime), and
timed on one image at a time (median of --repeats calls after warm-up). Results go to
the markdown file and a JSON file beside it.
"""
import os
import shutil
import tempfile
import time

from absl import app, flags
import numpy as np

from benchmarks import machine
from dataloader import data_provider
from datasets import dataset_factory
from evaluation.config import EvalConfig
from evaluation.evaluator import Evaluator
from export import checkpoint_spec, formats, models
import logger as logger_lib
from utils.checkpoints import resolve_checkpoint
from utils.errors import exit_on_user_error
from utils.files import path_size, write_json

flags.DEFINE_string("checkpoint_path", None, "Checkpoint prefix or training directory.")
flags.DEFINE_string("dataset_dir", None, "TFRecord folder with train and validation.")
flags.DEFINE_integer("repeats", 100, "Timed single-image calls per format.")
flags.DEFINE_string("results", os.path.join(os.path.dirname(__file__), "EXPORT_RESULTS.md"),
                    "Markdown results file (JSON written beside it).")

FILE_NAMES = {"saved_model": "saved_model", "frozen_pb": "model.pb", "tflite": "model.tflite",
              "tflite_int8": "model_int8.tflite", "onnx": "model.onnx"}


def latency_ms(model, image, repeats):
    """Median milliseconds of model.logits on one image, after 10 warm-up calls."""
    for _ in range(10):
        model.logits(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.logits(image)
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def eval_config(dataset, spec, eval_dir):
    return EvalConfig(
        dataset=dataset, split="validation", model_name=spec.model_name,
        num_classes=spec.num_classes, labels_offset=spec.labels_offset,
        image_size=spec.image_size, preprocessing_name=spec.preprocessing_name,
        central_fraction=spec.central_fraction, batch_size=100, max_num_batches=None,
        use_ema="auto", log_every_n_batches=1000, eval_dir=eval_dir, data_threads=None,
        device="host", precision_mode=None)


def measure(f, work):
    checkpoint = resolve_checkpoint(f.checkpoint_path)
    spec, names = checkpoint_spec.resolve(checkpoint)
    dataset = dataset_factory.get_dataset("auto", f.dataset_dir)
    calibration = data_provider.sample_eval_images(dataset, "train", 200, spec.image_size)
    image = calibration[:1]
    evaluator = Evaluator(eval_config(dataset, spec, os.path.join(work, "eval")),
                                     logger_lib.get_logger())
    rows = []
    for fmt in ("checkpoint",) + formats.FORMATS:
        path = checkpoint
        if fmt != "checkpoint":
            path = os.path.join(work, FILE_NAMES[fmt])
            formats.export_checkpoint(spec, checkpoint, fmt, path, calibration=calibration,
                                      class_names=names)
        model = models.load_model(path)
        result = evaluator.evaluate_model(model)
        rows.append({"format": fmt, "top1": round(result["top1"], 4),
                     "top5": round(result["top5"], 4), "images": result["images"],
                     "megabytes": round(path_size(
                         path if fmt != "checkpoint" else checkpoint + ".data-00000-of-00001")
                         / 1e6, 3),
                     "latency_ms": round(latency_ms(model, image, f.repeats), 3),
                     "batch100_images_per_sec": result["images_per_sec"]})
        model.close()
        print(rows[-1])
    return {"checkpoint": checkpoint, "model": spec.as_dict(), "rows": rows,
            "machine": machine.describe(), "date": time.strftime("%Y-%m-%d")}


def write_markdown(path, results):
    spec = results["model"]
    lines = ["# Export formats: accuracy, size, latency", "",
             "%s, %d classes, %d px, checkpoint `%s`, on %s (%s)." % (
                 spec["model_name"], spec["num_classes"], spec["image_size"],
                 results["checkpoint"], "%s, %s cores" % (results["machine"]["cpu_model"],
                                                          results["machine"]["cores"]),
                 results["date"]), "",
             "| format | top-1 | top-5 | images | size (MB) | 1-image latency (ms, median) "
             "| eval img/s (batch 100, input pipeline included) |",
             "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append("| %s | %.4f | %.4f | %d | %.2f | %.2f | %.0f |" % (
            row["format"], row["top1"], row["top5"], row["images"], row["megabytes"],
            row["latency_ms"], row["batch100_images_per_sec"]))
    lines += ["", "The checkpoint row is the variables file of the checkpoint (EMA and "
              "optimizer slots included) run in a TF session."]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


@exit_on_user_error
def main(argv):
    del argv
    f = flags.FLAGS
    logger_lib.quiet_tensorflow(False)
    work = tempfile.mkdtemp(prefix="export_formats_")
    try:
        results = measure(f, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(os.path.splitext(f.results)[0] + ".json", results)
    write_markdown(f.results, results)
    print("wrote %s" % f.results)


if __name__ == "__main__":
    app.run(main)
