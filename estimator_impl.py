"""The Estimator model_fn and the training run built from an Env."""
import os
import time

from devices import placement, precision
from evaluation.evaluator import Evaluator, top_k_hits
from training import finetune
from training import graph_cache
import logger as logger_lib
from training import optimization
from training import resilience
from dataloader import data_provider, record_check
from nets import nets_factory
from utils.checkpoints import (MODEL_SPEC_FILE, checkpoint_global_step, read_model_spec,
                               repair_checkpoints)
from utils.errors import (CUT_SHORT, UserError, bad_record_in, describe_bad_record,
                          tf_error_line)
from utils.files import ensure_writable_dir, write_json
from utils.tf_compat import tf, do_not_convert

SKIP_HINT = "or pass --skip_corrupt_records to train past bad records"


class EstimatorImpl(object):
    def __init__(self, env, logger=None, stop_signals=None):
        self.env = env
        self.logger = logger or logger_lib.get_logger()
        self.device = placement.create(env, self.logger)
        # Set by train(): the fine-tune checkpoint, only when train_dir has none.
        self.warm_start_checkpoint = None
        # resilience.StopSignals of the process (train.py's), or None: not stoppable.
        self.stop_signals = stop_signals
        # Set by train() with --skip_corrupt_records: the count of records dropped.
        self.skipped = None
        # Set by model_fn in training: the loss tensor GuardHook checks.
        self.train_loss = None
        # Set by model_fn under loss scaling: the scale and the skipped-step count after
        # each step, for GuardHook's collapse and stall stops (else None).
        self.loss_scale_state = None

    def network_fn(self, is_training):
        env = self.env
        return nets_factory.get_network_fn(
            env.model_name, env.num_classes, weight_decay=env.weight_decay,
            is_training=is_training, bn_decay=env.bn_decay,
            dropout_keep_prob=env.dropout_keep_prob, drop_path_rate=env.drop_path_rate,
            quantize=env.quantization)

    def estimator_model_fn(self):
        """model_fn for tf.estimator, kept away from autograph (see do_not_convert);
        the Estimator reads its argument names, which the wrapper hides, hence the
        explicit signature outside it."""
        build = do_not_convert(self.model_fn)

        def model_fn(features, labels, mode, params):
            return build(features, labels, mode, params)
        return model_fn

    def model_fn(self, features, labels, mode, params=None):
        if mode == tf.estimator.ModeKeys.TRAIN:
            return self._train_spec(features, labels)
        logits, classes, probabilities = self._classify(features, is_training=False)
        if mode == tf.estimator.ModeKeys.PREDICT:
            return tf.estimator.EstimatorSpec(
                mode, predictions={"classes": classes, "probabilities": probabilities})
        _, total_loss, correct = self._losses(logits, classes, labels)
        metrics = {"top1": tf.metrics.mean(correct),
                   "top5": tf.metrics.mean(top_k_hits(logits, labels, 5))}
        return tf.estimator.EstimatorSpec(mode, loss=total_loss, eval_metric_ops=metrics)

    def _classify(self, features, is_training):
        """(logits, classes, probabilities) of the network on ``features``."""
        logits, _ = self.network_fn(is_training)(features)
        if is_training and self.warm_start_checkpoint:
            self._warm_start()
        probabilities = tf.nn.softmax(logits, name="probabilities")
        classes = tf.argmax(logits, axis=1, output_type=tf.int32, name="classes")
        return logits, classes, probabilities

    def _losses(self, logits, classes, labels):
        """(classification loss, total loss with regularization, float32 1/0 per image
        for a correct top-1 class)."""
        loss = optimization.classification_loss(self.env, logits, labels)
        total_loss = tf.losses.get_total_loss(add_regularization_losses=True)
        correct = tf.cast(tf.equal(classes, labels), tf.float32)
        return loss, total_loss, correct

    def _train_spec(self, features, labels):
        """The training EstimatorSpec: its graph built by _build_train, or imported by
        the graph cache where one applies; the progress hook around it."""
        env = self.env
        cache = self._graph_cache()
        if cache is None:
            built, cache_hooks = self._build_train(features, labels), []
        else:
            built, cache_hooks = cache.train_graph(
                lambda: self._build_train(features, labels), [features, labels])
        self.train_loss = built["total_loss"]
        self.loss_scale_state = built["loss_scale_state"]
        hook = logger_lib.TrainLoggerHook(
            built["logged"], every_n_steps=env.log_every_n_steps,
            steps_per_epoch=env.steps_per_epoch, max_steps=env.max_train_steps,
            global_batch=env.global_batch, logger=self.logger,
            steps_per_run=self.device.steps_per_run)
        return tf.estimator.EstimatorSpec(
            tf.estimator.ModeKeys.TRAIN, loss=built["loss"], train_op=built["train_op"],
            training_hooks=[hook] + cache_hooks + self.device.training_hooks())

    def _graph_cache(self):
        """The GraphCache for this run, or None where none applies (see graph_cache)."""
        env = self.env
        if not env.graph_cache_dir or self.warm_start_checkpoint \
                or not self.device.train_graph_cacheable():
            return None
        return graph_cache.GraphCache(env.graph_cache_dir, graph_cache.settings_of(env),
                                      env.keep_checkpoint_max, self.logger)

    def _build_train(self, features, labels):
        """Builds the training graph: {"train_op", "loss" (the spec's), "total_loss",
        "logged" (the progress line's tensors), "loss_scale_state" (or None)}."""
        env = self.env
        logits, classes, _ = self._classify(features, is_training=True)
        loss, total_loss, correct = self._losses(logits, classes, labels)
        global_step = tf.train.get_or_create_global_step()
        lr = optimization.learning_rate(env, global_step)
        train_accuracy = tf.reduce_mean(correct, name="train_accuracy")
        optimizer = self.device.wrap_optimizer(optimization.build_optimizer(env, lr))
        # Batch-norm moving statistics update with every step (frozen scopes excepted).
        with tf.control_dependencies(finetune.update_ops(env.trainable_scopes)):
            train_op = optimization.minimize(
                optimizer, total_loss, global_step,
                finetune.trainable_variables(env.trainable_scopes), env.clip_gradient_norm)
        if env.moving_average_decay:
            ema = tf.train.ExponentialMovingAverage(env.moving_average_decay, global_step)
            with tf.control_dependencies([train_op]):
                train_op = ema.apply(optimization.moving_average_variables())
        for name, value in (("loss", loss), ("total_loss", total_loss),
                            ("learning_rate", lr), ("train_accuracy", train_accuracy)):
            logger_lib.scalar_summary(name, value)
        logged = {"loss": loss, "total_loss": total_loss, "lr": lr,
                  "train_accuracy": train_accuracy}
        read_loss_scale = self.device.loss_scale_reader(optimizer)
        loss_scale_state = None
        spec_loss = total_loss
        if read_loss_scale is not None:
            spec_loss = precision.overflow_tolerant_loss(total_loss)
            # Read after the step, so the progress line, TensorBoard (at the global step,
            # every save_summary_steps) and the collapse stop all see the same numbers.
            train_op, loss_scale_state = precision.overflow_telemetry(
                train_op, read_loss_scale, global_step)
            for name in ("loss_scale", "overflow_steps"):
                logger_lib.scalar_summary(name, loss_scale_state[name])
            logged.update(loss_scale_state)
        return {"train_op": train_op, "loss": spec_loss, "total_loss": total_loss,
                "logged": logged, "loss_scale_state": loss_scale_state}

    def _warm_start(self):
        plan, lines = finetune.plan_warm_start(self.env, self.warm_start_checkpoint)
        finetune.warm_start(plan)
        for line in lines:
            self.logger.info(line)

    def train_input_fn(self):
        env = self.env
        return data_provider.make_input_fn(
            env.dataset, "train", is_training=True, batch_size=env.batch_size,
            image_size=env.image_size, preprocessing_name=env.preprocessing_name,
            preprocessing_options=env.preprocessing_options, labels_offset=env.labels_offset,
            num_classes=env.num_classes, rank=env.rank_id, rank_size=env.rank_size,
            seed=env.seed, synthetic=env.use_synthetic_data, num_threads=env.data_threads,
            skipped=self.skipped)

    def _train_files(self):
        return data_provider.files_for_rank(self.env.dataset.list_files("train"),
                                            self.env.rank_id, self.env.rank_size)[0]

    def _count_cut_short_shards(self):
        """--skip_corrupt_records: a shard cut short is read up to its last complete
        record; say so once, at the start, and count the lost record."""
        started = time.time()
        for path, count, problem in record_check.cut_short_shards(self._train_files()):
            self.skipped.add(path, count, CUT_SHORT)
        self.logger.info("checked the record framing of the training shards in %.1f s"
                         % (time.time() - started))

    def train(self):
        """Trains to env.max_train_steps, resuming from the newest checkpoint in
        train_dir; returns the path of the last checkpoint."""
        env = self.env
        ensure_writable_dir(env.train_dir)
        if env.is_chief:
            # Damaged checkpoints go aside before anything reads train_dir's newest.
            for line in repair_checkpoints(env.train_dir, env.allow_fresh_start):
                self.logger.info(line)
            write_json(os.path.join(env.train_dir, MODEL_SPEC_FILE),
                       env.model_spec(self._resumed_spec()))
        start_step = self._prepare_start()
        if start_step >= env.max_train_steps:
            self.logger.info("train_dir already holds step %d >= %d requested steps; "
                             "nothing to train" % (start_step, env.max_train_steps))
            return tf.train.latest_checkpoint(env.train_dir)
        estimator = self.device.build_estimator(self.estimator_model_fn())
        if env.skip_corrupt_records and not env.use_synthetic_data:
            self.skipped = data_provider.SkippedRecords(self.logger, env.labels_offset,
                                                        env.num_classes)
            self._count_cut_short_shards()
        # Under loss scaling an overflowing step is skipped and the scale lowered: only
        # the weights (checked before each save) must stay finite then, and the dynamic
        # scale must not collapse (GuardHook stops that instead of a non-finite loss).
        loss_fn = None if self.device.skips_overflow_steps() else lambda: self.train_loss
        run_state = resilience.GuardHook(self.stop_signals, self.device.steps_per_run,
                                         loss_fn, lambda: self.loss_scale_state,
                                         fixed_loss_scale=env.loss_scale != "dynamic")
        started = time.time()
        for stop_step in self._train_stops(start_step):
            self._stop_if_signalled(start_step)
            self._train_to(estimator, stop_step, run_state)
            self.warm_start_checkpoint = None  # later calls resume from train_dir
            self._stop_if_signalled(start_step)
            if env.is_chief and stop_step in self._eval_steps(start_step):
                self._evaluate_latest()
        elapsed = time.time() - started
        if self.skipped is not None and self.skipped.count:
            self.logger.info("skipped %d bad records in all (%d different ones; "
                             "--skip_corrupt_records)" % (self.skipped.count,
                                                         self.skipped.distinct()))
        checkpoint = tf.train.latest_checkpoint(env.train_dir)
        images = (env.max_train_steps - start_step) * env.global_batch
        self.logger.info("training done: step %d in %.1f s (%.1f images/s, start-up included), "
                         "checkpoint %s"
                         % (env.max_train_steps, elapsed, images / max(elapsed, 1e-9),
                            checkpoint))
        if env.is_chief:
            write_json(os.path.join(env.train_dir, "train_result.json"), {
                "model_name": env.model_name, "num_classes": env.num_classes,
                "image_size": env.image_size, "global_batch": env.global_batch,
                "start_step": start_step, "final_step": env.max_train_steps,
                "seconds": round(elapsed, 3),
                "images_per_sec": round(images / max(elapsed, 1e-9), 2),
                "checkpoint": checkpoint,
                "skipped_records": self.skipped.count if self.skipped is not None else 0})
        return checkpoint

    def _stop_if_signalled(self, start_step):
        """After a SIGTERM / SIGINT: TrainingStopped naming the checkpoint the
        Estimator wrote when the stop hook ended estimator.train."""
        signals = self.stop_signals
        if signals is None or signals.received is None:
            return
        checkpoint = tf.train.latest_checkpoint(self.env.train_dir)
        step = checkpoint_global_step(checkpoint) if checkpoint else start_step
        raise resilience.TrainingStopped(signals.received, step, checkpoint)

    def _train_to(self, estimator, stop_step, run_state):
        """device.train to stop_step; divergence and data errors become UserErrors
        that say where they happened and what to do."""
        listeners = [resilience.FiniteWeightsListener()]
        try:
            self.device.train(estimator, self.train_input_fn(), stop_step,
                              hooks=[run_state], saving_listeners=listeners)
            self._check_reached(stop_step)
        except tf.train.NanLossDuringTrainingError:
            raise UserError(self._diverged("loss became NaN" + (
                " at step %d" % run_state.step if run_state.step is not None else "")))
        except resilience.NonFiniteLoss as err:
            raise UserError(self._diverged("loss became %s at step %d" % (err.loss, err.step)))
        except resilience.NonFiniteWeights as err:
            raise UserError(self._diverged(err.describe()))
        except resilience.LossScaleCollapsed as err:
            raise UserError(self._diverged(
                "the loss scale collapsed to %g at step %d after %d skipped (overflowing) "
                "steps: a step overflowed with its loss unscaled, so loss scaling skips "
                "every step and training has stopped learning" % (
                    err.loss_scale, err.step, err.skipped), self._overflow_dump_hint()))
        except resilience.LossScaleStalled as err:
            raise UserError(self._diverged(
                "%d steps in a row overflowed at the fixed loss scale %g and were skipped, so "
                "the global step stayed at %d and training has stopped learning" % (
                    err.steps, err.loss_scale, err.step),
                "Lower --loss_scale, or pass --loss_scale=dynamic, which lowers itself on "
                "overflows. %s" % self._overflow_dump_hint()))
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
            message = self._explain_data_error(err)
            if message is None:
                raise
            raise UserError(message)

    def _check_reached(self, stop_step):
        """MonitoredSession ends training quietly on an OutOfRangeError, and that is
        also how TensorFlow fails a write past a file-size limit (a checkpoint saver
        other than ours: Ascend's, multi-worker's): a run that stopped short with no
        signal must not pass for finished. The chief's checkpoints say where it got."""
        signals = self.stop_signals
        if not self.env.is_chief or (signals is not None and signals.received is not None):
            return
        checkpoint = tf.train.latest_checkpoint(self.device.model_dir)
        step = checkpoint_global_step(checkpoint) if checkpoint else 0
        if step < stop_step:
            raise UserError(
                "training ended at step %d, before step %d, with no error from TensorFlow: "
                "a checkpoint save that found no room (a full disk or a file-size limit) "
                "ends it so; make room in %s and run the same command again: it resumes "
                "from %s" % (step, stop_step, self.device.model_dir,
                             checkpoint or "the start"))

    def _diverged(self, what, hint=""):
        env = self.env
        checkpoint = tf.train.latest_checkpoint(env.train_dir)
        kept = ("the newest checkpoint, %s (step %d), predates it and is intact"
                % (checkpoint, checkpoint_global_step(checkpoint)) if checkpoint
                else "no checkpoint was written")
        return ("%s (training diverged); %s.%s Lower --learning_rate (now %g), warm up "
                "longer (--warmup_epochs) or clip gradients (--clip_gradient_norm), then "
                "run again: it resumes from that checkpoint"
                % (what, kept, " %s." % hint if hint else "", env.learning_rate))

    def _overflow_dump_hint(self):
        """Where the operators that overflow are found, or how to find them."""
        env = self.env
        if env.device == "npu" and env.over_dump:
            return "The overflowing operators are dumped in %s" % env.over_dump_path
        if env.device == "npu":
            return ("Rerun with --over_dump to dump the overflowing operators (into "
                    "--over_dump_path, default <train_dir>/overflow_dump)")
        return ("TensorFlow has no overflow dump on %s: to name the first operator "
                "producing Inf/NaN, call tf.debugging.enable_check_numerics() before the "
                "graph is built (TF 2.x; e.g. first thing in train.py's main) and rerun"
                % env.device)

    def _explain_data_error(self, err):
        """The line for a TensorFlow error from the training input (a bad record,
        named by shard and index), or None for an error from elsewhere."""
        bad = bad_record_in(err)
        if bad is not None:
            return "%s; fix or re-create that shard, %s" % (bad, SKIP_HINT)
        if "IteratorGetNext" not in (err.message or ""):
            return None
        self.logger.info("the training input failed (%s); looking for the bad record "
                         "(reads the training shards once)" % tf_error_line(err))
        env = self.env
        files = self._train_files()
        found = [(path, count, CUT_SHORT, -1) for path, count, _ in
                 record_check.cut_short_shards(files)]
        if not found and isinstance(err, tf.errors.DataLossError):
            for path in files:
                unreadable = record_check.first_unreadable_record(path)
                if unreadable is not None:
                    found.append((path, unreadable[0], CUT_SHORT, -1))
                    break
        if not found:
            bad = data_provider.find_bad_record(
                files, env.image_size, env.preprocessing_name, env.labels_offset,
                env.num_classes, env.data_threads)
            found = [bad] if bad is not None else []
        if not found:
            return None
        return "%s; fix or re-create that shard, %s" % (
            describe_bad_record(*(tuple(found[0]) + (env.labels_offset, env.num_classes))),
            SKIP_HINT)

    def _eval_steps(self, start_step):
        """Steps after which --eval_every_n_epochs evaluates (the last one included).
        Every rank pauses there, so all ranks run the same train calls; the chief evaluates."""
        every = self.env.eval_every_steps
        if not every:
            return []
        first = (start_step // every + 1) * every
        steps = list(range(first, self.env.max_train_steps, every))
        return steps + [self.env.max_train_steps]

    def _train_stops(self, start_step):
        return self._eval_steps(start_step) or [self.env.max_train_steps]

    def _evaluate_latest(self):
        """Evaluates the checkpoint estimator.train just wrote, in this process."""
        checkpoint = tf.train.latest_checkpoint(self.env.train_dir)
        with Evaluator(self.env.eval_config(), self.logger) as evaluator:
            evaluator.evaluate_or_skip(checkpoint)

    def _resumed_spec(self):
        """train_dir's model_spec.json when this run resumes from a checkpoint there
        (its record of where training started is kept), else None."""
        if tf.train.latest_checkpoint(self.env.train_dir) is None:
            return None
        return read_model_spec(self.env.train_dir)

    def _prepare_start(self):
        """Logs the run's plan; returns the step it starts from. A fresh run (no
        checkpoint in train_dir) arms the --restore_path warm start."""
        env = self.env
        self.logger.info("device: %s; %s" % (self.device.describe(), env.describe()))
        warning = env.bn_decay_warning()
        if warning:
            self.logger.info("warning: " + warning)
        if env.trainable_scopes:
            self.logger.info("training only %s; everything else frozen, batch-norm "
                             "statistics included" % ", ".join(env.trainable_scopes))
        checkpoint = tf.train.latest_checkpoint(env.train_dir)
        if checkpoint is None:
            self.warm_start_checkpoint = env.restore_checkpoint
            return 0
        step = checkpoint_global_step(checkpoint)
        self.logger.info("resuming from %s (step %d)%s" % (
            checkpoint, step, "; --restore_path is not applied to a resumed run"
            if env.restore_checkpoint else ""))
        return step
