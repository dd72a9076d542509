"""The Device contract: everything the training run asks of a device kind.

  npu  devices.npu.NpuDevice      NPUEstimator, HCCL, npu_bridge's loss scaling
  gpu  devices.cluster.TfDevice   tf.estimator, MirroredStrategy / MultiWorkerMirroredStrategy,
                                  mixed float16 (devices.precision)
  cpu  devices.cluster.TfDevice   float32, MultiWorkerMirroredStrategy across processes

estimator_impl talks to a device only through these members.
"""
from devices import rank_state


class Device(object):
    """What every device kind provides to the training run. Subclasses implement
    build_estimator; every other member has the plain single-device answer here."""

    # Global steps one session.run advances (Ascend runs iterations_per_loop per run).
    steps_per_run = 1

    def __init__(self, env, logger):
        self.env = env
        self.logger = logger

    @property
    def model_dir(self):
        """Where this process's Estimator writes: train_dir (the chief's, shared)."""
        return self.env.train_dir

    def build_estimator(self, model_fn):
        """The Estimator (or the device's own kind of it) that trains with model_fn."""
        raise NotImplementedError

    def wrap_optimizer(self, optimizer):
        """The optimizer model_fn minimizes with (loss scaling, gradient all-reduce)."""
        return optimizer

    def loss_scale_reader(self, optimizer):
        """For the result of wrap_optimizer: a function that reads its loss scale afresh
        where it is called (precision.overflow_telemetry reads it after each step), or
        None when the run has no loss scaling."""
        del optimizer
        return None

    def training_hooks(self):
        """Run hooks the device needs in every training session: the state digest each
        rank logs at the end (devices.rank_state), and a device's own (e.g. a check
        across ranks)."""
        return [rank_state.StateDigestHook(self.env.rank_id, self.logger)]

    def train_graph_cacheable(self):
        """True when model_fn builds the training graph once, whole, for one device, so
        graph_cache may import it instead (not on Ascend, not under tf.distribute)."""
        return False

    def skips_overflow_steps(self):
        """True when loss scaling skips the steps whose float16 gradients overflow: a
        non-finite value in a step is then expected now and then, not a divergence."""
        return False

    def train(self, estimator, input_fn, max_steps, hooks=(), saving_listeners=()):
        """Trains to max_steps with extra run hooks (every rank) and checkpoint-saver
        listeners (the chief's saver)."""
        estimator.train(input_fn, max_steps=max_steps, hooks=list(hooks),
                        saving_listeners=list(saving_listeners) or None)

    def describe(self):
        """The device part of the run's first log line."""
        return self.env.device
