"""Evaluates checkpoints on every image of a split; prints and records top-1 / top-5.

  python eval_image_classifier_mobilenet.py --checkpoint_path=result/1p \
      --dataset_dir=DATA [--eval_all_checkpoints | --watch]

The network, its classes and the eval size come from the model_spec.json that train.py
wrote beside the checkpoints, so a training directory needs no model flags; flags given
win over it.

--checkpoint_path is a checkpoint prefix or a directory. A directory means its latest
checkpoint; --eval_all_checkpoints evaluates every checkpoint in it, oldest first;
--watch evaluates each new checkpoint training writes, until one reaches the final step
(--max_train_steps, or the final_step of a train_result.json written after the watch
began) or --watch_timeout seconds pass with none. Checkpoints come from the directory's
state file, which training updates only once a checkpoint is complete.

--ledger evaluates every checkpoint of the directory with raw and moving-average
weights (and, with --average_last=K, the average of the last K checkpoints), writes
<eval_dir>/ledger.csv and ledger.json, and the best weights to <directory>/best/
(see evaluation/ledger.py).

--model_file instead evaluates a model written by export_model.py (SavedModel, .pb,
.tflite, .onnx) in its own runtime, to see what export and quantization cost in top-1.

--eval_device=auto|npu|host says where the network runs: on Ascend's NPU (auto's choice
where npu_bridge imports and an Ascend device is visible) with --eval_precision_mode
(must_keep_origin_dtype: top-1 as on the host), or on the host CPU. The ledger and
exported models run on the host.

Every image of the split counts exactly once: the last batch is padded to --batch_size
with blank images that count for nothing, so every batch has one static shape. Moving
averages of the weights are used when the checkpoint has them (--use_ema=auto). Each
checkpoint ends with one line

  eval result: checkpoint=<path> global_step=<n> top1=<0.xxxx> top5=<0.xxxx> images=<n> loss=<x.xxxx> device=<npu|host> [precision_mode=<mode>]

and a record in <eval_dir>/eval_results.json plus TensorBoard scalars at its global step.
"""
import os

from absl import flags

from devices import inference
import env as env_lib
from evaluation import config as config_lib
from evaluation import ledger as ledger_lib
from evaluation import sources as sources_lib
from evaluation import watch as watch_lib
from evaluation.config import EvalConfig
from evaluation.evaluator import Evaluator, load_results
from export import models
import logger as logger_lib
from nets import checkpoint_names
from utils.errors import (exit_on_user_error, reject_positional_args, run_main,
                          run_reporting_tf_errors)
from utils.files import ensure_writable_dir


def define_flags():
    """The evaluator's flags: the data and eval flags shared with train.py, then its own."""
    env_lib.define_data_flags()
    env_lib.define_eval_flags()
    config_lib.define_flags()
    for module in (config_lib, env_lib):  # absl's --helpshort lists the main module's
        flags.adopt_module_key_flags(module)


@exit_on_user_error
def main(argv):
    """Evaluates what the flags name; exit 0, or 2 on a user mistake."""
    reject_positional_args(argv)
    f = flags.FLAGS
    logger_lib.quiet_tensorflow(f.verbose)
    config_lib.check_flags(f)
    model = models.load_model(f.model_file) if f.model_file else None
    found = sources_lib.read_sources(f, model)
    config = EvalConfig.from_flags(f, found)
    ledger = config_lib.ledger_config_from_flags(f, found)
    ensure_writable_dir(config.eval_dir, "eval_dir")
    load_results(config.eval_dir)  # an unreadable results file fails now, not after
    log = logger_lib.get_logger(os.path.join(config.eval_dir, "eval_log.log"))
    if found.names is not None and checkpoint_names.describe(found.names, f.use_ema):
        log.info(checkpoint_names.describe(found.names, f.use_ema))
    with Evaluator(config, log) as evaluator:
        run_requested_evaluation(evaluator, found, ledger, f, log)


def where_line(config, found):
    """Where the network runs, and why the host when --eval_device did not ask for it."""
    where = inference.describe(config.device, config.precision_mode)
    return where + (" (%s)" % found.device_note if found.device_note else "")
    return 0


def run_requested_evaluation(evaluator, found, ledger, f, log):
    """What the flags ask for: an exported model, the ledger, a watch, every checkpoint
    or one."""
    config = evaluator.config
    log.info("evaluating %s (%d classes) on %d %s images of %s at %d px, %s"
             % (config.model_name, config.num_classes, evaluator.num_images(), config.split,
                config.dataset.dataset_dir, config.image_size, where_line(config, found)))
    if found.model is not None:
        run_reporting_tf_errors(evaluator.evaluate_model_and_record, found.model)
    elif ledger is not None:
        ledger_lib.sweep(evaluator, ledger, log)
    elif f.watch:
        watch_lib.watch(evaluator, config_lib.watch_config_from_flags(f), log)
    elif f.eval_all_checkpoints:
        for checkpoint in found.checkpoints:
            run_reporting_tf_errors(evaluator.evaluate_or_skip, checkpoint)
    else:  # evaluate() reads the checkpoint whole before restoring it
        run_reporting_tf_errors(evaluator.evaluate_and_record, found.names.path)


define_flags()

if __name__ == "__main__":
    run_main(main)
