"""Training that survives being stopped: signals, safe checkpoints, divergence.

SIGTERM / SIGINT   StopSignals records the signal; StopHook ends estimator.train after
                   the current step, so its CheckpointSaverHook writes a checkpoint at
                   that step before the process exits (128 + signal number). A second
                   signal stops at once (the default action).
kill -9            nothing runs; the state file still names the last complete checkpoint
                   (utils.checkpoints.repair_checkpoints tidies what the save left).
resumed runs       devices.checkpoint_saver.ResumeSafeSaverHook does not write again the
                   checkpoint the run resumed from.
NaN / Inf          DivergenceHook stops after a step whose loss is not finite, before that
                   step can be saved (not under loss scaling, where such steps are skipped
                   and the scale lowered); FiniteWeightsListener refuses to save weights
                   that are not finite; the Estimator's own NanTensorHook stops on a NaN
                   loss. Training reports each as divergence, in one line.
loss scale         Under dynamic loss scaling DivergenceHook stops, before that step can be
                   saved, when the scale collapses (a step overflows at its floor of 1).
"""
import logging
import math
import os
import signal
import threading

import numpy as np

from utils.tf_compat import tf

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
# Overflowing steps in a row after which a fixed loss scale counts as stalled. A bad
# batch overflows one step; a scale too large for the model overflows every one, and a
# skipped step never advances the global step, so that run would never end.
FIXED_SCALE_OVERFLOW_LIMIT = 50


class TrainingStopped(Exception):
    """estimator.train ended early on a signal; a checkpoint was written at ``step``."""

    def __init__(self, signum, step, checkpoint):
        super(TrainingStopped, self).__init__(signum, step, checkpoint)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    @property
    def exit_code(self):
        return 128 + self.signum

    def describe(self):
        return ("stopped by %s at step %d; checkpoint %s written; run the same command "
                "again to resume" % (SIGNAL_NAMES.get(self.signum, self.signum), self.step,
                                     self.checkpoint))


class NonFiniteLoss(Exception):
    """The loss of step ``step`` was NaN or Inf."""

    def __init__(self, step, loss):
        super(NonFiniteLoss, self).__init__(step, loss)
        self.step, self.loss = step, loss


class LossScaleCollapsed(Exception):
    """Dynamic loss scaling hit bottom at global step ``step``: the scale is
    ``loss_scale`` after ``skipped`` skipped (overflowing) steps in all."""

    def __init__(self, step, loss_scale, skipped):
        super(LossScaleCollapsed, self).__init__(step, loss_scale, skipped)
        self.step, self.loss_scale, self.skipped = step, loss_scale, skipped


class LossScaleStalled(Exception):
    """A fixed loss scale overflowed ``steps`` steps in a row: each was skipped, so the
    global step stayed at ``step``."""

    def __init__(self, step, loss_scale, steps):
        super(LossScaleStalled, self).__init__(step, loss_scale, steps)
        self.step, self.loss_scale, self.steps = step, loss_scale, steps


class NonFiniteWeights(Exception):
    """Raised before a checkpoint of NaN / Inf weights would be written."""

    def __init__(self, step, names=()):
        super(NonFiniteWeights, self).__init__(step, names)
        self.step, self.names = step, list(names)

    def describe(self):
        which = ""
        if self.names:
            which = " (%s%s)" % (self.names[0], " and %d more" % (len(self.names) - 1)
                                 if len(self.names) > 1 else "")
        return "weights became NaN or Inf by step %d%s" % (self.step, which)


class StopSignals(object):
    """Records SIGTERM / SIGINT instead of dying, while installed (main thread only;
    elsewhere installing does nothing). The handler only sets a flag: logging from a
    signal handler can deadlock on the logging lock."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in SIGNAL_NAMES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        if self.received is not None:
            # Second signal: the user means it. Die the default way, now.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        os.write(2, ("\n%s: stopping after the current step and writing a checkpoint "
                     "(send it again to stop at once)\n"
                     % SIGNAL_NAMES.get(signum, signum)).encode())

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc_info):
        self.uninstall()


class _StepCounter(tf.train.SessionRunHook):
    """Keeps count of the global step (``step``, after the last run), so a stop or a
    failure can say where it was without reading the step in every run."""

    def __init__(self, steps_per_run=1):
        self._steps_per_run = steps_per_run
        self.step = None

    def begin(self):
        self._global_step = tf.train.get_global_step()

    def after_create_session(self, session, coord):
        self.step = int(session.run(self._global_step))

    def after_run(self, run_context, run_values):
        self.step += self._steps_per_run


class StopHook(_StepCounter):
    """Every rank's hook of the training loop: ends estimator.train after the step during
    which StopSignals received a signal (the saver then writes that step)."""

    def __init__(self, signals=None, steps_per_run=1):
        _StepCounter.__init__(self, steps_per_run)
        self._signals = signals

    def after_run(self, run_context, run_values):
        _StepCounter.after_run(self, run_context, run_values)
        if self._signals is not None and self._signals.received is not None:
            run_context.request_stop()


# Graph collections through which model_fn names the tensors DivergenceHook watches: the
# hook is the loop's (it must come before every saver hook, and NPUEstimator puts its
# own saver ahead of the model's training hooks), the tensors are the graph's.
WATCHED = ("loss", "loss_scale", "overflow_steps")
_COLLECTION = "divergence_watch/"


def watch_for_divergence(loss=None, loss_scale_state=None):
    """Called by model_fn: DivergenceHook will check ``loss`` for NaN / Inf and loss
    scaling's {"loss_scale", "overflow_steps"} (read after each step) for a collapse."""
    given = dict(loss_scale_state or {}, loss=loss)
    for name in WATCHED:
        if given.get(name) is not None:
            tf.add_to_collection(_COLLECTION + name, given[name])


