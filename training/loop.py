"""The training run around the Estimator, in the order it happens:

 1. train_dir made writable; on the chief, damaged checkpoints moved aside (before
    anything reads the newest) and model_spec.json written (kept as it was on resume).
 2. The plan logged: device, batch, schedule, warnings; where the run starts, the same
    on every rank (training/resume.py): the newest intact checkpoint of train_dir
    (resume), else --restore_path (warm start), else scratch. A rank whose device
    writes to its own folder gets that folder refilled from the same checkpoint.
 3. Nothing left to train: done, the newest checkpoint returned.
 4. The Estimator built (``build_estimator(warm_start)``, estimator_impl's), the shards'
    framing checked with --skip_corrupt_records.
 5. Segments: training stops at each --eval_every_n_epochs step and at the last; every
    rank trains the same segments, the chief evaluates after each stop. A signal ends the
    run after its step (TrainingStopped), a divergence or a bad record ends it with one
    line (training/diagnoses.py), a run that stopped short with no error is refused.
 6. The end: the totals logged, train_result.json written by the chief, the last
    checkpoint returned.
"""
import os
import time

from dataloader import data_provider, record_check
from evaluation.evaluator import Evaluator
from training import diagnoses, resilience, resume
from utils.checkpoints import (MODEL_SPEC_FILE, checkpoint_global_step, read_model_spec,
                               repair_checkpoints)
from utils.errors import CUT_SHORT, UserError
from utils.files import ensure_writable_dir, write_json
from utils.tf_compat import tf

TRAIN_RESULT_FILE = "train_result.json"


def train_input_fn(env, skipped=None):
    """The training input_fn: this rank's shards, augmented, batched (data_provider)."""
    return data_provider.make_input_fn(
        env.dataset, "train", is_training=True, batch_size=env.batch_size,
        image_size=env.image_size, preprocessing_name=env.preprocessing_name,
        preprocessing_options=env.preprocessing_options, labels_offset=env.labels_offset,
        num_classes=env.num_classes, rank=env.rank_id, rank_size=env.rank_size,
        seed=env.seed, synthetic=env.use_synthetic_data, num_threads=env.data_threads,
        skipped=skipped)


def train_files(env):
    """This rank's training shards."""
    return data_provider.files_for_rank(env.dataset.list_files("train"), env.rank_id,
                                        env.rank_size)[0]


