"""Stand-in for npu_bridge/estimator/npu/npu_saver.py. NPUSaver is tf.train.Saver with the
same parameters and defaults (max_to_keep=5); its own builder only adds HCCL broadcasts
for weight-update sharding, which the stand-in does not emulate. r3.2.0's NPUSaver takes
no arguments at all, and its NPUEstimator builds it as NPUSaver()."""
from npu_bridge import branch, record
from utils.tf_compat import tf


class NPUSaver(tf.train.Saver):
    def __init__(self, *args, **kwargs):
        if branch() == "r3.2.0" and (args or kwargs):
            raise TypeError("__init__() takes 1 positional argument but more were given")
        record("NPUSaver", max_to_keep=kwargs.get("max_to_keep", 5))
        super(NPUSaver, self).__init__(*args, **kwargs)