def watched_tensors():
    """{name: tensor} that model_fn gave watch_for_divergence in the default graph."""
    found = {}
    for name in WATCHED:
        tensors = tf.get_collection(_COLLECTION + name)
        if tensors:
            found[name] = tensors[-1]
    return found


class DivergenceHook(_StepCounter):
    """Every rank's watch over what model_fn named with watch_for_divergence:

    - a loss: raises NonFiniteLoss after a step whose loss is NaN or Inf, before the
      saver hooks (which come later in the hook list) can write that step;
    - loss scaling's state: raises LossScaleCollapsed when a dynamic scale has hit
      bottom, or LossScaleStalled when a fixed one (``fixed_loss_scale``) overflowed
      FIXED_SCALE_OVERFLOW_LIMIT steps in a row, also before the savers.
    """

    def __init__(self, steps_per_run=1, fixed_loss_scale=False):
        _StepCounter.__init__(self, steps_per_run)
        self._fixed_loss_scale = fixed_loss_scale

    def begin(self):
        _StepCounter.begin(self)
        watched = watched_tensors()
        self._fetches = {}
        if "loss" in watched:
            self._fetches["loss"] = watched.pop("loss")
        if watched:
            self._fetches["loss_scale"] = watched
        self._scale = self._skipped = None  # loss scaling after the last run
        self._streak = 0  # overflowing steps in a row, counted in whole runs

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._fetches) if self._fetches else None

    def after_run(self, run_context, run_values):
        _StepCounter.after_run(self, run_context, run_values)
        results = run_values.results or {}
        if "loss" in results and not math.isfinite(float(results["loss"])):
            raise NonFiniteLoss(self.step, float(results["loss"]))
        if "loss_scale" in results:
            self._check_loss_scale(run_context.session, results["loss_scale"])

    def _check_loss_scale(self, session, state):
        """Dynamic loss scaling lowers the scale on each overflow, down to 1 (TF's
        DynamicLossScale and npu_bridge's ExponentialUpdateLossScaleManager both stop
        there): a step that still overflows at 1 overflowed with its loss unscaled, so no
        scale can save the steps after it, every one is skipped and training silently
        stops learning. Below 1 (a scaler without that floor) counts the same."""
        scale, skipped = float(state["loss_scale"]), int(state["overflow_steps"])
        if self._fixed_loss_scale:
            self._check_overflow_streak(session, scale, skipped)
        else:
            overflowed_at_floor = (self._scale is not None and self._scale <= 1.0
                                   and skipped > self._skipped)
            if scale < 1.0 or overflowed_at_floor:
                raise LossScaleCollapsed(int(session.run(self._global_step)), scale, skipped)
        self._scale, self._skipped = scale, skipped

    def _check_overflow_streak(self, session, scale, skipped):
        """A fixed scale never comes down: each overflowing step is skipped and the next
        one overflows again. Counted per run: a run of several steps (an NPU loop) joins
        the streak only when every one of its steps overflowed."""
        every_step_skipped = (self._skipped is not None
                              and skipped - self._skipped == self._steps_per_run)
        self._streak = self._streak + self._steps_per_run if every_step_skipped else 0
        if self._streak >= FIXED_SCALE_OVERFLOW_LIMIT:
            raise LossScaleStalled(int(session.run(self._global_step)), scale, self._streak)


class _DropDivergedLog(logging.Filter):
    def filter(self, record):
        return "Model diverged with loss" not in record.getMessage()


def quiet_nan_hook():
    """Drops NanTensorHook's "Model diverged with loss = NaN." log lines (printed twice,
    by TensorFlow's handler and absl's): training reports divergence in its own line."""
    logger = tf.get_logger()
    if not any(isinstance(f, _DropDivergedLog) for f in logger.filters):
        logger.addFilter(_DropDivergedLog())


class FiniteWeightsListener(tf.train.CheckpointSaverListener):
    """Checks every float variable is finite before each checkpoint; raises
    NonFiniteWeights instead of saving NaN / Inf weights, so the newest checkpoint
    stays the last good one. One pass over the weights per save, nothing per step.

    The values come through each variable's own read op and are checked on the host
    (MobileNetV2 with its Momentum slots: 28 MB, 30-50 ms a save): a check op per
    variable added ~1,300 ops to every graph (1.2 s of start-up under cProfile) for a
    test run once per save."""

    def begin(self):
        self._weights = [v for v in tf.global_variables() if v.dtype.base_dtype.is_floating]

    def before_save(self, session, global_step_value):
        values = session.run(self._weights)
        bad = [v.op.name for v, value in zip(self._weights, values)
               if not np.isfinite(value).all()]
        if bad:
            raise NonFiniteWeights(int(global_step_value), bad)
