"""The checkpoint ledger: which checkpoint of a run to ship.

  python eval_image_classifier_mobilenet.py --checkpoint_path=TRAIN_DIR --ledger \
      [--average_last=K] --dataset_dir=DATA --model_name=...

evaluates every complete checkpoint of TRAIN_DIR with its raw weights and, when it
holds them, its moving averages (EMA); with --average_last=K also the average of the
last K checkpoints (evaluation/checkpoint_average.py, written to TRAIN_DIR/average_last_K/),
raw and EMA. One row per evaluation goes to <eval_dir>/ledger.json and ledger.csv,
rewritten after every row, so an interrupted sweep keeps what it measured; a rerun
skips rows measured before on the same checkpoint files (same real path, step, index
file size and time) with the same evaluation settings. The best row (highest top1,
then lower loss, then newer step) is written to TRAIN_DIR/best/: a plain checkpoint
whose variables hold the winning weights under the model's own names (moving averages
written as the weights when EMA won; no moving averages, no optimizer slots), so the
evaluator, export_model.py, predict.py and train.py --restore_path read it with no
flags. best/best.json says where it came from.

The ledger measures on the host CPU (the evaluator's --eval_device is refused with
--ledger): each row, ledger.json and ledger.csv name the device.
"""
import collections
import csv
import io
import os
import time

from devices import inference
from evaluation import checkpoint_average
from evaluation.evaluator import Evaluator
from nets import checkpoint_names, nets_factory
from utils import checkpoint_health
from utils.checkpoint_health import DamagedCheckpoint
from utils.checkpoints import EMA_SUFFIX, list_checkpoints
from utils.errors import UserError, run_reporting_tf_errors
from utils.files import ensure_writable_dir, read_json_if_present, write_json, write_text
from utils.progress import format_eta
from utils.tf_compat import tf

LEDGER_JSON = "ledger.json"
LEDGER_CSV = "ledger.csv"
BEST_DIR = "best"
BEST_FILE = "best.json"
COLUMNS = ("checkpoint", "global_step", "weights", "top1", "top5", "loss", "images",
           "images_per_sec")
# ledger.csv's columns: where each row was measured too (rows of ledgers written before
# rows named it were measured on the host).
CSV_COLUMNS = COLUMNS + ("device",)
RAW, EMA = "raw", "ema"

# One evaluation to make: a checkpoint, which weights ("raw", "ema",
# "average_last_K[_ema]") and so the evaluator's use_ema.
Planned = collections.namedtuple("Planned", "checkpoint weights use_ema")


def has_moving_averages(checkpoint):
    """True when ``checkpoint`` holds moving averages of the weights."""
    names = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    return any(name.endswith(EMA_SUFFIX) for name in names)


def eval_settings(config):
    """What makes two measurements comparable: the images and how the model sees them."""
    return collections.OrderedDict([
        ("dataset_dir", os.path.abspath(config.dataset.dataset_dir)),
        ("split", config.split), ("model_name", config.model_name),
        ("num_classes", config.num_classes), ("labels_offset", config.labels_offset),
        ("image_size", config.image_size), ("preprocessing_name", config.preprocessing_name),
        ("central_fraction", config.central_fraction),
        ("max_num_batches", config.max_num_batches)])


def load_rows(eval_dir, settings):
    """The rows of an earlier ledger.json in ``eval_dir`` ([] when none); UserError when
    it was measured with other settings (its rows would not compare)."""
    path = os.path.join(eval_dir, LEDGER_JSON)
    payload = read_json_if_present(path, "move it away or pass another --eval_dir")
    if not payload:
        return []
    rows, earlier = payload.get("rows"), payload.get("eval") or {}
    wanted = set(COLUMNS + ("fingerprint",))
    if (not isinstance(rows, list) or not isinstance(earlier, dict)
            or not all(isinstance(r, dict) and wanted <= set(r) for r in rows)):
        raise UserError("%s is not a ledger (rows of %s); move it away or pass another "
                        "--eval_dir" % (path, ", ".join(COLUMNS)))
    changed = [k for k in settings if earlier.get(k) != settings[k]]
    if changed:
        raise UserError("%s was measured with other evaluation settings (%s: %s, now %s); "
                        "pass another --eval_dir or move it away"
                        % (path, changed[0], earlier.get(changed[0]), settings[changed[0]]))
    for row in rows:
        row.setdefault("device", inference.HOST)
    return rows


