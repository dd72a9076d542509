"""The Estimator's model_fn, and the Estimator built around it for the device.

build_estimator(env, device, logger, warm_start) gives the device's Estimator (its
RunConfig is the device's: devices/) calling ModelFn, which builds, per mode:

  TRAIN    the network (warm-started from ``warm_start`` while the model_dir holds no
           checkpoint), the loss with regularization, the device's optimizer (loss
           scaling, all-reduce) minimizing it, the weights' moving averages, the
           progress hook; the graph cache may import all of it instead. The loss and the
           loss-scaling state are named for the loop's DivergenceHook
           (training.resilience.watch_for_divergence).
  EVAL     the loss and top-1 / top-5 metrics
  PREDICT  classes and probabilities

The training loop around the Estimator is training/loop.py.
"""
import collections

from devices import precision
from evaluation.evaluator import top_k_hits
import logger as logger_lib
from nets import nets_factory
from training import finetune, graph_cache, optimization, resilience
from utils.tf_compat import do_not_convert, tf

# What _build_train makes: the spec's train op and loss ("loss": the loss the spec
# reports, overflow-tolerant under loss scaling), the total loss with regularization,
# the progress line's tensors ("logged") and loss scaling's state after the step (or None).
TrainGraph = collections.namedtuple(
    "TrainGraph", "train_op loss total_loss logged loss_scale_state")


def network_fn(env, is_training):
    """nets_factory's network function with the run's settings."""
    return nets_factory.get_network_fn(
        env.model_name, env.num_classes, weight_decay=env.weight_decay,
        is_training=is_training, bn_decay=env.bn_decay,
        dropout_keep_prob=env.dropout_keep_prob, drop_path_rate=env.drop_path_rate,
        quantize=env.quantization, weights_init=env.weights_init)


def build_estimator(env, device, logger, warm_start=None):
    """The device's Estimator training ModelFn(env, device, logger, warm_start)."""
    return device.build_estimator(estimator_model_fn(ModelFn(env, device, logger,
                                                             warm_start)))


def estimator_model_fn(model):
    """``model`` as tf.estimator calls a model_fn, kept away from autograph (see
    do_not_convert); the Estimator reads its argument names, which the wrapper hides,
    hence the explicit signature outside it."""
    build = do_not_convert(model)

    def model_fn(features, labels, mode, params):
        return build(features, labels, mode, params)
    return model_fn


class ModelFn(object):
    """The model_fn of one run: ``ModelFn(...)(features, labels, mode)`` -> EstimatorSpec.
    It keeps nothing between calls: each builds a graph from the run's settings."""

    def __init__(self, env, device, logger, warm_start=None):
        self.env = env
        self.device = device
        self.logger = logger
        self.warm_start = warm_start  # checkpoint a fresh model_dir starts from, or None

    def __call__(self, features, labels, mode, params=None):
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

    def warm_starts(self):
        """True when this graph starts from ``warm_start``: given, and no checkpoint in
        the model_dir to resume from (as tf.estimator's own WarmStartSettings), so the
        run's later segments resume instead."""
        return bool(self.warm_start) and \
            tf.train.latest_checkpoint(self.device.model_dir) is None

    def _classify(self, features, is_training):
        """(logits, classes, probabilities) of the network on ``features``."""
        logits, _ = network_fn(self.env, is_training)(features)
        if is_training and self.warm_starts():
            plan, lines = finetune.plan_warm_start(self.env, self.warm_start)
            finetune.warm_start(plan)
            for line in lines:
                self.logger.info(line)
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
        cache = self.graph_cache()
        if cache is None:
            built, cache_hooks = self._build_train(features, labels), []
        else:
            built, cache_hooks = cache.train_graph(
                lambda: self._build_train(features, labels)._asdict(), [features, labels])
            built = TrainGraph(**built)
        # Under loss scaling an overflowing step is skipped and the scale lowered: only
        # the weights (checked before each save) must stay finite then, and the scale
        # must not collapse; otherwise the loss itself must stay finite.
        resilience.watch_for_divergence(
            None if self.device.skips_overflow_steps() else built.total_loss,
            built.loss_scale_state)
        hook = logger_lib.TrainLoggerHook(
            built.logged, every_n_steps=env.log_every_n_steps,
            steps_per_epoch=env.steps_per_epoch, max_steps=env.max_train_steps,
            global_batch=env.global_batch, logger=self.logger,
            steps_per_run=self.device.steps_per_run)
        return tf.estimator.EstimatorSpec(
            tf.estimator.ModeKeys.TRAIN, loss=built.loss, train_op=built.train_op,
            training_hooks=[hook] + cache_hooks + self.device.training_hooks())

    def graph_cache(self):
        """The GraphCache for this graph, or None where none applies (see graph_cache)."""
        env = self.env
        if not env.graph_cache_dir or self.warm_starts() \
                or not self.device.train_graph_cacheable():
            return None
        return graph_cache.GraphCache(env.graph_cache_dir, graph_cache.settings_of(env),
                                      graph_cache.run_values_of(env), env.keep_checkpoint_max,
                                      self.logger)

    def _build_train(self, features, labels):
        """Builds the training graph: a TrainGraph."""
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
        logged = {"loss": loss, "total_loss": total_loss, "lr": lr,
                  "train_accuracy": train_accuracy}
        for name, value in (("loss", loss), ("total_loss", total_loss),
                            ("learning_rate", lr), ("train_accuracy", train_accuracy)):
            logger_lib.scalar_summary(name, value)
        read_loss_scale = self.device.loss_scale_reader(optimizer)
        if read_loss_scale is None:
            return TrainGraph(train_op, total_loss, total_loss, logged, None)
        # Read after the step, so the progress line, TensorBoard (at the global step,
        # every save_summary_steps) and the collapse stop all see the same numbers.
        train_op, loss_scale_state = precision.overflow_telemetry(
            train_op, read_loss_scale, global_step)
        for name in ("loss_scale", "overflow_steps"):
            logger_lib.scalar_summary(name, loss_scale_state[name])
        logged.update(loss_scale_state)
        return TrainGraph(train_op, precision.overflow_tolerant_loss(total_loss),
                          total_loss, logged, loss_scale_state)
