"""Which device trains, and the Device object the training run talks to.

A Device builds the Estimator, wraps the optimizer (loss scaling, cross-device
gradient reduction) and runs the training loop the way its kind needs:

  npu  devices.npu.NpuDevice      NPUEstimator, HCCL, npu_bridge's loss scaling
  gpu  devices.cluster.TfDevice   tf.estimator, MirroredStrategy / MultiWorkerMirroredStrategy,
                                  mixed float16 (devices.precision)
  cpu  devices.cluster.TfDevice   float32, MultiWorkerMirroredStrategy across processes
"""
import importlib

from utils.errors import UserError

DEVICE_KINDS = ("auto", "npu", "gpu", "cpu")


def npu_bridge_available():
    try:
        importlib.import_module("npu_bridge")
        return True
    except ImportError:
        return False


def visible_gpu_count():
    from utils.tf_compat import tf
    return len(tf.config.experimental.list_physical_devices("GPU"))


def resolve_device(requested):
    """'auto' -> npu when npu_bridge imports, else gpu when TF sees one, else cpu."""
    if requested == "auto":
        if npu_bridge_available():
            return "npu"
        return "gpu" if visible_gpu_count() else "cpu"
    if requested == "npu" and not npu_bridge_available():
        raise UserError("--device=npu but npu_bridge does not import; run inside Ascend's "
                        "TensorFlow image (with the CANN environment sourced), or pass "
                        "--device=auto")
    if requested == "gpu" and not visible_gpu_count():
        raise UserError("--device=gpu but TensorFlow sees no GPU; check CUDA_VISIBLE_DEVICES "
                        "and the CUDA install (pip install tensorflow==2.15.1 instead of "
                        "tensorflow-cpu), or pass --device=cpu")
    if requested not in DEVICE_KINDS:
        raise UserError("--device=%s: choose one of %s" % (requested, ", ".join(DEVICE_KINDS)))
    return requested


def local_replicas(device, num_gpus):
    """Replicas one process trains (MirroredStrategy over its GPUs); 1 elsewhere."""
    if device != "gpu":
        if num_gpus is not None and num_gpus != 1:
            raise UserError("--num_gpus=%d needs --device=gpu (this run uses %s)"
                            % (num_gpus, device))
        return 1
    visible = visible_gpu_count()
    if num_gpus is None:
        return visible
    if not 1 <= num_gpus <= visible:
        raise UserError("--num_gpus=%d but this process sees %d GPU(s); lower it or set "
                        "CUDA_VISIBLE_DEVICES" % (num_gpus, visible))
    return num_gpus


def create(env, logger):
    """The Device for env.device (already resolved by Env)."""
    if env.device == "npu":
        from devices import npu
        return npu.NpuDevice(env, logger)
    from devices import cluster
    return cluster.TfDevice(env, logger)


class Device(object):
    """What every device kind provides to the training run."""

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
        raise NotImplementedError

    def wrap_optimizer(self, optimizer):
        """The optimizer model_fn minimizes with (loss scaling, gradient all-reduce)."""
        return optimizer

    def training_hooks(self):
        return []

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
        return self.env.device
