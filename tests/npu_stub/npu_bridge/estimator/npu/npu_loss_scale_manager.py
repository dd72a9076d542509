class FixedLossScaleManager(object):
    def __init__(self, loss_scale, enable_overflow_check=True):
        self.stub_arguments = dict(loss_scale=loss_scale,
                                   enable_overflow_check=enable_overflow_check)


class ExponentialUpdateLossScaleManager(object):
    def __init__(self, init_loss_scale, incr_every_n_steps, decr_every_n_nan_or_inf=2,
                 incr_ratio=2, decr_ratio=0.8):
        self.stub_arguments = dict(init_loss_scale=init_loss_scale,
                                   incr_every_n_steps=incr_every_n_steps,
                                   decr_every_n_nan_or_inf=decr_every_n_nan_or_inf,
                                   incr_ratio=incr_ratio, decr_ratio=decr_ratio)
