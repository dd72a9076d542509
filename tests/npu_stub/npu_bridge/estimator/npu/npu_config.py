"""Stand-in for npu_bridge/estimator/npu/npu_config.py: NPURunConfig, DumpConfig and
ProfilingConfig with the real parameter lists and defaults (a keyword the real class lacks
is a TypeError, and inspect.signature(NPURunConfig.__init__) shows the branch's list) and
the real constructor's checks. Options that only configure the device are kept, unread."""
import inspect
import json
import os

from npu_bridge import branch, record
from npu_bridge.estimator.npu import util
from utils.tf_compat import tf

# NPURunConfig's parameters in order, with their defaults (master and r1.15.0).
_PARAMETERS = (
    ("iterations_per_loop", 1), ("profiling_config", None), ("model_dir", None),
    ("tf_random_seed", None), ("save_summary_steps", 0), ("save_checkpoints_steps", None),
    ("save_checkpoints_secs", None), ("session_config", None), ("keep_checkpoint_max", 5),
    ("keep_checkpoint_every_n_hours", 10000), ("log_step_count_steps", 100),
    ("distribute", None), ("enable_data_pre_proc", True), ("precision_mode", None),
    ("enable_reduce_precision", False), ("variable_format_optimize", None),
    ("mix_compile_mode", False), ("hcom_parallel", True), ("graph_memory_max_size", None),
    ("variable_memory_max_size", None), ("dump_config", None),
    ("stream_max_parallel_num", None), ("is_tailing_optimization", False),
    ("horovod_mode", False), ("graph_run_mode", 1), ("op_debug_level", None),
    ("enable_scope_fusion_passes", None), ("enable_exception_dump", 2),
    ("op_select_implmode", None), ("optypelist_for_implmode", None),
    ("dynamic_input_config", None), ("aoe_mode", None), ("work_path", None),
    ("buffer_optimize", "l2_optimize"), ("enable_small_channel", 0),
    ("fusion_switch_file", None), ("enable_compress_weight", False),
    ("compress_weight_conf", None), ("op_compiler_cache_mode", None),
    ("op_compiler_cache_dir", None), ("debug_dir", None), ("hcom_multi_mode", False),
    ("dynamic_input", None), ("dynamic_graph_execute_mode", "dynamic_execute"),
    ("dynamic_inputs_shape_range", None), ("train_distribute", None),
    ("eval_distribute", None), ("local_rank_id", None), ("local_device_list", None),
    ("session_device_id", None), ("distribute_config", None), ("modify_mixlist", None),
    ("op_precision_mode", None), ("device_type", "default_device_type"),
    ("soc_config", None), ("hccl_timeout", None), ("op_wait_timeout", None),
    ("op_execute_timeout", None), ("HCCL_algorithm", None), ("customize_dtypes", None),
    ("op_debug_config", None), ("memory_config", None), ("experimental_config", None),
    ("topo_sorting_mode", None), ("aoe_config_file", None), ("insert_op_file", None),
    ("stream_sync_timeout", -1), ("event_sync_timeout", -1), ("external_weight", False),
    ("es_cluster_config", None), ("deterministic", 0), ("frozen_variable", False),
    ("variable_placement", "Device"), ("jit_compile", "auto"), ("precision_mode_v2", None),
    ("ac_parallel_enable", None))

# r3.2.0: two other defaults, and no ac_parallel_enable.
_R320_DEFAULTS = {"enable_exception_dump": 0, "jit_compile": "Auto"}

# r1.11.0: 68 parameters, master's less these, with jit_compile (a bool there) after
# experimental_config, and these defaults.
_R111_ABSENT = ("stream_sync_timeout", "event_sync_timeout", "es_cluster_config",
                "deterministic", "frozen_variable", "variable_placement", "precision_mode_v2",
                "ac_parallel_enable")
_R111_DEFAULTS = {"variable_format_optimize": True, "op_debug_level": 0, "dynamic_input": False,
                  "enable_exception_dump": 0, "jit_compile": False}

