"""GPU and CPU: tf.estimator with tf.distribute.

One process, several GPUs: MirroredStrategy (NCCL all-reduce).
Several processes (TF_CONFIG, set by scripts/run_8p.sh or by you across hosts):
MultiWorkerMirroredStrategy, NCCL between GPUs, ring all-reduce between CPUs. On TF 2.15
an Estimator trains multi-worker only through tf.estimator.train_and_evaluate.
"""
import inspect
import os

from devices import graph_rewrites, precision
from devices.base import Device
from devices.checkpoint_saver import ResumeSafeSaverHook
from utils.tf_compat import tf


class TfDevice(Device):

    def __init__(self, env, logger):
        super(TfDevice, self).__init__(env, logger)
        self.multi_worker = env.rank_size > 1
        self.strategy = self._strategy()
        if env.deterministic:
            _deterministic_kernels()

    def _strategy(self):
        env = self.env
        if self.multi_worker:
            communication = tf.distribute.experimental.CollectiveCommunication
            return tf.distribute.experimental.MultiWorkerMirroredStrategy(
                communication=communication.NCCL if env.device == "gpu"
                else communication.RING)
        if env.local_replicas > 1:
            return tf.distribute.MirroredStrategy(
                ["/gpu:%d" % i for i in range(env.local_replicas)])
        return None

    def session_config(self):
        config = tf.ConfigProto(allow_soft_placement=True)
        if self.env.device == "gpu":
            config.gpu_options.allow_growth = True
        else:
            graph_rewrites.lean_cpu_rewrites(config)
        if self.env.mixed_precision:
            precision.enable_float16_rewrite(config)
        return config

    def build_estimator(self, model_fn):
        env = self.env
        # Every worker keeps the same summary and step-count schedule: their fetches
        # reduce across workers, and a collective only some workers run never returns.
        # TF sends the other workers' summaries and checkpoints to
        # <train_dir>/tmp_worker_<k>; train_dir itself holds the chief's.
        run_config = tf.estimator.RunConfig(
            model_dir=self.model_dir, tf_random_seed=env.seed,
            save_summary_steps=env.log_every_n_steps,
            save_checkpoints_steps=env.save_checkpoints_steps,
            save_checkpoints_secs=env.save_checkpoints_secs,
            keep_checkpoint_max=env.keep_checkpoint_max,
            log_step_count_steps=env.log_every_n_steps,
            session_config=self.session_config(), train_distribute=self.strategy,
            **_no_graph_text())
        return tf.estimator.Estimator(model_fn=model_fn, config=run_config)

    def wrap_optimizer(self, optimizer):
        """The optimizer under loss scaling when the run scales its loss."""
        if self.skips_overflow_steps():
            return precision.loss_scale_optimizer(optimizer, self.env.loss_scale)
        return optimizer

    def loss_scale_reader(self, optimizer):
        """A function reading the loss scale of wrap_optimizer's result afresh where it
        is called (precision.overflow_telemetry), or None without loss scaling."""
        if not self.skips_overflow_steps():
            return None
        return lambda: precision.current_loss_scale(optimizer)

    def train_graph_cacheable(self):
        return self.strategy is None

    def skips_overflow_steps(self):
        # Env leaves loss_scale None unless float16 needs it or the user asked for it
        # (in float32 too: a rehearsal, same overflow mechanics).
        return self.env.loss_scale is not None

    def train(self, estimator, input_fn, max_steps, hooks=(), saving_listeners=()):
        if not self.multi_worker:
            # Our saver hook in place of the Estimator's (it sees one and adds none).
            saver = ResumeSafeSaverHook(
                self.model_dir, save_secs=self.env.save_checkpoints_secs,
                save_steps=self.env.save_checkpoints_steps, save_graph_def=False,
                initial_checkpoint=(self.env.restore_checkpoint is not None
                                    or self.env.deterministic))
            estimator.train(input_fn, max_steps=max_steps, hooks=list(hooks) + [saver],
                            saving_listeners=list(saving_listeners) or None)
            return
        # Only train_and_evaluate runs an Estimator multi-worker; with no "evaluator"
        # task in TF_CONFIG the EvalSpec is never used. Its MonitoredTrainingSession
        # makes every worker's saver hook itself and takes no saving listeners.
        tf.estimator.train_and_evaluate(
            estimator, tf.estimator.TrainSpec(input_fn, max_steps=max_steps,
                                              hooks=list(hooks)),
            tf.estimator.EvalSpec(input_fn, steps=1))

    def describe(self):
        env = self.env
        parts = [env.device]
        if self.multi_worker:
            parts.append("worker %d of %d (MultiWorkerMirroredStrategy)"
                         % (env.rank_id, env.rank_size))
        if env.local_replicas > 1:
            parts.append("%d GPUs (MirroredStrategy)" % env.local_replicas)
        parts.append("mixed float16" if env.mixed_precision else "float32")
        if env.loss_scale is not None:
            parts.append("loss scale %s" % env.loss_scale)
        return ", ".join(parts)


def _deterministic_kernels():
    """TensorFlow's deterministic kernels for the whole process (--deterministic): TF 2.9+
    switches them on with enable_op_determinism (and then refuses an unseeded random
    op); TF 1.15 reads TF_DETERMINISTIC_OPS as it builds the graph (cuDNN convolutions
    and bias-add on GPUs). Before any graph is built."""
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    import tensorflow
    enable = getattr(tensorflow.config.experimental, "enable_op_determinism", None)
    if enable is not None:
        enable()


def _no_graph_text():
    """RunConfig's setting that stops every worker's saver writing graph.pbtxt (seconds of
    text for a MobileNetV2 graph at start-up; the one-process saver skips it too, see
    train()), where the installed tf.estimator has it (TF 2.x; TF 1.15's does not)."""
    parameters = inspect.signature(tf.estimator.RunConfig).parameters
    return ({"checkpoint_save_graph_def": False}
            if "checkpoint_save_graph_def" in parameters else {})
