from npu_bridge import record
from utils.tf_compat import tf

# The arguments npu_bridge's NPURunConfig shares with tf.estimator.RunConfig.
_RUN_CONFIG_ARGS = ("model_dir", "tf_random_seed", "save_summary_steps",
                    "save_checkpoints_steps", "save_checkpoints_secs", "session_config",
                    "keep_checkpoint_max", "log_step_count_steps")


class NPURunConfig(tf.estimator.RunConfig):
    def __init__(self, iterations_per_loop=1, precision_mode=None, hcom_parallel=False,
                 enable_data_pre_proc=True, dump_config=None, **kwargs):
        record("NPURunConfig", iterations_per_loop=iterations_per_loop,
               precision_mode=precision_mode, hcom_parallel=hcom_parallel,
               enable_data_pre_proc=enable_data_pre_proc, dump_config=dump_config, **kwargs)
        unknown = set(kwargs) - set(_RUN_CONFIG_ARGS)
        if unknown:
            raise TypeError("NPURunConfig stand-in: unexpected arguments %s" % sorted(unknown))
        self.iterations_per_loop = iterations_per_loop
        super(NPURunConfig, self).__init__(**kwargs)


class DumpConfig(object):
    def __init__(self, enable_dump=False, dump_path=None, dump_step=None, dump_mode="output",
                 enable_dump_debug=False, dump_debug_mode="all"):
        self.stub_arguments = dict(enable_dump=enable_dump, dump_path=dump_path,
                                   dump_step=dump_step, dump_mode=dump_mode,
                                   enable_dump_debug=enable_dump_debug,
                                   dump_debug_mode=dump_debug_mode)
