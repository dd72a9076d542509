"""--watch: evaluates each new checkpoint a training run writes, until one reaches the
final step or none comes for a while (settings: config.WatchConfig)."""
import json
import os
import time

from evaluation.evaluator import load_results
from utils.checkpoints import list_checkpoints
from utils.errors import UserError, run_reporting_tf_errors
from utils.tf_compat import tf


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


def _evaluate_new(evaluator, checkpoint, log):
    """The result for ``checkpoint``, or None when it was skipped."""
    try:
        return run_reporting_tf_errors(evaluator.evaluate_or_skip, checkpoint)
    except (UserError, ValueError):  # ValueError: the Saver's, its index gone at restore
        if tf.io.gfile.exists(checkpoint + ".index"):
            raise
        # Training's keep_checkpoint_max removed it while we were reading.
        log.info("skipped %s: training deleted it before it was read" % checkpoint)
        return None


def watch(evaluator, settings, log):
    """Evaluates each new complete checkpoint of ``settings.directory`` once, oldest
    first; checkpoints already in eval_results.json (an earlier watch) are not
    repeated."""
    directory = settings.directory
    started = time.time()
    records = load_results(evaluator.config.eval_dir)
    done = set(r["checkpoint"] for r in records)
    last_step = max([r["global_step"] for r in records] or [-1])
    last_new = time.time()
    log.info("watching %s for new checkpoints (timeout %d s)" % (directory, settings.timeout_s))
    while True:
        final_step = settings.final_step or announced_final_step(directory, started)
        if final_step is not None and last_step >= final_step:
            log.info("evaluated the final step %d; done watching" % final_step)
            return
        new = [c for c in list_checkpoints(directory) if c not in done]
        for checkpoint in new:
            done.add(checkpoint)
            result = _evaluate_new(evaluator, checkpoint, log)
            if result is not None:
                last_step = max(last_step, result["global_step"])
        if new:
            last_new = time.time()
        elif time.time() - last_new > settings.timeout_s:
            log.info("no new checkpoint in %d s; done watching" % settings.timeout_s)
            return
        else:
            time.sleep(settings.interval_s)
