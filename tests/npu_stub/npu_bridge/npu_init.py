"""Stand-in for npu_bridge/npu_init.py: ``npu_config_proto`` as the real one writes a
session config that reaches the NPU, and what importing the real module does to the
process: tf.Session.__init__ and tf.InteractiveSession.__init__ are replaced by
npu_config.decorator_tf_session, so every session made afterwards carries NpuOptimizer
(master and r1.15.0 lines 266-267, r3.2.0 lines 265-266). The pipeline must never
import it (devices/inference.py writes the config itself): the import is recorded in
RECORDS as ``npu_init`` for the tests to see.

The real module also re-exports most of npu_bridge, hccl's group API and Keras helpers
(npu_hooks_append, init_resource, ...); those are not provided.
"""
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.client import session

from npu_bridge import record
from npu_bridge.estimator.npu.npu_config import _add_npu_optimizer, decorator_tf_session


def npu_config_proto(config_proto=None):
    """The config npu_bridge gives a session it does not make itself (master and
    r1.15.0 lines 102-122, r3.2.0 lines 101-121): ``config_proto`` (a fresh ConfigProto
    unless one is given, changed in place) with NpuOptimizer and its companions."""
    if not isinstance(config_proto, config_pb2.ConfigProto):
        config_proto = config_pb2.ConfigProto()
    return _add_npu_optimizer(config_proto)


record("npu_init")
session.Session.__init__ = decorator_tf_session(session.Session.__init__)
session.InteractiveSession.__init__ = decorator_tf_session(session.InteractiveSession.__init__)
