"""Stand-in for npu_bridge/estimator/npu/npu_estimator.py: NPUEstimator as the real one is
on the host side (its constructor's checks, the session options it writes, the hooks it
adds to training, IterationOp), plus what the device would do that changes a run: the
iterations_per_loop loop, the session options GE refuses, a training input that is not of
a static shape. master and r1.15.0 are the same; r3.2.0 and r1.11.0 differ in the saver
they build, r1.11.0 also in the precision mode it writes when none is given and in the
modes the device accepts.
"""
import logging
import os

from tensorflow.python.util import function_utils
from tensorflow_estimator.python.estimator import estimator as estimator_lib

from npu_bridge import _ge_plugin, branch, record
from npu_bridge.estimator.npu import util
from npu_bridge.estimator.npu.npu_common import NPUBasics
from npu_bridge.estimator.npu.npu_config import NPURunConfig
from npu_bridge.estimator.npu.npu_hook import (NPUBroadcastGlobalVariablesHook,
                                               NPUCheckpointSaverHook, SetIterationsVarHook)
from npu_bridge.estimator.npu.npu_saver import NPUSaver
from npu_bridge.hccl import _exchange as hccl_exchange
from utils.tf_compat import tf

_log = logging.getLogger("npu_bridge")

# Values GE accepts for precision_mode (tf_adapter/util/npu_attrs.cc kPrecisionModeList,
# master, r1.15.0, r3.2.0: r1.12.0 on).
PRECISION_MODES = ("force_fp32", "allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype",
                   "allow_mix_precision", "cube_fp16in_fp32out", "allow_mix_precision_fp16",
                   "allow_mix_precision_bf16", "allow_fp32_to_bf16")
# r1.11.0's tf_adapter checks none and passes the text to GE; the modes of its time are the
# five its own 2.x adapter lists (tf_adapter_2.x/python/npu_device/configs/npu_config.py).
# That GE refuses the others there is the stand-in's inference.
PRECISION_MODES_R1_11 = ("force_fp32", "allow_fp32_to_fp16", "force_fp16",
                         "must_keep_origin_dtype", "allow_mix_precision")
DUMP_DEBUG_MODES = ("aicore_overflow", "atomic_overflow", "all")


class NPUEstimator(tf.estimator.Estimator):
    """Estimator with NPU support."""

    def __init__(self, model_fn=None, model_dir=None, config=None, params=None,
                 job_start_file="", warm_start_from=None):
        _log.info("NPUEstimator init...")
        record("NPUEstimator", model_dir=model_dir, params=params,
               job_start_file=job_start_file, warm_start_from=warm_start_from,
               train_distribute=getattr(config, "train_distribute", None))
        if config is None or not isinstance(config, NPURunConfig):
            raise ValueError("`config` must be provided with type `NPUConfigs`")
        estimator_lib._verify_model_fn_args(model_fn, params)
        config = _load_graph_optimizers(config)
        job_info = NPUBasics(job_start_file).jobinfo
        if job_info is None:
            raise ValueError("Load job info failed, please check whether `JOB_ID` is set in "
                             "environment variable")
        self._stub_device_info = job_info._device_info
        model_dir = _check_model_dir(model_dir, config)
        if not warm_start_from:
            warm_start_from = job_info._local_checkpoint_dir or os.getenv("RESTORE_FROM")
        super(NPUEstimator, self).__init__(
            model_fn=self._augment_model_fn(model_fn, model_dir, config),
            model_dir=model_dir, config=config, params=params or {},
            warm_start_from=warm_start_from)

    def _augment_model_fn(self, model_fn, model_dir, config):
        """The model_fn the Estimator calls: the given one, then the NPU's hooks first in
        the training hooks."""
        device_info = self._stub_device_info

        def _model_fn(features, labels, mode, params):
            passed = dict((name, value) for name, value in (
                ("labels", labels), ("mode", mode), ("params", params), ("config", config))
                if name in function_utils.fn_args(model_fn))
            spec = model_fn(features=features, **passed)
            _check_session_options(config.session_config)
            _ge_plugin.init_options(_npu_options(config.session_config))
            if mode != tf.estimator.ModeKeys.TRAIN:
                return spec
            if not isinstance(spec, tf.estimator.EstimatorSpec):
                raise RuntimeError("estimator_spec used by NPU train must have type "
                                   "`NPUEstimatorSpec` or `EstimatorSpec`. Got {}"
                                   .format(type(spec)))
            if config.enable_data_pre_proc:
                _check_static_input(features, labels)
            hooks, spec = _training_hooks(spec, model_dir, config, device_info)
            return spec._replace(training_hooks=tuple(hooks + list(spec.training_hooks or [])))
        return _model_fn