def eval_steps(env, start_step):
    """Steps after which --eval_every_n_epochs evaluates (the last one included), or []."""
    every = env.eval_every_steps
    if not every:
        return []
    first = (start_step // every + 1) * every
    return list(range(first, env.max_train_steps, every)) + [env.max_train_steps]


def stop_steps(env, start_step):
    """The steps each segment of the run trains to: the eval steps, or just the last."""
    return eval_steps(env, start_step) or [env.max_train_steps]


def start_point(env, device, logger):
    """The resume.ResumePoint where this rank starts (every rank's, from train_dir),
    logged with the plan."""
    logger.info("device: %s; %s" % (device.describe(), env.describe()))
    warning = env.bn_decay_warning()
    if warning:
        logger.info("warning: " + warning)
    if env.trainable_scopes:
        logger.info("training only %s; everything else frozen, batch-norm statistics "
                    "included" % ", ".join(env.trainable_scopes))
    point = resume.resume_point(env.train_dir, env.allow_fresh_start)
    logger.info(resume.describe(env.rank_id, point) + (
        "; --restore_path is not applied to a resumed run"
        if point.checkpoint and env.restore_checkpoint else ""))
    return point


def resumed_spec(train_dir):
    """train_dir's model_spec.json when this run resumes from a checkpoint there (its
    record of where training started is kept), else None."""
    if tf.train.latest_checkpoint(train_dir) is None:
        return None
    return read_model_spec(train_dir)


def prepare_train_dir(env, logger):
    """Step 1: train_dir writable; the chief repairs it and records the model spec."""
    ensure_writable_dir(env.train_dir)
    if not env.is_chief:
        return
    for line in repair_checkpoints(env.train_dir, env.allow_fresh_start):
        logger.info(line)
    write_json(os.path.join(env.train_dir, MODEL_SPEC_FILE),
               env.model_spec(resumed_spec(env.train_dir)))


def count_cut_short_shards(env, skipped, logger):
    """--skip_corrupt_records: a shard cut short is read up to its last complete record;
    say so once, at the start, and count the lost record."""
    started = time.time()
    for path, count, _ in record_check.cut_short_shards(train_files(env)):
        skipped.add(path, count, CUT_SHORT)
    logger.info("checked the record framing of the training shards in %.1f s"
                % (time.time() - started))


class TrainingRun(object):
    """One run of train.py (see the module's docstring for its steps). ``device``: the
    devices.base.Device; ``build_estimator(warm_start)``: the device's Estimator whose
    model_fn warm-starts from ``warm_start`` in a fresh model_dir; ``stop_signals``:
    the process's resilience.StopSignals, or None (not stoppable)."""

    def __init__(self, env, device, build_estimator, logger, stop_signals=None):
        self.env = env
        self.device = device
        self.build_estimator = build_estimator
        self.logger = logger
        self.stop_signals = stop_signals

    def run(self):
        """Trains to env.max_train_steps; returns the path of the last checkpoint."""
        env, logger = self.env, self.logger
        prepare_train_dir(env, logger)
        point = start_point(env, self.device, logger)
        start_step = point.step
        if start_step >= env.max_train_steps:
            logger.info("train_dir already holds step %d >= %d requested steps; nothing to "
                        "train" % (start_step, env.max_train_steps))
            return point.checkpoint
        if self.device.model_dir != env.train_dir:  # this rank's own folder: scratch
            resume.refill_scratch_dir(self.device.model_dir, point)
        estimator = self.build_estimator(None if point.checkpoint else env.restore_checkpoint)
        skipped = None
        if env.skip_corrupt_records and not env.use_synthetic_data:
            skipped = data_provider.SkippedRecords(logger, env.labels_offset,
                                                   env.num_classes)
            count_cut_short_shards(env, skipped, logger)
        started = time.time()
        for stop_step in stop_steps(env, start_step):
            self._train_segment(estimator, stop_step, start_step, skipped)
            if env.is_chief and stop_step in eval_steps(env, start_step):
                self._evaluate_latest()
        return self._finish(start_step, time.time() - started, skipped)

    def _train_segment(self, estimator, stop_step, start_step, skipped):
        """device.train to stop_step, stopping first and after on a signal; failures
        become the one line training/diagnoses.py writes."""
        self._stop_if_signalled(start_step)
        stop_hook = resilience.StopHook(self.stop_signals, self.device.steps_per_run)
        watch = resilience.DivergenceHook(self.device.steps_per_run,
                                          fixed_loss_scale=self.env.loss_scale != "dynamic")
        try:
            self.device.train(estimator, train_input_fn(self.env, skipped), stop_step,
                              hooks=[stop_hook, watch],
                              saving_listeners=[resilience.FiniteWeightsListener()])
        except (tf.train.NanLossDuringTrainingError, resilience.NonFiniteLoss,
                resilience.NonFiniteWeights, resilience.LossScaleCollapsed,
                resilience.LossScaleStalled) as err:
            raise UserError(diagnoses.divergence(self.env, err, stop_hook.step))
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
            message = diagnoses.data_error(self.env, err, train_files(self.env),
                                           self.logger)
            if message is None:
                raise
            raise UserError(message)
        self._check_reached(stop_step)
        self._stop_if_signalled(start_step)

    def _stop_if_signalled(self, start_step):
        """After a SIGTERM / SIGINT: TrainingStopped naming the checkpoint the Estimator
        wrote when the stop hook ended estimator.train."""
        signals = self.stop_signals
        if signals is None or signals.received is None:
            return
        checkpoint = tf.train.latest_checkpoint(self.env.train_dir)
        step = checkpoint_global_step(checkpoint) if checkpoint else start_step
        raise resilience.TrainingStopped(signals.received, step, checkpoint)

    def _check_reached(self, stop_step):
        """MonitoredSession ends training quietly on an OutOfRangeError, and that is also
        how TensorFlow fails a write past a file-size limit (a checkpoint saver other
        than ours: Ascend's, multi-worker's): a run that stopped short with no signal
        must not pass for finished. The chief's checkpoints say where it got."""
        signals = self.stop_signals
        if not self.env.is_chief or (signals is not None and signals.received is not None):
            return
        checkpoint = tf.train.latest_checkpoint(self.device.model_dir)
        step = checkpoint_global_step(checkpoint) if checkpoint else 0
        if step < stop_step:
            raise UserError(diagnoses.stopped_short(step, stop_step, self.device.model_dir,
                                                    checkpoint))

    def _evaluate_latest(self):
        """Evaluates the checkpoint estimator.train just wrote, in this process."""
        checkpoint = tf.train.latest_checkpoint(self.env.train_dir)
        with Evaluator(self.env.eval_config(), self.logger) as evaluator:
            evaluator.evaluate_or_skip(checkpoint)

    def _finish(self, start_step, elapsed, skipped):
        """Step 6: the totals logged, train_result.json, the last checkpoint."""
        env, logger = self.env, self.logger
        skipped_count = skipped.count if skipped is not None else 0
        if skipped_count:
            logger.info("skipped %d bad records in all (%d different ones; "
                        "--skip_corrupt_records)" % (skipped_count, skipped.distinct()))
        checkpoint = tf.train.latest_checkpoint(env.train_dir)
        images_per_sec = (env.max_train_steps - start_step) * env.global_batch / max(
            elapsed, 1e-9)
        logger.info("training done: step %d in %.1f s (%.1f images/s, start-up included), "
                    "checkpoint %s" % (env.max_train_steps, elapsed, images_per_sec,
                                       checkpoint))
        if env.is_chief:
            write_json(os.path.join(env.train_dir, TRAIN_RESULT_FILE), {
                "model_name": env.model_name, "num_classes": env.num_classes,
                "train_image_size": env.image_size, "eval_image_size": env.eval_image_size,
                "global_batch": env.global_batch, "learning_rate": env.learning_rate,
                "start_step": start_step, "final_step": env.max_train_steps,
                "seconds": round(elapsed, 3), "images_per_sec": round(images_per_sec, 2),
                "checkpoint": checkpoint, "skipped_records": skipped_count})
        return checkpoint
