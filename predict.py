"""Classifies image files with any model this project writes.

  python predict.py --model=result/1p photo.jpg folder/ [--top_k=5] [--json_output=out.json]

--model is a training directory or checkpoint prefix, a SavedModel directory, a frozen
.pb, a .tflite (float or int8) or an .onnx file. Images are JPEG or PNG files, or
folders searched recursively; they are preprocessed as evaluation does (central crop,
resize). Class names come from the model's metadata (written by export_model.py or
training), or --labels_file. Each image prints one line

  <file>: <name> 0.9731, <name> 0.0112, ...

and --json_output=FILE writes every result as JSON (--json_output=- prints JSON instead).
The model runs on the host CPU (TensorFlow, TFLite or onnxruntime there), and says so.
"""
import json
import sys

from absl import flags
import numpy as np

from dataloader import image_files
from devices import inference
from export import models
import logger as logger_lib
from utils import validators
from utils.errors import UserError, exit_on_user_error, run_main, run_reporting_tf_errors
from utils.files import write_json
from utils.progress import ProgressMeter, format_eta

flags.DEFINE_string("model", None, "Checkpoint dir/prefix, SavedModel dir, .pb, .tflite "
                                   "or .onnx.")
flags.DEFINE_integer("top_k", 5, "Classes shown per image.")
flags.DEFINE_integer("batch_size", 32, "Images per model call.")
flags.DEFINE_string("labels_file", None, "labels.txt naming the classes.")
flags.DEFINE_string("json_output", None, "Write the results as JSON here ('-': stdout).")
flags.DEFINE_string("model_name", None,
                    "For a checkpoint without model_spec.json: the network.")
flags.DEFINE_integer("num_classes", None, "For a checkpoint without model_spec.json.")
flags.DEFINE_integer("image_size", None, "For a checkpoint: input side (default: its "
                                         "model_spec.json, else the model's eval size).")
flags.DEFINE_integer("labels_offset", None, "For a checkpoint: dataset label of output 0.")
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's own warnings and logs.")


def softmax(logits):
    """Row-wise softmax of ``logits`` [N, classes], computed stably in numpy."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_classes(probabilities, k, class_names):
    """[(index, name, probability)] of the k most probable classes, best first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), class_names[i] if class_names else str(i), float(probabilities[i]))
            for i in order]


def predict(model, paths, top_k, batch_size, log):
    """One result dict per file: {"file", "top_k": [{"class", "name", "probability"}]}."""
    results = []
    meter = ProgressMeter(len(paths), 1)
    meter.start(0)
    batches = image_files.image_batches(paths, model.image_size, batch_size,
                                        model.central_fraction, model.preprocessing_name)
    for chunk, images in batches:
        for path, probabilities in zip(chunk, softmax(model.logits(images))):
            ranked = top_classes(probabilities, top_k, model.class_names)
            results.append({"file": path, "top_k": [
                {"class": i, "name": name, "probability": round(p, 6)}
                for i, name, p in ranked]})
        if len(paths) > batch_size:
            ips, eta = meter.update(len(results))
            log("predicted %d/%d images, %.1f images/s, eta %s"
                % (len(results), len(paths), ips, format_eta(eta)))
    return results


def result_line(result):
    """A file's prediction as one line: its top classes and their probabilities."""
    return "%s: %s" % (result["file"], ", ".join(
        "%s %.4f" % (entry["name"], entry["probability"]) for entry in result["top_k"]))


@exit_on_user_error
def main(argv):
    """Classifies the image files given; exit 0, or 2 on a user mistake."""
    f = flags.FLAGS
    logger_lib.quiet_tensorflow(f.verbose)
    if not f.model:
        raise UserError("--model is required: a checkpoint directory, SavedModel, .pb, "
                        ".tflite or .onnx")
    if len(argv) < 2:
        raise UserError("name the images to classify after the flags (files or folders)")
    validators.require_positive(f, ("top_k", "batch_size", "num_classes", "image_size"))
    paths = image_files.list_image_files(argv[1:])
    model = models.load_model(f.model, labels_file=f.labels_file, model_name=f.model_name,
                              num_classes=f.num_classes, image_size=f.image_size,
                              labels_offset=f.labels_offset)

    def log(line):
        sys.stderr.write(line + "\n")
    if model.meta.get("recognised"):  # a checkpoint in automl's names
        log(model.meta["recognised"])
    if model.meta.get("quantization"):  # a checkpoint with quantization ranges
        log("%s holds quantization ranges: predicting with its simulated int8 graph"
            % model.meta["checkpoint"])
    log("predicting %d images with %s %s" % (len(paths), f.model,
                                             inference.describe(inference.HOST)))
    results = run_reporting_tf_errors(predict, model, paths, f.top_k, f.batch_size, log)
    model.close()
    if f.json_output == "-":
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for result in results:
        print(result_line(result))
    if f.json_output:
        write_json(f.json_output, {"model": f.model, "device": inference.HOST,
                                   "results": results})
    return 0


if __name__ == "__main__":
    flags.FLAGS.set_gnu_getopt(True)  # flags may follow the image names
    run_main(main)