def plan_rows(checkpoints, average=None, k=None):
    """Raw and (when present) EMA weights of each checkpoint, then of the average."""
    plan = []
    for checkpoint in checkpoints:
        plan.append(Planned(checkpoint, RAW, "false"))
        if has_moving_averages(checkpoint):
            plan.append(Planned(checkpoint, EMA, "true"))
    if average is not None:
        kind = checkpoint_average.average_dir_name(k)
        plan.append(Planned(average, kind, "false"))
        if has_moving_averages(average):
            plan.append(Planned(average, kind + "_ema", "true"))
    return plan


def row_key(row):
    """What identifies a ledger row: the checkpoint's fingerprint and the weights used."""
    return row["fingerprint"]["checkpoint"], row["weights"]


def best_row(rows):
    """Highest top1; ties go to the lower loss, then the newer step."""
    return max(rows, key=lambda r: (r["top1"], -r["loss"], r["global_step"]))


def measure(evaluator, planned):
    """One ledger row: the evaluator's result for ``planned``; None when training's
    --keep_checkpoint_max deleted the checkpoint before it was read. A damaged
    checkpoint raises DamagedCheckpoint."""
    try:
        fingerprint = checkpoint_average.fingerprint(planned.checkpoint)
        result = run_reporting_tf_errors(evaluator.evaluate, planned.checkpoint,
                                         planned.use_ema)
    except DamagedCheckpoint:
        raise
    except (UserError, OSError):
        if tf.io.gfile.exists(planned.checkpoint + ".index"):
            raise
        return None
    row = collections.OrderedDict([
        ("checkpoint", os.path.abspath(planned.checkpoint)),
        ("global_step", result["global_step"]), ("weights", planned.weights)])
    for key in COLUMNS[3:]:
        row[key] = result[key]
    row["device"] = result["device"]
    row["fingerprint"] = fingerprint
    return row


def write_ledger(eval_dir, settings, rows, best=None, skipped=(), device=inference.HOST):
    """ledger.json (rows with fingerprints, settings, best, the damaged checkpoints
    skipped, the device measuring) and ledger.csv (CSV_COLUMNS, measured rows only),
    each written to a temporary name and renamed."""
    write_json(os.path.join(eval_dir, LEDGER_JSON),
               {"eval": settings, "device": device, "rows": rows, "best": best,
                "skipped": list(skipped)})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in CSV_COLUMNS])
    write_text(os.path.join(eval_dir, LEDGER_CSV), text.getvalue())


def _shown(checkpoint, directory):
    """A checkpoint's path relative to the training directory when inside it."""
    relative = os.path.relpath(checkpoint, os.path.abspath(directory))
    return checkpoint if relative.startswith("..") else relative


