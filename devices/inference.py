"""Sessions that only run a network forward (the evaluator): on the host CPU, or on
Ascend's NPU with the session config npu_bridge gives a session it does not make itself.

A plain tf.Session runs on the host CPU even where npu_bridge is installed: tf_adapter
takes a graph to the NPU only when the session's rewrite options carry the custom
optimizer ``NpuOptimizer`` (tf_adapter/util/npu_attrs.cc, GetPassOptions: without it
do_npu_optimizer stays false, and optimizers/om_partition_subgraphs_pass.cc then leaves
the graph to TensorFlow). npu_bridge writes that config in npu_init.npu_config_proto, but
npu_init cannot be imported for it: importing it replaces tf.Session.__init__ and
InteractiveSession.__init__ with npu_config.decorator_tf_session, which puts the same
config into every later session of the process (the ledger's, the exporter's, the
input pipeline's). So npu_inference_config writes those fields itself, then the options
of an inference run, as Ascend's online-inference guide sets them (use_off_line,
precision_mode, graph_run_mode 0, remapping and the memory optimizer off).
"""
import os

from devices import npu, placement
from utils.tf_compat import tf

HOST, NPU = "host", "npu"
NPU_OPTIMIZER = "NpuOptimizer"
# Every operator in its own float type: top-1 as the host computes it. Without a
# precision_mode tf_adapter passes none to GE (npu_attrs.cc), and an inference graph gets
# CANN's default, force_fp16 (which Ascend's online-inference guide keeps, for speed).
DEFAULT_PRECISION_MODE = "must_keep_origin_dtype"
# graph_run_mode: 0 compiles the graph for inference, 1 (tf_adapter's default) for
# training (npu_attrs.cc; 0 also turns enable_small_channel on).
INFERENCE_RUN_MODE = 0


def npu_inference_config(precision_mode=DEFAULT_PRECISION_MODE):
    """A ConfigProto that takes a session's graphs to the NPU for inference: the fields
    of npu_bridge's npu_config_proto (npu_init.py; master and r1.15.0 lines 102-122,
    r3.2.0 lines 101-121, the same code), then use_off_line (as NPUEstimator sets it,
    npu_estimator.py __load_graph_optimizers), graph_run_mode 0 and ``precision_mode``
    in NpuOptimizer's parameter map."""
    if precision_mode not in npu.PRECISION_MODES:
        raise ValueError("precision_mode %r is none of %s"
                         % (precision_mode, ", ".join(npu.PRECISION_MODES)))
    config = tf.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    custom = rewrite.custom_optimizers.add()
    custom.name = NPU_OPTIMIZER
    # npu_config_proto assigns RewriterConfig.OFF (the Toggle value 2) to this MemOptType
    # field, where 2 reads as MANUAL: Grappler's memory optimizer then rewrites only
    # operators annotated for it, and none are. Kept as npu_bridge writes it.
    rewrite.memory_optimization = rewrite.OFF
    config.allow_soft_placement = True
    config.log_device_placement = False
    rewrite.remapping = rewrite.OFF
    config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.OFF
    options = custom.parameter_map
    options["use_off_line"].b = True  # compile for the device (the reader's default too)
    options["graph_run_mode"].i = INFERENCE_RUN_MODE
    options["precision_mode"].s = precision_mode.encode("ascii")
    return config


def session_config(device, precision_mode=None):
    """The ConfigProto of an inference session on ``device`` (host: TensorFlow's
    defaults; npu: npu_inference_config(precision_mode))."""
    if device == NPU:
        return npu_inference_config(precision_mode or DEFAULT_PRECISION_MODE)
    if device != HOST:
        raise ValueError("device %r is neither %s nor %s" % (device, NPU, HOST))
    return tf.ConfigProto()


def describe(device, precision_mode=None, environ=None):
    """Where a session on ``device`` runs, for log lines: "on the host CPU", or "on the
    NPU (device N, precision_mode M, graph_run_mode 0)". A host session is placed by
    TensorFlow, which takes a GPU it sees (not on Ascend's image): then it says so."""
    if device != NPU:
        gpus = placement.visible_gpu_count()
        if gpus:
            return "on the host, where TensorFlow places it (%d GPU%s visible)" % (
                gpus, "" if gpus == 1 else "s")
        return "on the host CPU"
    environ = os.environ if environ is None else environ
    return ("on the NPU (device %s, precision_mode %s, graph_run_mode %d)"
            % (placement.ascend_device_id(environ),
               precision_mode or DEFAULT_PRECISION_MODE, INFERENCE_RUN_MODE))
