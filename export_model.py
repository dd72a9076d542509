"""Exports a trained checkpoint for inference.

  python export_model.py --checkpoint_path=result/1p --format=tflite --output=model.tflite

Formats: saved_model (directory), frozen_pb (.pb, for Ascend's ATC and TF 1.x tools),
tflite (float), tflite_int8 (full-integer post-training quantization calibrated on
--num_calibration_images images of --calibration_dataset_dir), onnx (tf2onnx, opset
>= 13). Moving averages of the weights are used when the checkpoint has them.

Every format takes ``input`` (float32 [batch, S, S, 3], RGB in [-1, 1] after a central
crop and resize) and gives ``logits`` and ``probabilities`` (float32 [batch, classes]).
The SavedModel has a second signature, ``serving_bytes``, that takes encoded JPEG/PNG
bytes (``image_bytes``) and preprocesses inside. A checkpoint in a training directory
needs no --model_name / --num_classes / --image_size: training wrote them to
model_spec.json. The metadata (sizes, class names, source) goes beside the model:
<file>.meta.json, or export_meta.json inside a SavedModel.

--checkpoint_path=<train_dir>/best exports the weights the evaluator's ledger chose
(eval_image_classifier_mobilenet.py --ledger; see evaluation/ledger.py), and the metadata says which
checkpoint and weights they came from; a bare --checkpoint_path=best means ./best.
"""
import os
import time

from absl import flags

from evaluation import ledger as ledger_lib
import logger as logger_lib
from dataloader import data_provider
from datasets import dataset_factory
from export import checkpoint_spec, formats, metadata
from nets import checkpoint_names
from utils.checkpoints import read_model_spec, resolve_checkpoint
from utils.errors import (UserError, exit_on_user_error, reject_positional_args, run_main,
                          run_reporting_tf_errors)
from utils.files import path_size

flags.DEFINE_string("checkpoint_path", None,
                    "Checkpoint prefix, or a directory (latest); <train_dir>/best, or best "
                    "for ./best: the weights the evaluator's --ledger chose.")
flags.DEFINE_enum("format", "saved_model", formats.FORMATS, "What to write.")
flags.DEFINE_string("output", None, "Model file, or folder for saved_model.")
flags.DEFINE_boolean("overwrite", False, "Replace an existing --output.")
flags.DEFINE_string("model_name", None, "Network (default: from model_spec.json).")
flags.DEFINE_integer("num_classes", None, "Classes of the head (default: model_spec.json).")
flags.DEFINE_integer("labels_offset", None,
                     "Dataset label of output 0 (default: model_spec.json, else 0).")
flags.DEFINE_integer("image_size", None,
                     "Input side (default: model_spec.json's eval size, else the model's).")
flags.DEFINE_float("central_fraction", None,
                   "Central crop of the serving_bytes signature (default 0.875).")
flags.DEFINE_enum("use_ema", "auto", ("auto", "true", "false"),
                  "Export the weights' moving averages (auto: when the checkpoint has them).")
flags.DEFINE_string("labels_file", None,
                    "labels.txt naming the classes (default: the training dataset's).")
flags.DEFINE_string("calibration_dataset_dir", None,
                    "TFRecord folder for tflite_int8 calibration (default: the training "
                    "dataset in model_spec.json).")
flags.DEFINE_string("calibration_dataset_name", "auto", "auto | imagenet | folder.")
flags.DEFINE_string("calibration_split", "train", "Split the calibration images come from.")
flags.DEFINE_integer("num_calibration_images", 200, "Images calibrating tflite_int8.")
flags.DEFINE_integer("opset", formats.MIN_ONNX_OPSET, "ONNX opset (onnx format).")
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's own warnings and logs.")


def calibration_images(f, spec, checkpoint):
    """Eval-preprocessed images from the calibration dataset (tflite_int8 only)."""
    if f.num_calibration_images < 1:
        raise UserError("--num_calibration_images=%d must be at least 1"
                        % f.num_calibration_images)
    dataset_dir = (f.calibration_dataset_dir
                   or read_model_spec(os.path.dirname(checkpoint)).get("dataset_dir"))
    if not dataset_dir:
        raise UserError("tflite_int8 needs --calibration_dataset_dir (a folder of TFRecord "
                        "shards, e.g. the training data)")
    dataset = dataset_factory.get_dataset(f.calibration_dataset_name, dataset_dir)
    return dataset_dir, run_reporting_tf_errors(
        data_provider.sample_eval_images, dataset, f.calibration_split,
        f.num_calibration_images, spec.image_size, spec.preprocessing_name,
        spec.central_fraction)


@exit_on_user_error
def main(argv):
    reject_positional_args(argv)
    f = flags.FLAGS
    logger_lib.quiet_tensorflow(f.verbose)
    if not f.checkpoint_path:
        raise UserError("--checkpoint_path is required (a checkpoint prefix or directory)")
    if not f.output:
        raise UserError("--output is required (a file, or a folder for saved_model)")
    formats.check_output(f.output, f.overwrite)
    checkpoint = resolve_checkpoint(ledger_lib.resolve_best_path(f.checkpoint_path))
    spec, class_names = checkpoint_spec.resolve(
        checkpoint, model_name=f.model_name, num_classes=f.num_classes,
        labels_offset=f.labels_offset, image_size=f.image_size,
        central_fraction=f.central_fraction, labels_file=f.labels_file)
    recognised = checkpoint_names.describe(checkpoint_names.read(checkpoint), f.use_ema)
    if recognised:
        print(recognised)
    started = time.time()
    calibration = None
    if spec.quantization is not None:
        print("%s holds quantization ranges (quantization-aware training): exporting its "
              "simulated int8 graph%s" % (checkpoint, ", int8 from those ranges, with no "
                                          "calibration" if f.format == "tflite_int8" else ""))
    elif f.format == "tflite_int8":
        source, calibration = calibration_images(f, spec, checkpoint)
        print("calibrating on %d images of %s (%s split)"
              % (len(calibration), source, f.calibration_split))
    meta = run_reporting_tf_errors(
        formats.export_checkpoint, spec, checkpoint, f.format, f.output, use_ema=f.use_ema,
        calibration=calibration, opset=f.opset, class_names=class_names,
        overwrite=f.overwrite, verbose=f.verbose)
    print("exported %s %s (step %d, %s) to %s: %.2f MB in %.1f s"
          % (spec.model_name, f.format, meta["global_step"],
             "moving averages" if meta["ema"] else "raw weights", f.output,
             path_size(f.output) / 1e6, time.time() - started))
    best = ledger_lib.read_best(checkpoint)
    if best:
        meta["ledger_best"] = dict((key, best.get(key)) for key in (
            "source_checkpoint", "weights", "global_step", "top1", "top5", "loss", "ledger"))
        metadata.write_meta(f.output, meta)
        print("weights: the ledger's best, %s weights of %s (top1=%.4f in %s)"
              % (best.get("weights"), best.get("source_checkpoint"), best.get("top1", 0.0),
                 best.get("ledger")))
    quantization = meta.get("input_quantization")
    print("input 'input' %s [batch, %d, %d, 3]%s; outputs 'logits', 'probabilities' "
          "[batch, %d]" % ("int8" if quantization else "float32", spec.image_size,
                           spec.image_size,
                           " quantized from [-1, 1] (scale %.6g, zero point %d)"
                           % (quantization["scale"], quantization["zero_point"])
                           if quantization else " in [-1, 1]", spec.num_classes))
    return 0


if __name__ == "__main__":
    run_main(main)
