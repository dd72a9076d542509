"""Ascend NPU: NPURunConfig + NPUEstimator, HCCL data parallelism, loss scaling.

The only module that imports npu_bridge (Ascend's tf_adapter, present only in the
vendor's TF 1.15 image). Ranks come from RANK_ID / RANK_SIZE / DEVICE_ID and the
HCCL rank table (RANK_TABLE_FILE), which scripts/run_8p.sh sets per process.

NPUEstimator adds hooks of its own to training (tests/npu_stub/README.md has the details):
with RANK_SIZE > 1 the broadcast of rank 0's trainable variables, and, on every rank,
NPUCheckpointSaverHook into the Estimator's model_dir; the device then runs
iterations_per_loop steps per session.run.
"""
import importlib
import os

from devices import ascend_environment
from devices.base import Device
from devices.launch import DEFAULT_JOB_ID
from utils.errors import UserError
from utils.tf_compat import tf

# precision_mode values npu_bridge accepts (CANN 5.x-7.x).
PRECISION_MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16", "force_fp32",
                   "must_keep_origin_dtype", "cube_fp16in_fp32out", "allow_mix_precision_fp16",
                   "allow_mix_precision_bf16", "allow_fp32_to_bf16")
# Modes that keep every op in its own float type need no loss scaling.
_FULL_PRECISION_MODES = ("force_fp32", "must_keep_origin_dtype")

# Dynamic loss scaling as the Ascend model zoo sets it up.
DYNAMIC_LOSS_SCALE = dict(init_loss_scale=2 ** 32, incr_every_n_steps=1000,
                          decr_every_n_nan_or_inf=2, decr_ratio=0.5)


def _bridge(module):
    return importlib.import_module("npu_bridge.estimator.npu." + module)


class NpuDevice(Device):

    # The loss-scale manager wrap_optimizer built (None without loss scaling).
    _manager = None

    def __init__(self, env, logger):
        super(NpuDevice, self).__init__(env, logger)
        if env.save_checkpoints_secs and env.rank_size > 1:
            # NPUEstimator's saver hook runs on every rank, each on its own clock.
            raise UserError(
                "--save_checkpoints_secs with RANK_SIZE=%d on npu: every rank saves its own "
                "checkpoints (npu_bridge's saver runs on each), timed by its own clock, so "
                "the ranks' checkpoints would hold different steps and a resumed run would "
                "start them at different steps; use --save_checkpoints_steps"
                % env.rank_size)

    @property
    def steps_per_run(self):
        return self.env.iterations_per_loop

    @property
    def model_dir(self):
        """Only rank 0 checkpoints into train_dir: the other ranks' Estimators (whose
        NPUCheckpointSaverHook saves too) write to their own folders, so no two processes
        ever write the same file (their trainable weights equal rank 0's: same seed,
        npu_bridge's broadcast at start, all-reduced gradients)."""
        env = self.env
        if env.is_chief:
            return env.train_dir
        return os.path.join(env.train_dir, "rank_%d" % env.rank_id)

    def run_config_kwargs(self):
        env = self.env
        kwargs = dict(
            model_dir=self.model_dir, tf_random_seed=env.seed,
            precision_mode=env.precision_mode, hcom_parallel=True,
            iterations_per_loop=env.iterations_per_loop, enable_data_pre_proc=True,
            save_checkpoints_steps=env.save_checkpoints_steps,
            save_checkpoints_secs=env.save_checkpoints_secs,
            keep_checkpoint_max=env.keep_checkpoint_max if env.is_chief else 1,
            # Summaries and step-rate events from rank 0 only.
            save_summary_steps=env.log_every_n_steps if env.is_chief else 0,
            log_step_count_steps=env.log_every_n_steps if env.is_chief else None,
            session_config=tf.ConfigProto(allow_soft_placement=True))
        if env.over_dump:
            kwargs["dump_config"] = _bridge("npu_config").DumpConfig(
                enable_dump_debug=True, dump_path=env.over_dump_path, dump_debug_mode="all")
        return kwargs

    def build_estimator(self, model_fn):
        # npu_bridge reads its job from the environment and refuses to start without a
        # JOB_ID; the launcher sets one for several ranks, a one-device run may not.
        if not os.environ.get("JOB_ID"):
            os.environ["JOB_ID"] = DEFAULT_JOB_ID
        if self.env.over_dump:  # tf_adapter refuses a dump_path that is not a folder
            os.makedirs(self.env.over_dump_path, exist_ok=True)
        config = _bridge("npu_config").NPURunConfig(**self.run_config_kwargs())
        return _bridge("npu_estimator").NPUEstimator(model_fn=model_fn, config=config)

    def wrap_optimizer(self, optimizer):
        env = self.env
        if env.rank_size > 1:
            optimizer = _bridge("npu_optimizer").NPUDistributedOptimizer(optimizer)
        manager = self._loss_scale_manager()
        if manager is not None:
            optimizer = _bridge("npu_loss_scale_optimizer").NPULossScaleOptimizer(
                optimizer, manager, is_distributed=env.rank_size > 1)
        self._manager = manager
        return optimizer

    def loss_scale_reader(self, optimizer):
        """The manager wrap_optimizer gave the optimizer holds the loss scale:
        get_loss_scale() (a variable under dynamic scaling, read afresh by
        precision.overflow_telemetry), or None without loss scaling."""
        del optimizer  # the manager is this device's own
        return self._manager.get_loss_scale if self._manager is not None else None

    def _loss_scale_manager(self):
        env = self.env
        if not self._loss_scale_needed():
            return None
        managers = _bridge("npu_loss_scale_manager")
        if env.loss_scale == "dynamic":
            return managers.ExponentialUpdateLossScaleManager(**DYNAMIC_LOSS_SCALE)
        return managers.FixedLossScaleManager(loss_scale=env.loss_scale)

    def describe(self):
        env = self.env
        scale = ("loss scale %s" % env.loss_scale if self._loss_scale_needed()
                 else "no loss scaling")
        return ("npu (rank %d of %d, device %s), precision_mode %s, %s, %d steps per loop"
                % (env.rank_id, env.rank_size, env.device_id, env.precision_mode, scale,
                   env.iterations_per_loop))

    def skips_overflow_steps(self):
        return self._loss_scale_needed()

    def _loss_scale_needed(self):
        return (self.env.loss_scale is not None
                and self.env.precision_mode not in _FULL_PRECISION_MODES)


def check_vendor_environment(environ):
    """UserError for the first of the vendor's variables that would steer the run
    (devices.ascend_environment), naming the others found."""
    found = ascend_environment.problems(environ)
    if found:
        more = " (also: %s)" % ", ".join(line.split("=")[0] for line in found[1:])
        raise UserError(found[0] + (more if len(found) > 1 else ""))


def check_npu_environment(environ, rank_size):
    """The vendor's variables that would steer the run, and HCCL's rank table against
    RANK_SIZE; say so before any graph."""
    check_vendor_environment(environ)
    table_file = environ.get("RANK_TABLE_FILE")
    if rank_size > 1 and not table_file:
        raise UserError("RANK_SIZE=%d on npu needs RANK_TABLE_FILE (the HCCL rank table); "
                        "start with scripts/run_8p.sh, which sets it per process" % rank_size)
    if table_file:
        from rank_tables import table as rank_table
        rank_table.check_rank_size(rank_table.load(table_file), rank_size)
    if environ.get("TF_CONFIG"):
        raise UserError("TF_CONFIG is set but npu training uses HCCL rank tables, not "
                        "TF_CONFIG; unset TF_CONFIG")
