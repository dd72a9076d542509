"""Which device trains, whether the environment suits it, and its Device object
(the contract is devices.base.Device); which device the evaluator scores on."""
import importlib
import os
import re

from devices import cluster, npu
from devices.ranks import tf_config_ranks
from utils.errors import UserError
from utils.tf_compat import tf

DEVICE_KINDS = ("auto", "npu", "gpu", "cpu")
# Where the stand-alone evaluator runs its network: Ascend's NPU, or the host's CPU.
EVAL_DEVICE_KINDS = ("auto", "npu", "host")
# The Ascend driver's node for each chip this process may open: /dev/davinci<N>. Its
# other nodes (davinci_manager, devmm_svm, hisi_hdc) exist without any chip.
DEVICE_NODE_DIR = "/dev"
_DEVICE_NODE = re.compile(r"davinci[0-9]+$")


def npu_bridge_available():
    """True when Ascend's npu_bridge imports (its CANN environment is set up)."""
    try:
        importlib.import_module("npu_bridge")
        return True
    except ImportError:
        return False


def visible_ascend_devices(dev_dir=None):
    """The Ascend chips this process can open: the names of the davinci<N> nodes of
    ``dev_dir`` (default DEVICE_NODE_DIR, /dev), sorted; a container sees the ones it
    was given."""
    try:
        names = os.listdir(dev_dir or DEVICE_NODE_DIR)
    except OSError:
        return []
    return sorted(name for name in names if _DEVICE_NODE.match(name))


def ascend_device_id(environ):
    """The chip tf_adapter opens: ASCEND_DEVICE_ID, else DEVICE_ID, else 0 (its order,
    util/npu_attrs.cc)."""
    return environ.get("ASCEND_DEVICE_ID") or environ.get("DEVICE_ID") or "0"


def resolve_eval_device(requested, dev_dir=None):
    """(device, why) for --eval_device: 'auto' -> ('npu', None) when npu_bridge imports
    and an Ascend chip is visible (visible_ascend_devices), else ('host', the reason);
    'npu' without either is a UserError; 'host' -> ('host', None)."""
    dev_dir = dev_dir or DEVICE_NODE_DIR
    if requested not in EVAL_DEVICE_KINDS:
        raise UserError("--eval_device=%s: choose one of %s"
                        % (requested, ", ".join(EVAL_DEVICE_KINDS)))
    if requested == "host":
        return "host", None
    missing = None
    if not npu_bridge_available():
        missing = ("npu_bridge does not import", "run inside Ascend's TensorFlow image with "
                   "the CANN environment sourced")
    elif not visible_ascend_devices(dev_dir):
        missing = ("no Ascend device is visible (no %s)"
                   % os.path.join(dev_dir, "davinci<N>"),
                   "check the driver (npu-smi info) and the devices given to the container")
    if missing is None:
        return "npu", None
    if requested == "npu":
        raise UserError("--eval_device=npu but %s; %s, or pass --eval_device=host"
                        % missing)
    return "host", missing[0]


def visible_gpu_count():
    """GPUs TensorFlow sees in this process."""
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


def local_replicas(device, num_gpus, visible):
    """Replicas one process trains (MirroredStrategy over its ``visible`` GPUs); 1
    elsewhere."""
    if device != "gpu":
        if num_gpus is not None and num_gpus != 1:
            raise UserError("--num_gpus=%d needs --device=gpu (this run uses %s)"
                            % (num_gpus, device))
        return 1
    if num_gpus is None:
        return visible
    if not 1 <= num_gpus <= visible:
        raise UserError("--num_gpus=%d but this process sees %d GPU(s); lower it or set "
                        "CUDA_VISIBLE_DEVICES" % (num_gpus, visible))
    return num_gpus


def create(env, logger):
    """The Device for env.device (already resolved by Env)."""
    if env.device == "npu":
        return npu.NpuDevice(env, logger)
    return cluster.TfDevice(env, logger)


def check_device_environment(device, ranks, environ):
    """The process environment a multi-process run on ``device`` needs: HCCL's rank
    table on npu, TF_CONFIG naming every worker elsewhere."""
    if device == "npu":
        npu.check_npu_environment(environ, ranks.rank_size)
    elif ranks.rank_size > 1 and tf_config_ranks(environ) is None:
        raise UserError("RANK_SIZE=%d on %s needs TF_CONFIG naming every worker; start "
                        "with scripts/run_8p.sh, which sets it per process"
                        % (ranks.rank_size, device))
