from npu_bridge import record


class _Delegating(object):
    """Behaves as the optimizer it wraps (the real ones add HCCL / scaling ops)."""

    def __init__(self, optimizer):
        self._wrapped = optimizer
        self.stub_arguments = {"wraps": type(optimizer).__name__}

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


class NPUDistributedOptimizer(_Delegating):
    def __init__(self, optimizer, name=None):
        record("NPUDistributedOptimizer", optimizer=type(optimizer).__name__, name=name)
        super(NPUDistributedOptimizer, self).__init__(optimizer)