def table_lines(rows, best, directory):
    """An aligned table of the rows, the best marked with '*'."""
    header = ("", "checkpoint", "step", "weights", "top1", "top5", "loss", "images",
              "images/s")
    cells = [header] + [
        ("*" if row is best else "", _shown(row["checkpoint"], directory),
         str(row["global_step"]), row["weights"], "%.4f" % row["top1"], "%.4f" % row["top5"],
         "%.4f" % row["loss"], str(row["images"]), "%.1f" % row["images_per_sec"])
        for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    left = (1, 3)  # text columns; numbers align right
    return ["  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
            for line in cells]


def row_line(row):
    """A ledger row as one printed line."""
    return ("checkpoint=%s weights=%s global_step=%d top1=%.4f top5=%.4f loss=%.4f images=%d"
            % (row["checkpoint"], row["weights"], row["global_step"], row["top1"],
               row["top5"], row["loss"], row["images"]))


def sweep(evaluator, ledger, log):
    """Measures every row the ledger lacks (``ledger``: config.LedgerConfig) with
    ``evaluator`` (one graph for every row), writes the ledger after each, then best/;
    returns (rows, best row). Damaged checkpoints are skipped with a warning and listed
    in ledger.json's "skipped"."""
    config = evaluator.config
    directory = ledger.directory
    ensure_writable_dir(config.eval_dir, "eval_dir")
    settings = eval_settings(config)
    current = standing_rows(load_rows(config.eval_dir, settings), log)
    skipped = []
    checkpoints = _intact_checkpoints(directory, skipped, log)
    average = _average_of_last(checkpoints, ledger, log)
    plan = plan_rows(checkpoints, average, ledger.average_last)
    keys = [(os.path.realpath(p.checkpoint), p.weights) for p in plan]
    # Kept at the end: standing rows of no planned kind (an average of another K).
    planned_keys = set(keys)
    order = keys + [k for k in current if k not in planned_keys]
    log.info("ledger of %s: %d checkpoints, %d rows, %d to measure, into %s, %s"
             % (directory, len(checkpoints), len(plan),
                sum(1 for k in keys if k not in current),
                os.path.join(config.eval_dir, LEDGER_CSV),
                inference.describe(config.device, config.precision_mode)))

    def write(best=None):
        write_ledger(config.eval_dir, settings, [current[k] for k in order if k in current],
                     best, skipped, config.device)
    _measure_plan(evaluator, zip(plan, keys), current, skipped, write, directory, log)
    rows = [current[k] for k in order if k in current]
    if not rows:
        raise UserError("no checkpoint of %s could be read; is training deleting them?"
                        % directory)
    best = best_row(rows)
    write(best)
    for line in table_lines(rows, best, directory):
        log.info(line)
    ledger_path = os.path.join(config.eval_dir, LEDGER_JSON)
    folder, written = write_best(config, directory, best, ledger_path)
    log.info("ledger best: %s; %s %s" % (row_line(best), "wrote it to" if written
                                          else "already in", folder))
    return rows, best


def _skip(skipped, checkpoint, problem, log):
    """Records a damaged checkpoint once, with a warning line."""
    if any(s["checkpoint"] == checkpoint for s in skipped):
        return
    skipped.append({"checkpoint": checkpoint, "problem": problem})
    log.info("warning: skipped %s: damaged (%s)" % (checkpoint, problem))


def _intact_checkpoints(directory, skipped, log):
    """The checkpoints of ``directory`` that pass the cheap check (checkpoint_health);
    the others go to ``skipped``. The full read comes with each evaluation."""
    intact = []
    for checkpoint in list_checkpoints(directory):
        problem = checkpoint_health.damage(checkpoint)
        if problem:
            _skip(skipped, os.path.abspath(checkpoint), problem, log)
        else:
            intact.append(checkpoint)
    return intact


def _average_of_last(checkpoints, ledger, log):
    """--average_last=K: the average of the last K intact checkpoints (written once)."""
    if not ledger.average_last:
        return None
    inputs = checkpoints[-ledger.average_last:]
    if len(inputs) < ledger.average_last:
        log.info("warning: only %d intact checkpoints: no average of the last %d"
                 % (len(inputs), ledger.average_last))
        return None
    folder = os.path.join(ledger.directory,
                          checkpoint_average.average_dir_name(ledger.average_last))
    average, written = checkpoint_average.write_average(inputs, folder)
    log.info("%s the average of the last %d checkpoints (%s)"
             % ("wrote %s:" % average if written else "%s already holds" % folder,
                ledger.average_last, ", ".join(os.path.basename(c) for c in inputs)))
    return average


def _measure_plan(evaluator, planned_keys, current, skipped, write, directory, log):
    """Measures each planned row ``current`` lacks, writing the ledger after each."""
    planned_keys = list(planned_keys)
    to_measure = sum(1 for _, key in planned_keys if key not in current)
    measured, seconds = 0, 0.0
    for index, (planned, key) in enumerate(planned_keys):
        where = "ledger row %d/%d: %s %s" % (index + 1, len(planned_keys),
                                             _shown(planned.checkpoint, directory),
                                             planned.weights)
        if key in current:
            log.info("%s: measured before (top1=%.4f), skipped"
                     % (where, current[key]["top1"]))
            continue
        started = time.time()
        try:
            row = measure(evaluator, planned)
        except DamagedCheckpoint as err:
            _skip(skipped, os.path.abspath(planned.checkpoint), err.problem, log)
            write()
            continue
        if row is None:
            log.info("%s: training deleted it before it was read, skipped" % where)
            continue
        current[key] = row
        seconds += time.time() - started
        measured += 1
        write()
        log.info("%s: top1=%.4f top5=%.4f loss=%.4f images=%d images/s=%.1f eta=%s"
                 % (where, row["top1"], row["top5"], row["loss"], row["images"],
                    row["images_per_sec"],
                    format_eta(seconds / measured * (to_measure - measured))))


def standing_rows(earlier, log):
    """{row_key: row} of earlier rows whose checkpoint files are still the same."""
    current = {}
    for row in earlier:
        path = row["fingerprint"]["checkpoint"]
        if (tf.io.gfile.exists(path + ".index")
                and checkpoint_average.fingerprint(path) == row["fingerprint"]):
            current[row_key(row)] = row
    if len(current) < len(earlier):
        log.info("dropped %d ledger rows whose checkpoint was deleted or rewritten"
                 % (len(earlier) - len(current)))
    return current


def write_best(config, directory, best, ledger_path):
    """(folder, written): <directory>/best holding ``best``'s weights under the model's
    own names, unless it holds them already."""
    folder = os.path.join(directory, BEST_DIR)
    recorded = read_json_if_present(os.path.join(folder, BEST_FILE),
                                    "delete %s to have it rewritten" % folder)
    if (recorded.get("source_fingerprint") == best["fingerprint"]
            and recorded.get("weights") == best["weights"]
            and tf.train.latest_checkpoint(folder) is not None):
        return folder, False
    info = collections.OrderedDict(
        [("source_checkpoint", best["checkpoint"]), ("weights", best["weights"])] +
        [(key, best[key]) for key in ("global_step", "top1", "top5", "loss", "images",
                                       "device")] +
        [("ledger", os.path.abspath(ledger_path)), ("eval", eval_settings(config)),
         ("source_fingerprint", best["fingerprint"]),
         ("time", time.strftime("%Y-%m-%dT%H:%M:%S"))])
    use_ema = "true" if best["weights"].endswith(EMA) else "false"

    def save(prefix):
        # The evaluator's own restore (restore_map) into the bare network, saved under
        # the variables' names: best/ holds exactly what the ledger row measured.
        with tf.Graph().as_default():
            size = config.image_size
            images = tf.placeholder(tf.float32, [1, size, size, 3])
            nets_factory.get_network_fn(
                config.model_name, config.num_classes, is_training=False,
                quantize=checkpoint_names.read(best["checkpoint"]).quantization)(images)
            tf.train.get_or_create_global_step()
            evaluator = Evaluator(config.replace(use_ema=use_ema), None)
            with tf.Session() as sess:
                evaluator.restore(sess, best["checkpoint"])
                tf.train.Saver(tf.global_variables()).save(
                    sess, prefix, write_meta_graph=False, write_state=False)

    checkpoint_average.write_checkpoint_folder(folder, best["global_step"], save, directory,
                                               BEST_FILE, info)
    return folder, True


def resolve_best_path(path):
    """``path``, except that the bare word ``best`` (export_model.py
    --checkpoint_path=best) must be a ./best folder here."""
    if path != BEST_DIR or os.path.isdir(BEST_DIR):
        return path
    raise UserError("--checkpoint_path=best: there is no ./best here; run the ledger "
                    "(eval_image_classifier_mobilenet.py --checkpoint_path=<train_dir> "
                    "--ledger) and pass --checkpoint_path=<train_dir>/best")


def read_best(checkpoint):
    """best.json beside ``checkpoint`` when it is the ledger's best, else {}."""
    return read_json_if_present(os.path.join(os.path.dirname(checkpoint) or ".", BEST_FILE),
                                "run the ledger again to rewrite it")
