"""The one line a failed training run ends with: what happened, where, what survived and
what to do. Each function returns that line; training/loop.py raises it as a UserError."""
from dataloader import data_provider, record_check
from training import resilience
from utils.checkpoints import checkpoint_global_step
from utils.errors import CUT_SHORT, bad_record_in, describe_bad_record, tf_error_line
from utils.tf_compat import tf

SKIP_HINT = "or pass --skip_corrupt_records to train past bad records"


def divergence(env, err, step):
    """The line for a run whose loss, weights or loss scale stopped being usable:
    ``err`` is what stopped it, ``step`` the global step the loop last saw (or None)."""
    if isinstance(err, tf.train.NanLossDuringTrainingError):
        return _diverged(env, "loss became NaN" + (" at step %d" % step
                                                   if step is not None else ""))
    if isinstance(err, resilience.NonFiniteLoss):
        return _diverged(env, "loss became %s at step %d" % (err.loss, err.step))
    if isinstance(err, resilience.NonFiniteWeights):
        return _diverged(env, err.describe())
    if isinstance(err, resilience.LossScaleCollapsed):
        return _diverged(env, "the loss scale collapsed to %g at step %d after %d skipped "
                         "(overflowing) steps: a step overflowed with its loss unscaled, so "
                         "loss scaling skips every step and training has stopped learning"
                         % (err.loss_scale, err.step, err.skipped), overflow_dump_hint(env))
    return _diverged(env, "%d steps in a row overflowed at the fixed loss scale %g and were "
                     "skipped, so the global step stayed at %d and training has stopped "
                     "learning" % (err.steps, err.loss_scale, err.step),
                     "Lower --loss_scale, or pass --loss_scale=dynamic, which lowers itself "
                     "on overflows. %s" % overflow_dump_hint(env))


def _diverged(env, what, hint=""):
    checkpoint = tf.train.latest_checkpoint(env.train_dir)
    kept = ("the newest checkpoint, %s (step %d), predates it and is intact"
            % (checkpoint, checkpoint_global_step(checkpoint)) if checkpoint
            else "no checkpoint was written")
    return ("%s (training diverged); %s.%s Lower --learning_rate (now %g), warm up longer "
            "(--warmup_epochs) or clip gradients (--clip_gradient_norm), then run again: it "
            "resumes from that checkpoint"
            % (what, kept, " %s." % hint if hint else "", env.learning_rate))


def overflow_dump_hint(env):
    """Where the operators that overflow are found, or how to find them."""
    if env.device == "npu" and env.over_dump:
        return "The overflowing operators are dumped in %s" % env.over_dump_path
    if env.device == "npu":
        return ("Rerun with --over_dump to dump the overflowing operators (into "
                "--over_dump_path, default <train_dir>/overflow_dump)")
    return ("TensorFlow has no overflow dump on %s: to name the first operator producing "
            "Inf/NaN, call tf.debugging.enable_check_numerics() before the graph is built "
            "(TF 2.x; e.g. first thing in train.py's main) and rerun" % env.device)


def stopped_short(step, stop_step, model_dir, checkpoint):
    """The line for a run that ended before ``stop_step`` with no error."""
    return ("training ended at step %d, before step %d, with no error from TensorFlow: a "
            "checkpoint save that found no room (a full disk or a file-size limit) ends it "
            "so; make room in %s and run the same command again: it resumes from %s"
            % (step, stop_step, model_dir, checkpoint or "the start"))


def data_error(env, err, files, logger):
    """The line for a TensorFlow error from the training input (a bad record, named by
    shard and index; ``files``: this rank's shards), or None for an error from
    elsewhere. May read the shards once to find the record."""
    bad = bad_record_in(err)
    if bad is not None:
        return "%s; fix or re-create that shard, %s" % (bad, SKIP_HINT)
    if "IteratorGetNext" not in (err.message or ""):
        return None
    logger.info("the training input failed (%s); looking for the bad record (reads the "
                "training shards once)" % tf_error_line(err))
    found = _find_bad_record(env, err, files)
    if found is None:
        return None
    return "%s; fix or re-create that shard, %s" % (
        describe_bad_record(*(tuple(found) + (env.labels_offset, env.num_classes))),
        SKIP_HINT)


def _find_bad_record(env, err, files):
    """(path, index, problem, label) of the first bad record in ``files``, or None: a
    shard cut short, an unreadable frame, then a record that does not parse or decode."""
    for path, count, _ in record_check.cut_short_shards(files):
        return path, count, CUT_SHORT, -1
    if isinstance(err, tf.errors.DataLossError):
        for path in files:
            unreadable = record_check.first_unreadable_record(path)
            if unreadable is not None:
                return path, unreadable[0], CUT_SHORT, -1
    return data_provider.find_bad_record(
        files, env.image_size, env.preprocessing_name, env.labels_offset, env.num_classes,
        env.data_threads)
