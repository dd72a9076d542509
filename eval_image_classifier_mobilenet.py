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

Every image of the split counts exactly once, the last partial batch included. Moving
averages of the weights are used when the checkpoint has them (--use_ema=auto). Each
checkpoint ends with one line

  eval result: checkpoint=<path> global_step=<n> top1=<0.xxxx> top5=<0.xxxx> images=<n> loss=<x.xxxx>

and a record in <eval_dir>/eval_results.json plus TensorBoard scalars at its global step.
"""
import json
import os
import time

from absl import flags

import env as env_lib
from evaluation.evaluator import EvalConfig, Evaluator, load_results
from evaluation import ledger as ledger_lib
import logger as logger_lib
from datasets import dataset_factory
from export import models
from nets import checkpoint_names, nets_factory
from utils.checkpoints import (first_given, list_checkpoints, read_model_spec,
                               resolve_checkpoint)
from utils.errors import (UserError, exit_on_user_error, reject_positional_args, run_main,
                          run_reporting_tf_errors)
from utils.files import ensure_writable_dir
from utils.tf_compat import tf


def define_eval_flags():
    env_lib.define_data_flags()
    env_lib.define_eval_flags()
    flags.DEFINE_string("checkpoint_path", None, "Checkpoint prefix, or a directory (latest).")
    flags.DEFINE_string("model_file", None,
                        "Evaluate an exported model instead (SavedModel dir, .pb, .tflite, "
                        ".onnx; see export_model.py), in its own runtime.")
    flags.DEFINE_string("eval_dir", None,
                        "Where eval_results.json and summaries go (default: "
                        "<checkpoint dir>/eval).")
    flags.DEFINE_string("split", "validation", "Dataset split to evaluate.")
    flags.DEFINE_integer("max_num_batches", None, "Evaluate only this many batches.")
    flags.DEFINE_integer("log_every_n_batches", 10, "Batches between progress lines.")
    flags.DEFINE_boolean("eval_all_checkpoints", False,
                         "Evaluate every checkpoint of the directory, oldest first.")
    flags.DEFINE_boolean("watch", False, "Keep evaluating new checkpoints as they appear.")
    flags.DEFINE_integer("watch_timeout", 3600,
                         "--watch stops after this many seconds without a new checkpoint.")
    flags.DEFINE_float("watch_interval", 10.0, "Seconds between looks for new checkpoints.")
    flags.DEFINE_integer("final_step", None,
                         "--watch stops after evaluating a checkpoint at or past this step "
                         "(training's --max_train_steps).")
    flags.DEFINE_boolean("ledger", False,
                         "Evaluate every checkpoint of the directory, raw and moving-average "
                         "weights, into <eval_dir>/ledger.csv and the best to <dir>/best/.")
    flags.DEFINE_integer("average_last", None,
                         "--ledger also averages the last K checkpoints (K >= 2) into "
                         "<dir>/average_last_K/ and evaluates the average.")


def config_from_flags(f, model=None):
    """The EvalConfig; ``model`` (an exported model loaded from --model_file) fixes the
    network, its classes, input size and label offset."""
    if bool(f.checkpoint_path) == bool(f.model_file):
        raise UserError("give --checkpoint_path (a checkpoint prefix or directory) or "
                        "--model_file (an exported model), one of them")
    if f.model_file and (f.watch or f.eval_all_checkpoints):
        raise UserError("--watch and --eval_all_checkpoints read checkpoints; drop them with "
                        "--model_file")
    if not f.dataset_dir:
        raise UserError("--dataset_dir is required (a folder of TFRecord shards)")
    for name in ("batch_size", "max_num_batches", "log_every_n_batches", "eval_image_size",
                 "watch_timeout", "watch_interval", "final_step"):
        value = getattr(f, name)
        if value is not None and value <= 0:
            raise UserError("--%s=%s must be positive" % (name, value))
    if f.watch and f.eval_all_checkpoints:
        raise UserError("--watch already evaluates every checkpoint; drop --eval_all_checkpoints")
    if f.eval_all_checkpoints and not os.path.isdir(f.checkpoint_path):
        raise UserError("--eval_all_checkpoints needs a directory as --checkpoint_path, "
                        "got %s" % f.checkpoint_path)
    if f.watch and os.path.exists(f.checkpoint_path) and not os.path.isdir(f.checkpoint_path):
        raise UserError("--watch needs the training directory as --checkpoint_path (it may "
                        "not exist yet), got the file %s" % f.checkpoint_path)
    if not 0.0 < f.central_fraction <= 1.0:
        raise UserError("--central_fraction=%s must be in (0, 1]" % f.central_fraction)
    dataset = dataset_factory.get_dataset(f.dataset_name, f.dataset_dir, f.dataset_cache_dir)
    if f.split not in dataset.splits:
        raise UserError("--split=%s: the dataset has %s" % (f.split, ", ".join(dataset.splits)))
    dataset.list_files(f.split)  # no shards: one clear line now, not a TF error later
    if model is not None:
        return _exported_model_config(f, model, dataset)
    directory = checkpoint_dir(f.checkpoint_path, f.watch)
    recorded = read_model_spec(directory)
    names = single_checkpoint_names(f)
    if names is not None:  # what automl's names say, below what training recorded
        recorded = dict(checkpoint_names.implied_spec(names, dataset.num_classes),
                        **recorded)
    network = trained_network(f, dataset, recorded)
    return EvalConfig(
        dataset=dataset, split=f.split, batch_size=f.batch_size,
        max_num_batches=f.max_num_batches, use_ema=f.use_ema,
        log_every_n_batches=f.log_every_n_batches,
        eval_dir=f.eval_dir or os.path.join(directory, "eval"), data_threads=f.data_threads,
        **network)


def single_checkpoint_names(f):
    """nets/checkpoint_names.py's view of the one checkpoint --checkpoint_path names
    (None for sweeps and --model_file); UserError when its names are automl's of
    another network than a given --model_name."""
    if f.model_file or f.watch or f.eval_all_checkpoints or f.ledger:
        return None
    return checkpoint_names.read(resolve_checkpoint(f.checkpoint_path, verify=False),
                                 f.model_name if f["model_name"].present else None)


def trained_network(f, dataset, recorded):
    """The network, classes and eval sizes: flags the user gave, then the model_spec.json
    that train.py wrote beside the checkpoints (``recorded``), then the defaults. So
    --checkpoint_path=TRAIN_DIR evaluates what was trained there, as training's own
    periodic evaluation does, with no model flags."""
    def given(name):
        return getattr(f, name) if f[name].present else None

    model_name = first_given(given("model_name"), recorded.get("model_name"), f.model_name)
    info = nets_factory.get_model_info(model_name)
    labels_offset = first_given(given("labels_offset"), recorded.get("labels_offset"),
                                f.labels_offset)
    image_size = first_given(f.eval_image_size, recorded.get("eval_image_size"),
                             info.default_eval_image_size)
    nets_factory.check_image_size(model_name, image_size)
    return dict(
        model_name=model_name, labels_offset=labels_offset, image_size=image_size,
        num_classes=first_given(f.num_classes, recorded.get("num_classes"),
                                dataset.num_classes - labels_offset),
        preprocessing_name=first_given(f.preprocessing_name,
                                       recorded.get("preprocessing_name"),
                                       info.preprocessing_name),
        central_fraction=first_given(given("central_fraction"),
                                     recorded.get("central_fraction"), f.central_fraction))


def ledger_config_from_flags(f):
    """ledger.LedgerConfig for --ledger, else None."""
    if not f.ledger:
        if f.average_last is not None:
            raise UserError("--average_last=%d averages checkpoints for the ledger; add "
                            "--ledger" % f.average_last)
        return None
    if f.model_file or f.watch or f.eval_all_checkpoints:
        raise UserError("--ledger evaluates every checkpoint of --checkpoint_path itself; "
                        "drop --watch, --eval_all_checkpoints and --model_file")
    if f["use_ema"].present:
        raise UserError("--ledger measures both raw and moving-average weights; drop "
                        "--use_ema")
    return ledger_lib.ledger_config(f.checkpoint_path, f.average_last)


def _exported_model_config(f, model, dataset):
    """EvalConfig for an exported model: sizes and label offset are the model's own;
    flags that disagree with it are refused rather than silently ignored."""
    if f.eval_image_size and f.eval_image_size != model.image_size:
        raise UserError("--eval_image_size=%d but %s takes %d px images; drop the flag"
                        % (f.eval_image_size, model.path, model.image_size))
    if f.num_classes and f.num_classes != model.num_classes:
        raise UserError("--num_classes=%d but %s has %d classes; drop the flag"
                        % (f.num_classes, model.path, model.num_classes))
    labels_offset = f.labels_offset if f["labels_offset"].present else model.labels_offset
    central_fraction = (f.central_fraction if f["central_fraction"].present
                        else model.central_fraction)
    return EvalConfig(
        dataset=dataset, split=f.split, model_name=model.meta.get("model_name"),
        num_classes=model.num_classes, labels_offset=labels_offset,
        image_size=model.image_size,
        preprocessing_name=f.preprocessing_name or model.preprocessing_name,
        central_fraction=central_fraction, batch_size=f.batch_size,
        max_num_batches=f.max_num_batches, use_ema=f.use_ema,
        log_every_n_batches=f.log_every_n_batches,
        eval_dir=f.eval_dir or os.path.join(checkpoint_dir(f.model_file), "eval"),
        data_threads=f.data_threads)


def checkpoint_dir(path, is_directory=False):
    """The folder of --checkpoint_path (itself when a directory, or one to watch)."""
    return path if is_directory or os.path.isdir(path) else os.path.dirname(path) or "."


def all_checkpoints(directory):
    checkpoints = list_checkpoints(directory)
    if not checkpoints:
        raise UserError("no checkpoint in %s; point --checkpoint_path at a training directory"
                        % directory)
    return checkpoints


def announced_final_step(directory, since):
    """final_step of a train_result.json that training wrote after ``since``, else None."""
    path = os.path.join(directory, "train_result.json")
    try:
        if os.path.getmtime(path) < since:
            return None
        with open(path) as handle:
            return int(json.load(handle)["final_step"])
    except (OSError, IOError, ValueError, KeyError):
        return None


def watch(evaluator, directory, f, log):
    """Evaluates each new complete checkpoint of ``directory`` once, oldest first;
    checkpoints already in eval_results.json (an earlier watch) are not repeated."""
    started = time.time()
    records = load_results(evaluator.config.eval_dir)
    done = set(r["checkpoint"] for r in records)
    last_step = max([r["global_step"] for r in records] or [-1])
    last_new = time.time()
    log.info("watching %s for new checkpoints (timeout %d s)" % (directory, f.watch_timeout))
    while True:
        final_step = f.final_step or announced_final_step(directory, started)
        if final_step is not None and last_step >= final_step:
            log.info("evaluated the final step %d; done watching" % final_step)
            return
        new = [c for c in list_checkpoints(directory) if c not in done]
        for checkpoint in new:
            done.add(checkpoint)
            try:
                result = run_reporting_tf_errors(evaluator.evaluate_or_skip, checkpoint)
            except UserError:
                if tf.io.gfile.exists(checkpoint + ".index"):
                    raise
                # Training's keep_checkpoint_max removed it while we were reading.
                log.info("skipped %s: training deleted it before it was read" % checkpoint)
                continue
            if result is not None:
                last_step = max(last_step, result["global_step"])
        if new:
            last_new = time.time()
        elif time.time() - last_new > f.watch_timeout:
            log.info("no new checkpoint in %d s; done watching" % f.watch_timeout)
            return
        else:
            time.sleep(f.watch_interval)


@exit_on_user_error
def main(argv):
    reject_positional_args(argv)
    f = flags.FLAGS
    logger_lib.quiet_tensorflow(f.verbose)
    ledger = ledger_config_from_flags(f)
    model = models.load_model(f.model_file) if f.model_file else None
    config = config_from_flags(f, model)
    ensure_writable_dir(config.eval_dir, "eval_dir")
    load_results(config.eval_dir)  # an unreadable results file fails now, not after
    log = logger_lib.get_logger(os.path.join(config.eval_dir, "eval_log.log"))
    names = single_checkpoint_names(f)
    if names is not None and checkpoint_names.describe(names, f.use_ema):
        log.info(checkpoint_names.describe(names, f.use_ema))
    with Evaluator(config, log) as evaluator:
        run_requested_evaluation(evaluator, config, ledger, model, f, log)
    return 0


def run_requested_evaluation(evaluator, config, ledger, model, f, log):
    """What the flags ask for: an exported model, the ledger, a watch, every checkpoint
    or one."""
    log.info("evaluating %s (%d classes) on %d %s images of %s at %d px"
             % (config.model_name, config.num_classes, evaluator.num_images(), config.split,
                config.dataset.dataset_dir, config.image_size))
    if model is not None:
        run_reporting_tf_errors(evaluator.evaluate_model_and_record, model)
    elif ledger is not None:
        ledger_lib.sweep(evaluator, ledger, log)
    elif f.watch:
        watch(evaluator, f.checkpoint_path, f, log)
    elif f.eval_all_checkpoints:
        for checkpoint in all_checkpoints(f.checkpoint_path):
            run_reporting_tf_errors(evaluator.evaluate_or_skip, checkpoint)
    else:  # evaluate() reads the checkpoint whole before restoring it
        run_reporting_tf_errors(evaluator.evaluate_and_record,
                                resolve_checkpoint(f.checkpoint_path, verify=False))


define_eval_flags()

if __name__ == "__main__":
    run_main(main)
