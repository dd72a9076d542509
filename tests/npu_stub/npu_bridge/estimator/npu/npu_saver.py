"""Stand-in for npu_bridge/estimator/npu/npu_saver.py. NPUSaver is tf.train.Saver; its own
builder only adds HCCL broadcasts for weight-update sharding, which the stand-in does not
emulate. Its constructor follows the branch, read at import:

  master, r1.15.0 (r1.14.0 on)   __init__ with tf.train.Saver's parameters and defaults
                                 (max_to_keep=5); NPUEstimator passes keep_checkpoint_max
  r3.2.0, r1.11.0 (also r1.10.0  __init__(self) only; NPUEstimator builds NPUSaver(), which
  to r1.13.0, r2.1.0, r3.1.0)    keeps 5 checkpoints
"""
from npu_bridge import branch, record
from utils.tf_compat import tf

if branch() == "master":
    class NPUSaver(tf.train.Saver):
        """NPU saver for saving checkpoints"""

        def __init__(self, var_list=None, reshape=False, sharded=False, max_to_keep=5,
                     keep_checkpoint_every_n_hours=10000.0, name=None,
                     restore_sequentially=False, saver_def=None, builder=None,
                     defer_build=False, allow_empty=False,
                     write_version=tf.train.SaverDef.V2, pad_step_number=False,
                     save_relative_paths=False, filename=None):
            record("NPUSaver", max_to_keep=max_to_keep)
            super(NPUSaver, self).__init__(
                var_list=var_list, reshape=reshape, sharded=sharded, max_to_keep=max_to_keep,
                keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours, name=name,
                restore_sequentially=restore_sequentially, saver_def=saver_def,
                builder=builder, defer_build=defer_build, allow_empty=allow_empty,
                write_version=write_version, pad_step_number=pad_step_number,
                save_relative_paths=save_relative_paths, filename=filename)
else:
    class NPUSaver(tf.train.Saver):
        """NPU saver for saving checkpoints"""

        def __init__(self):
            record("NPUSaver", max_to_keep=5)
            super(NPUSaver, self).__init__()
