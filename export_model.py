"""Exports a trained checkpoint for inference.

  python export_model.py --checkpoint_path=result/1p --format=tflite --output=model.tflite

Formats: saved_model (directory), frozen_pb (.pb, for Ascend's ATC and TF 1.x tools),
tflite (float), tflite_int8 (full-integer post-training quantization calibrated on
--num_calibration_images images of --calibration_dataset_dir), onnx (tf2onnx, opset
>= 13; a quantization-aware checkpoint's holds its ranges as QuantizeLinear /
DequantizeLinear pairs: export/onnx_qdq.py). Moving averages of the weights are used
when the checkpoint has them.

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
import time

from absl import flags

from dataloader import data_provider
from datasets import dataset_factory
from devices import inference
from evaluation import ledger as ledger_lib
from export import checkpoint_spec, formats, metadata
from export import config as config_lib
from export.config import ExportConfig
import logger as logger_lib
from nets import checkpoint_names
from utils.checkpoints import resolve_checkpoint
from utils.errors import (exit_on_user_error, reject_positional_args, run_main,
                          run_reporting_tf_errors)
from utils.files import path_size


def calibration_images(config):
    """Eval-preprocessed images of the calibration dataset, or None when the export
    calibrates nothing."""
    if config.calibration_dataset_dir is None:
        return None
    spec = config.spec
    dataset = dataset_factory.get_dataset(config.calibration_dataset_name,
                                          config.calibration_dataset_dir)
    images = run_reporting_tf_errors(
        data_provider.sample_eval_images, dataset, config.calibration_split,
        config.num_calibration_images, spec.image_size, spec.preprocessing_name,
        spec.central_fraction)
    print("calibrating on %d images of %s (%s split)"
          % (len(images), config.calibration_dataset_dir, config.calibration_split))
    return images


@exit_on_user_error
def main(argv):
    """Exports the checkpoint the flags name; exit 0, or 2 on a user mistake."""
    reject_positional_args(argv)
    f = flags.FLAGS
    logger_lib.quiet_tensorflow(f.verbose)
    config_lib.check_flags(f)
    formats.check_output(f.output, f.overwrite)
    checkpoint = resolve_checkpoint(ledger_lib.resolve_best_path(f.checkpoint_path))
    facts = checkpoint_spec.read(checkpoint, f.model_name, f.labels_file)
    config = ExportConfig.from_flags(f, facts)
    recognised = checkpoint_names.describe(facts.names, config.use_ema)
    if recognised:
        print(recognised)
    export(config)
    return 0


# How a quantization-aware checkpoint's ranges reach the formats that hold int8 itself.
_QUANTIZED_FORMATS = {
    "tflite_int8": ", int8 from those ranges, with no calibration",
    "onnx": ", quantized (QDQ, {}): each range a QuantizeLinear / DequantizeLinear pair"}


def export(config):
    """Writes the model and its metadata, saying what it wrote."""
    started = time.time()
    spec = config.spec
    if spec.quantization is not None:
        weights = "per-channel weights" if spec.quantization.per_channel else "per-tensor"
        print("%s holds quantization ranges (quantization-aware training): exporting its "
              "simulated int8 graph%s" % (config.checkpoint, _QUANTIZED_FORMATS.get(
                  config.format, "").format(weights)))
    meta = run_reporting_tf_errors(
        formats.export_checkpoint, spec, config.checkpoint, config.format, config.output,
        use_ema=config.use_ema, calibration=calibration_images(config), opset=config.opset,
        class_names=config.class_names, overwrite=config.overwrite, verbose=config.verbose)
    print("exported %s %s (step %d, %s) to %s: %.2f MB in %.1f s %s"
          % (spec.model_name, config.format, meta["global_step"],
             "moving averages" if meta["ema"] else "raw weights", config.output,
             path_size(config.output) / 1e6, time.time() - started,
             inference.describe(meta["export_device"])))
    record_ledger_best(config, meta)
    quantization = meta.get("input_quantization")
    print("input 'input' %s [batch, %d, %d, 3]%s; outputs 'logits', 'probabilities' "
          "[batch, %d]" % ("int8" if quantization else "float32", spec.image_size,
                           spec.image_size,
                           " quantized from [-1, 1] (scale %.6g, zero point %d)"
                           % (quantization["scale"], quantization["zero_point"])
                           if quantization else " in [-1, 1]", spec.num_classes))


def record_ledger_best(config, meta):
    """When the checkpoint is the ledger's best, its metadata says where it came from."""
    best = ledger_lib.read_best(config.checkpoint)
    if not best:
        return
    meta["ledger_best"] = dict((key, best.get(key)) for key in (
        "source_checkpoint", "weights", "global_step", "top1", "top5", "loss", "ledger"))
    metadata.write_meta(config.output, meta)
    print("weights: the ledger's best, %s weights of %s (top1=%.4f in %s)"
          % (best.get("weights"), best.get("source_checkpoint"), best.get("top1", 0.0),
             best.get("ledger")))


config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)  # --helpshort lists the flags

if __name__ == "__main__":
    run_main(main)