# Handed to tf.estimator.RunConfig; the rest the real class keeps as attributes, these
# under their own names, the others with a leading underscore.
_RUN_CONFIG_ARGS = ("model_dir", "tf_random_seed", "save_summary_steps",
                    "save_checkpoints_steps", "save_checkpoints_secs", "session_config",
                    "keep_checkpoint_max", "keep_checkpoint_every_n_hours",
                    "log_step_count_steps", "train_distribute", "eval_distribute")
_PUBLIC = ("iterations_per_loop", "mix_compile_mode", "enable_data_pre_proc",
           "is_tailing_optimization", "variable_format_optimize", "horovod_mode",
           "graph_run_mode", "op_debug_level", "enable_scope_fusion_passes",
           "enable_exception_dump", "topo_sorting_mode", "aoe_config_file",
           "insert_op_file", "stream_sync_timeout", "event_sync_timeout",
           "es_cluster_config")


def _parameters():
    parameters = list(_PARAMETERS)
    if branch() == "r3.2.0":
        parameters = [(name, _R320_DEFAULTS.get(name, default))
                      for name, default in parameters if name != "ac_parallel_enable"]
    elif branch() == "r1.11.0":
        parameters = [(name, _R111_DEFAULTS.get(name, default))
                      for name, default in parameters
                      if name not in _R111_ABSENT and name != "jit_compile"]
        after = [name for name, _ in parameters].index("experimental_config") + 1
        parameters.insert(after, ("jit_compile", _R111_DEFAULTS["jit_compile"]))
    return parameters


def _signature():
    """NPURunConfig.__init__'s signature on the branch (self first)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("self", kind)] + [
        inspect.Parameter(name, kind, default=default) for name, default in _parameters()])


class NPURunConfig(tf.estimator.RunConfig):
    """RunConfig with NPU support."""

    def __init__(self, *args, **kwargs):
        bound = _SIGNATURE.bind(self, *args, **kwargs)  # TypeError, as the real one
        del bound.arguments["self"]
        record("NPURunConfig", **bound.arguments)
        bound.apply_defaults()
        options = dict(bound.arguments)
        _check(options)
        # r1.8.0-r1.11.0: AOE_MODE set at all (or aoe_mode) means one step per loop.
        if branch() == "r1.11.0" and (options["aoe_mode"] is not None
                                      or os.getenv("AOE_MODE") is not None):
            options["iterations_per_loop"] = 1
        # Neither steps nor seconds: a checkpoint every 100 steps.
        if (options["save_checkpoints_secs"], options["save_checkpoints_steps"]) == (None, None):
            options["save_checkpoints_steps"] = 100
        for name, value in options.items():
            if name not in _RUN_CONFIG_ARGS and name != "distribute":
                setattr(self, name if name in _PUBLIC else "_" + name, value)
        super(NPURunConfig, self).__init__(
            experimental_distribute=None,
            **dict((name, options[name]) for name in _RUN_CONFIG_ARGS))


# The branch's, fixed at import (inspect.signature shows it).
NPURunConfig.__init__.__signature__ = _SIGNATURE = _signature()


def _check(options):
    """The real constructor's checks, in its order."""
    util.check_positive_integer(options["iterations_per_loop"], "iterations_per_loop")
    if not isinstance(options["mix_compile_mode"], bool):
        error = TypeError if branch() == "master" else ValueError
        raise error('"mix_compile_mode" type must be bool')
    if options["mix_compile_mode"] is True and options["iterations_per_loop"] != 1:
        raise ValueError('"iterations_per_loop" must be 1 with "mix_compile_mode" is True')
    if branch() == "master" and not isinstance(options["jit_compile"], str):
        raise TypeError("Expected str, got " + type(options["jit_compile"]).__name__)
    cluster = tf.train.ClusterSpec(json.loads(os.environ.get("TF_CONFIG", "{}"))
                                   .get("cluster", {}))
    ps_mode = type(options["distribute"]).__name__ == "ParameterServerStrategy"
    if bool(cluster) != ps_mode:
        raise ValueError('"cluster" and "distribute" must all be set in ps mode')
    if cluster:
        raise NotImplementedError("npu_bridge stand-in: no parameter-server mode")
    if options["dump_config"] is not None and not isinstance(options["dump_config"],
                                                             DumpConfig):
        raise ValueError("`dump_config` must be provided with type `DumpConfig`")
    for name in ("experimental_config", "dynamic_input_config", "memory_config"):
        if options[name] is not None:
            raise NotImplementedError("npu_bridge stand-in: %s is not emulated" % name)
    if not isinstance(options["horovod_mode"], bool):
        raise ValueError('"horovod_mode" type must be bool')
    util.check_nonnegative_integer(options["graph_run_mode"], "graph_run_mode")
    if options["graph_run_mode"] > 1:
        raise ValueError('"graph_run_mode" value must be 0 or 1')
    util.check_nonnegative_integer(options["enable_exception_dump"], "enable_exception_dump")


