from npu_bridge import record
from npu_bridge.estimator.npu.npu_optimizer import _Delegating


class NPULossScaleOptimizer(_Delegating):
    def __init__(self, opt, loss_scale_manager, is_distributed=False):
        record("NPULossScaleOptimizer", opt=type(opt).__name__,
               loss_scale_manager=loss_scale_manager, is_distributed=is_distributed)
        super(NPULossScaleOptimizer, self).__init__(opt)
