"""The device layer: which device trains, and the RunConfig / Estimator for it.

This is the only module that may import npu_bridge or tf.distribute.
"""
import importlib

from utils.errors import UserError
from utils.tf_compat import tf


def npu_bridge_available():
    try:
        importlib.import_module("npu_bridge")
        return True
    except ImportError:
        return False


def visible_gpus():
    return tf.config.experimental.list_physical_devices("GPU")


def resolve_device(requested):
    """'auto' -> npu when npu_bridge imports, else gpu when TF sees one, else cpu."""
    if requested == "auto":
        if npu_bridge_available():
            return "npu"
        return "gpu" if visible_gpus() else "cpu"
    if requested == "npu":
        if not npu_bridge_available():
            raise UserError("--device=npu but npu_bridge does not import; run inside the "
                            "Ascend TensorFlow image, or pass --device=auto")
        raise UserError("--device=npu: Ascend support (NPURunConfig, HCCL) is not in this "
                        "build yet; use --device=gpu or --device=cpu")
    if requested == "gpu" and not visible_gpus():
        raise UserError("--device=gpu but TensorFlow sees no GPU; check CUDA_VISIBLE_DEVICES "
                        "and the CUDA install, or pass --device=cpu")
    return requested


def session_config(device):
    config = tf.ConfigProto(allow_soft_placement=True)
    if device == "gpu":
        config.gpu_options.allow_growth = True
    return config


def build_estimator(env, model_fn, device, params=None):
    """A tf.estimator.Estimator writing to env.train_dir, checkpointing every
    env.save_checkpoints_steps (one epoch by default) and keeping the last few."""
    run_config = tf.estimator.RunConfig(
        model_dir=env.train_dir,
        tf_random_seed=env.seed,
        save_summary_steps=env.log_every_n_steps,
        save_checkpoints_steps=env.save_checkpoints_steps,
        keep_checkpoint_max=env.keep_checkpoint_max,
        log_step_count_steps=env.log_every_n_steps,
        session_config=session_config(device))
    return tf.estimator.Estimator(model_fn=model_fn, config=run_config, params=params)