def _training_hooks(spec, model_dir, config, device_info):
    """(the hooks NPUEstimator puts before the model's training hooks, the spec with its
    train op grouped as IterationOp when the device loops)."""
    hooks = []
    rank_size = util.get_ranksize()
    if rank_size is not None and rank_size.isdigit() and int(rank_size) > 1 \
            and not config.horovod_mode:
        hooks.append(NPUBroadcastGlobalVariablesHook(device_info._root_rank,
                                                     device_info._index))
    if config.save_checkpoints_steps or config.save_checkpoints_secs:
        # Every rank's hook (these are training_hooks, not training_chief_hooks).
        saver = (NPUSaver(max_to_keep=config.keep_checkpoint_max) if branch() == "master"
                 else NPUSaver())
        hooks.append(NPUCheckpointSaverHook(
            checkpoint_dir=model_dir, save_secs=config.save_checkpoints_secs,
            save_steps=config.save_checkpoints_steps, saver=saver))
    if config.iterations_per_loop > 1:
        hooks.append(SetIterationsVarHook(config.iterations_per_loop))
        spec = spec._replace(train_op=tf.group(spec.train_op, name="IterationOp"))
        hooks.append(DeviceLoop(spec.train_op))
    return hooks, spec


class DeviceLoop(tf.train.SessionRunHook):
    """Not in npu_bridge: what the device does with IterationOp. A session.run of it runs
    the training step npu_runconfig/iterations_per_loop + 1 times (the value
    SetIterationsVarHook loaded: iterations_per_loop - 1), each on the next batch of the
    input, and hands back the fetches of the last one. Here the first ones run on the plain
    session just before that run, so no hook sees them, and the run itself is the last:
    hooks see one run per loop, the global step advanced by the whole loop, the loss and
    the other fetches of its last step."""

    def __init__(self, iteration_op):
        self._op = iteration_op
        self._iterations = None

    def begin(self):
        self._iterations = util.create_or_get_var(util.ITERATIONS_PER_LOOP_VAR)

    def before_run(self, run_context):
        fetched = tf.nest.flatten(run_context.original_args.fetches)
        if not any(getattr(f, "name", None) == self._op.name for f in fetched):
            return None  # a run without the train op is not looped
        for _ in range(int(run_context.session.run(self._iterations))):
            run_context.session.run(self._op)
        return None


def _check_model_dir(model_dir, config):
    if None not in (model_dir, config.model_dir) and model_dir != config.model_dir:
        raise ValueError("model_dir are set both in NPUEstimator and NPURunConfig, but with "
                         "different values. In constructor: '{}', in NPURunConfig: '{}' "
                         .format(model_dir, config.model_dir))
    model_dir = model_dir or config.model_dir
    if model_dir is None:
        raise NotImplementedError("npu_bridge stand-in: no temporary model_dir")
    return model_dir


def _load_graph_optimizers(config):
    """Writes the NPU's options into the session config, as the real one does: Grappler's
    pass list (GradFusionOptimizer is the NPU's; TF on the CPU skips a name it lacks) and
    the NpuOptimizer custom optimizer's parameter map. Only the options this pipeline can
    set are written here."""
    if config.session_config is None:
        config = config.replace(session_config=tf.ConfigProto())
    rewrite = config.session_config.graph_options.rewrite_options
    rewrite.optimizers.extend(["pruning", "function", "constfold", "shape", "arithmetic",
                               "loop", "dependency", "layout", "GradFusionOptimizer"])
    custom = rewrite.custom_optimizers.add()
    custom.name = "NpuOptimizer"
    params = custom.parameter_map
    params["enable_data_pre_proc"].b = config.enable_data_pre_proc
    params["mix_compile_mode"].b = config.mix_compile_mode
    params["use_off_line"].b = True
    params["iterations_per_loop"].i = config.iterations_per_loop
    params["hcom_parallel"].b = config._hcom_parallel
    params["graph_run_mode"].i = config.graph_run_mode
    params["enable_exception_dump"].i = config.enable_exception_dump
    if config._precision_mode is not None:
        params["precision_mode"].s = tf.compat.as_bytes(config._precision_mode)
    elif branch() == "r1.11.0":  # __load_mix_precision there; none from r1.12.0's
        params["precision_mode"].s = (b"allow_fp32_to_fp16" if config.graph_run_mode
                                      else b"force_fp16")
    params["enable_reduce_precision"].b = config._enable_reduce_precision
    if config._hccl_timeout is not None:  # GE hands it to HCCL: ge.exec.hcclExecuteTimeOut
        params["hccl_timeout"].i = config._hccl_timeout
        hccl_exchange.SESSION_OPTIONS["hccl_timeout"] = config._hccl_timeout
    _load_dump_config(config._dump_config, params)
    _load_session_options(config, params)
    params["job"].s = b"localhost"
    params["task_index"].i = 0
    return config


