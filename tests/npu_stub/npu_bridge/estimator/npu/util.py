"""Stand-in for npu_bridge/estimator/npu/util.py: argument checks, the rank count and the
iterations_per_loop variables (master, r1.15.0 and r3.2.0 are the same here)."""
import os

from utils.tf_compat import tf

_NPU_RUNCONFIG = "npu_runconfig"
ITERATIONS_PER_LOOP_VAR = "iterations_per_loop"
LOOP_COND_VAR = "loop_cond"
CONST_ZERO = "zero"
CONST_ONE = "one"


def check_not_none(value, name):
    if value is None:
        raise ValueError("{} must not be None".format(name))


def check_positive_integer(value, name):
    if not isinstance(value, int):
        raise TypeError("{} must be int, got {}".format(name, type(value)))
    if value <= 0:
        raise ValueError("{} must be positive, got {}".format(name, value))


def check_nonnegative_integer(value, name):
    if not isinstance(value, int):
        raise TypeError("{} must be int, got {}".format(name, type(value)))
    if value < 0:
        raise ValueError("{} must be nonnegative, got {}".format(name, value))


def get_ranksize():
    """RANK_SIZE, else CM_WORKER_SIZE, else '1', as a string; both set is an error."""
    if os.getenv("CM_WORKER_SIZE") is not None and os.getenv("RANK_SIZE") is not None:
        raise ValueError("RANK_SIZE and CM_WORK_SIZE cannot be configured at the same time")
    if os.getenv("RANK_SIZE") is not None:
        return os.getenv("RANK_SIZE")
    return os.getenv("CM_WORKER_SIZE", "1")


def register_func(var_name):
    """Lets the iterations_per_loop variables' collections go into a MetaGraphDef, as the
    real one does (it registers at npu_hook's import; the stand-in may be imported again
    in one process, hence the KeyError tolerated)."""
    from tensorflow.core.framework import variable_pb2
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import ref_variable  # TF 1.15: in resource_variable_ops
    try:
        ops.register_proto_function(
            "{}_{}".format(_NPU_RUNCONFIG, var_name), proto_type=variable_pb2.VariableDef,
            to_proto=ref_variable._to_proto_fn, from_proto=ref_variable._from_proto_fn)
    except KeyError:
        pass


def create_or_get_var(var_name):
    """The int64 local resource variable npu_runconfig/<var_name>, kept in the collection
    npu_runconfig_<var_name>, beside the global step."""
    graph = tf.get_default_graph()
    collection = "{}_{}".format(_NPU_RUNCONFIG, var_name)
    found = graph.get_collection(collection)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise RuntimeError("Multiple var in collection.")
    global_step = tf.train.get_global_step()
    with tf.colocate_with(global_step, ignore_existing=global_step is None):
        with tf.variable_scope(_NPU_RUNCONFIG, reuse=tf.AUTO_REUSE):
            return tf.get_variable(var_name, initializer=tf.zeros_initializer(), shape=[],
                                   dtype=tf.int64, trainable=False,
                                   collections=[collection, tf.GraphKeys.LOCAL_VARIABLES],
                                   use_resource=True)