class DumpConfig(object):
    """Dump settings (master, r1.15.0 and r3.2.0 are the same)."""

    def __init__(self, enable_dump=False, dump_path=None, dump_step=None, dump_mode="output",
                 enable_dump_debug=False, dump_debug_mode="all", dump_data="tensor",
                 dump_layer=None):
        self._enable_dump = enable_dump
        self._dump_path = dump_path
        self._dump_step = dump_step
        self._dump_mode = dump_mode
        self._enable_dump_debug = enable_dump_debug
        self._dump_debug_mode = dump_debug_mode
        self.dump_data = dump_data
        self.dump_layer = dump_layer
        self.stub_arguments = dict(
            enable_dump=enable_dump, dump_path=dump_path, dump_step=dump_step,
            dump_mode=dump_mode, enable_dump_debug=enable_dump_debug,
            dump_debug_mode=dump_debug_mode, dump_data=dump_data, dump_layer=dump_layer)


class ProfilingConfig(object):
    """Profiling settings (the same on every branch read): ``profiling_options`` is the
    JSON text of CANN's profiler options; without it tf_adapter r1.11.0 on uses its own
    default (util/npu_attrs.cc profiling_default_options), r1.10.0 and older stop."""

    def __init__(self, enable_profiling=False, profiling_options=None):
        self._enable_profiling = enable_profiling
        self._profiling_options = profiling_options
        self.stub_arguments = dict(enable_profiling=enable_profiling,
                                   profiling_options=profiling_options)


def _add_npu_optimizer(config):
    """npu_bridge's one recipe for a session config that reaches the NPU, written out
    alike in npu_init.npu_config_proto and set_npu_default_config (all three branches):
    NpuOptimizer added once (and then memory_optimization set to RewriterConfig.OFF, a
    Toggle value in a MemOptType field, where it reads as MANUAL), soft placement on,
    placement logging off, remapping off, XLA's JIT off. Changes ``config`` in place."""
    rewrite = config.graph_options.rewrite_options
    if not any(custom.name == "NpuOptimizer" for custom in rewrite.custom_optimizers):
        rewrite.custom_optimizers.add().name = "NpuOptimizer"
        rewrite.memory_optimization = rewrite.OFF
    config.allow_soft_placement = True
    config.log_device_placement = False
    rewrite.remapping = rewrite.OFF
    config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.OFF
    return config


def set_npu_default_config(func, args, kwargs):
    """(args, kwargs) of a call of ``func`` (a method with a ``config`` parameter, such
    as tf.Session.__init__) with its config, given by keyword or position or a fresh
    ConfigProto, passed by keyword and carrying NpuOptimizer (a config given is changed
    in place, as the real one does)."""
    names = list(inspect.signature(func).parameters)
    position = names.index("config") - 1  # without self
    if kwargs.get("config") is not None:
        config = kwargs["config"]
    elif len(args) > position:
        config = args[position]
    else:
        config = tf.ConfigProto()
    kwargs["config"] = _add_npu_optimizer(config)
    if len(args) > position:
        args = args[:position] + args[position + 1:]
    return args, kwargs


def decorator_tf_session(func):
    """Wraps a session constructor so that every session gets set_npu_default_config's
    config (what importing npu_bridge.npu_init does to tf.Session)."""
    def class_func_wrapper(self, *args, **kwargs):
        args, kwargs = set_npu_default_config(func, args, kwargs)
        return func(self, *args, **kwargs)
    return class_func_wrapper
