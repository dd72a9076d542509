"""Ascend NPU: NPURunConfig + NPUEstimator, HCCL data parallelism, loss scaling.

With devices.npu_capabilities the only module that imports npu_bridge (Ascend's
tf_adapter, present only in the vendor's TF 1.15 image). Ranks come from RANK_ID /
RANK_SIZE / DEVICE_ID and the HCCL rank table (RANK_TABLE_FILE), which
scripts/run_8p.sh sets per process.

NPUEstimator adds hooks of its own to training (tests/npu_stub/README.md has the details):
with RANK_SIZE > 1 the broadcast of rank 0's trainable variables, and, on every rank,
NPUCheckpointSaverHook into the Estimator's model_dir; the device then runs
iterations_per_loop steps per session.run.

What the installed tf_adapter supports is read from its signatures
(devices.npu_capabilities), the vendor's environment variables that would steer a run
are refused (devices.ascend_environment), and the options of devices.npu_options (the
operator compile cache, HCCL's timeout, the profiler, the all-reduce split) are handed
to NPURunConfig and HCCL here.
"""
import importlib
import os

from devices import ascend_environment, npu_capabilities, npu_options, rank_state
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


# The flag behind each optional NPURunConfig keyword (for a tf_adapter that lacks one).
_FLAG_OF = {"op_compiler_cache_mode": "--op_compiler_cache_mode",
            "op_compiler_cache_dir": "--op_compiler_cache_dir",
            "profiling_config": "--profiling_dir", "dump_config": "--over_dump",
            "deterministic": "--deterministic"}


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
        self._capabilities = npu_capabilities.read()
        npu_capabilities.check_precision_mode(self._capabilities, env.precision_mode)
        warning = npu_capabilities.keep_warning(
            self._capabilities, self._keep_checkpoint_max(), self.model_dir)
        if warning:
            logger.info(warning)
        logger.info("npu options: " + self._describe_options())

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
            keep_checkpoint_max=self._keep_checkpoint_max(),
            # Summaries and step-rate events from rank 0 only.
            save_summary_steps=env.log_every_n_steps if env.is_chief else 0,
            log_step_count_steps=env.log_every_n_steps if env.is_chief else None,
            session_config=tf.ConfigProto(allow_soft_placement=True))
        if env.over_dump:
            kwargs["dump_config"] = _bridge("npu_config").DumpConfig(
                enable_dump_debug=True, dump_path=env.over_dump_path, dump_debug_mode="all")
        kwargs["op_compiler_cache_mode"] = env.op_compiler_cache_mode
        if env.op_compiler_cache_mode != "disable":
            kwargs["op_compiler_cache_dir"] = env.op_compiler_cache_dir
        if env.profiling_dir:
            kwargs["profiling_config"] = _bridge("npu_config").ProfilingConfig(
                enable_profiling=True,
                profiling_options=npu_options.profiling_options(env.profiling_dir))
        # Before r1.7 NPURunConfig has no hccl_timeout: HCCL_EXEC_TIMEOUT (set by
        # build_estimator) is the same setting.
        if (env.hccl_timeout is not None
                and "hccl_timeout" in self._capabilities.run_config_parameters):
            kwargs["hccl_timeout"] = env.hccl_timeout
        if env.deterministic:  # GE's deterministic kernels (tf_adapter r1.12.0 on)
            kwargs["deterministic"] = 1
        npu_capabilities.check_run_config_kwargs(self._capabilities, kwargs, _FLAG_OF)
        return kwargs

    def _keep_checkpoint_max(self):
        return self.env.keep_checkpoint_max if self.env.is_chief else 1

    def build_estimator(self, model_fn):
        # npu_bridge reads its job from the environment and refuses to start without a
        # JOB_ID; the launcher sets one for several ranks, a one-device run may not.
        if not os.environ.get("JOB_ID"):
            os.environ["JOB_ID"] = DEFAULT_JOB_ID
        env = self.env
        if env.over_dump:  # tf_adapter refuses a dump_path that is not a folder
            os.makedirs(env.over_dump_path, exist_ok=True)
        for folder in (env.op_compiler_cache_dir if env.op_compiler_cache_mode != "disable"
                       else None, env.profiling_dir):
            if folder:
                os.makedirs(folder, exist_ok=True)
        if env.hccl_timeout is not None:
            # HCCL reads it when the first session starts; it and NPURunConfig's
            # hccl_timeout then agree, whichever one this CANN release heeds.
            os.environ["HCCL_EXEC_TIMEOUT"] = str(env.hccl_timeout)
        self._apply_allreduce_split()
        config = _bridge("npu_config").NPURunConfig(**self.run_config_kwargs())
        return _bridge("npu_estimator").NPUEstimator(model_fn=model_fn, config=config)

    def _apply_allreduce_split(self):
        """--allreduce_split through HCCL's own Python API (CANN's hccl package, which
        npu_bridge.npu_init re-exports), before the first session compiles the graph."""
        env = self.env
        if env.allreduce_split is None:
            return
        if env.rank_size < 2:
            self.logger.info("--allreduce_split ignored: one rank has no all-reduce")
            return
        try:
            split = importlib.import_module("hccl.split.api")
        except ImportError as err:
            raise UserError("--allreduce_split needs CANN's hccl Python package "
                            "(hccl.split.api), which does not import (%s); source CANN's "
                            "set_env.sh, or drop --allreduce_split" % err)
        kind, values = env.allreduce_split
        if kind == "size":
            split.set_split_strategy_by_size(list(values), "hccl_world_group")
        else:
            split.set_split_strategy_by_idx(list(values), "hccl_world_group")

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

    def training_hooks(self):
        """The state digest, and with several ranks the check that they all start from
        the same global step and loss scale (devices.rank_state)."""
        hooks = super(NpuDevice, self).training_hooks()
        if self.env.rank_size > 1:
            hccl = importlib.import_module("npu_bridge.hccl.hccl_ops")
            manager = self._manager
            hooks.append(rank_state.RankAgreementHook(
                hccl.allreduce, manager.get_loss_scale if manager is not None else None))
        return hooks

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

    def _describe_options(self):
        env = self.env
        parts = ["op_compiler_cache_mode %s%s" % (
            env.op_compiler_cache_mode, "" if env.op_compiler_cache_mode == "disable"
            else " in " + env.op_compiler_cache_dir)]
        parts.append("hccl_timeout %s" % ("%d s" % env.hccl_timeout
                                          if env.hccl_timeout is not None else "HCCL's"))
        if env.profiling_dir:
            parts.append("profiling into %s" % env.profiling_dir)
        if env.allreduce_split:
            parts.append("all-reduce split %s:%s" % (env.allreduce_split[0], ",".join(
                str(v) for v in env.allreduce_split[1])))
        return "; ".join(parts)

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
