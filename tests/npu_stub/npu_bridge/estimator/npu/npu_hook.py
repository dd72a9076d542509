from npu_bridge import record
from utils.tf_compat import tf


class NPUBroadcastGlobalVariablesHook(tf.train.SessionRunHook):
    def __init__(self, root_rank=None, index=None):
        record("NPUBroadcastGlobalVariablesHook", root_rank=root_rank, index=index)
