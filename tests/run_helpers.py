"""Building the training run's parts in-process, as train.py does, for the tests."""
from devices import placement
import estimator_impl
import logger as logger_lib
from training.loop import TrainingRun


def model_fn_for(env, logger=None, warm_start=None):
    """estimator_impl.ModelFn of ``env`` on its device (devices.placement.create)."""
    logger = logger or logger_lib.get_logger()
    return estimator_impl.ModelFn(env, placement.create(env, logger), logger, warm_start)


def training_run(env, logger=None, stop_signals=None):
    """The TrainingRun train.py would make for ``env``."""
    logger = logger or logger_lib.get_logger()
    device = placement.create(env, logger)
    return TrainingRun(env, device, lambda warm_start: estimator_impl.build_estimator(
        env, device, logger, warm_start), logger, stop_signals)


def train(env, logger=None):
    """Trains ``env`` as train.py would; returns the last checkpoint."""
    return training_run(env, logger).run()
