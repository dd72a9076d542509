from npu_bridge import record
from utils.tf_compat import tf


class NPUEstimator(tf.estimator.Estimator):
    def __init__(self, model_fn, model_dir=None, config=None, params=None, **kwargs):
        record("NPUEstimator", model_dir=model_dir, params=params,
               train_distribute=config.train_distribute if config else None, **kwargs)
        super(NPUEstimator, self).__init__(model_fn=model_fn, model_dir=model_dir,
                                           config=config, params=params)