def _load_session_options(config, params):
    """The compile cache, HCCL's timeout, AOE and the profiler, as the real one writes
    them (__load_mstune_config, __load_graph_optimizers, __load_profiling_options):
    only those given."""
    for name in ("aoe_mode", "op_compiler_cache_mode", "op_compiler_cache_dir"):
        if getattr(config, "_" + name) is not None:
            params[name].s = tf.compat.as_bytes(getattr(config, "_" + name))
    if config._hccl_timeout is not None:
        params["hccl_timeout"].i = config._hccl_timeout
    profiling = config._profiling_config
    if profiling is not None:
        params["profiling_mode"].b = profiling._enable_profiling
        if profiling._enable_profiling:
            params["profiling_options"].s = tf.compat.as_bytes(
                profiling._profiling_options or "")


def _load_dump_config(dump, params):
    params["enable_dump"].b = bool(dump and dump._enable_dump)
    params["enable_dump_debug"].b = bool(dump and dump._enable_dump_debug)
    if dump is None:
        return
    for name, value in (("dump_path", dump._dump_path), ("dump_step", dump._dump_step),
                        ("dump_mode", dump._dump_mode), ("dump_data", dump.dump_data),
                        ("dump_layer", dump.dump_layer)):
        if value is not None:
            params[name].s = tf.compat.as_bytes(value)
    if dump._dump_mode is not None:  # sic: the real one tests dump_mode here
        params["dump_debug_mode"].s = tf.compat.as_bytes(dump._dump_debug_mode)


def _npu_options(session_config):
    for custom in session_config.graph_options.rewrite_options.custom_optimizers:
        if custom.name == "NpuOptimizer":
            return custom.parameter_map
    return None


def _check_session_options(session_config):
    """What tf_adapter refuses when the session starts (util/npu_attrs.cc): a precision_mode
    outside its list, a dump without an existing read-write dump_path folder, a
    dump_debug_mode outside its list."""
    params = _npu_options(session_config)
    if params is None:
        return
    if "precision_mode" in params:
        mode = params["precision_mode"].s.decode()
        known = PRECISION_MODES_R1_11 if branch() == "r1.11.0" else PRECISION_MODES
        if mode not in known:
            raise tf.errors.InvalidArgumentError(None, None, "precision_mode %s is not in %s"
                                                 % (mode, list(known)))
    if params["enable_dump"].b or params["enable_dump_debug"].b:
        if "dump_path" not in params:
            raise tf.errors.InternalError(None, None,
                                          "if use dump function, dump_path must be set.")
        path = params["dump_path"].s.decode()
        if not os.path.isdir(path):
            raise tf.errors.InternalError(None, None, "the path %s is not directory." % path)
        if not os.access(path, os.R_OK | os.W_OK):
            raise tf.errors.InternalError(
                None, None, "the path %s does't have read, write permissions." % path)
    if params["enable_dump_debug"].b and "dump_debug_mode" in params:
        if params["dump_debug_mode"].s.decode() not in DUMP_DEBUG_MODES:
            raise ValueError("dump debug mode should be one of the list:[aicore_overflow, "
                             "atomic_overflow, all]")


def _check_static_input(features, labels):
    """The input runs on the device (enable_data_pre_proc): a batch whose shape is not
    static (a Dataset.batch without drop_remainder=True) is refused at graph build. This is
    the stricter behaviour, of tf_adapter up to r1.10.0 and of GE's performance-sensitive
    ops (util/infershape_util.cc); see README.md."""
    for tensor in tf.nest.flatten([features, labels]):
        if tensor is not None and not tensor.shape.is_fully_defined():
            raise tf.errors.InternalError(
                None, None, "npu_bridge stand-in: training input %s has shape %s, not a "
                "static one: on the device the input must have a static batch shape "
                "(Dataset.batch(..., drop_remainder=True))" % (tensor.name, tensor.shape))
