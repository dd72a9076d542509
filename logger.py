"""Progress output: one console + file log, and a training hook printing step lines.

Lines look like
  step:120 epoch:2.67 ips:212.4 loss:0.8123 total_loss:0.9011 lr:0.0456 train_accuracy:0.7812 eta:0:01:05
and go to stdout and to <train_dir>/train_log.log (appended, so resumed runs keep history).
"""
import logging
import os
import sys
import warnings

from utils.progress import ProgressMeter, format_eta
from utils.tf_compat import tf

_LOGGER_NAME = "mobilenet_pipeline"


def quiet_tensorflow(verbose=False):
    """TF 1.x-style code on TF 2.15 prints hundreds of deprecation warnings; keep
    the console for our progress lines unless --verbose."""
    if verbose:
        return
    tf.get_logger().setLevel(logging.ERROR)
    tf.logging.set_verbosity(tf.logging.ERROR)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    warnings.filterwarnings("ignore")


class _LogFileHandler(logging.FileHandler):
    """A log file that, when a line cannot be written (a full disk), says so once on
    stderr instead of printing logging's traceback for every line; the console keeps
    every line."""

    _warned = False

    def handleError(self, record):
        if not self._warned:
            self._warned = True
            error = sys.exc_info()[1]
            sys.stderr.write("warning: cannot write %s (%s); lines from here on are on "
                             "the console only\n" % (self.baseFilename, error))
            sys.stderr.flush()


def get_logger(log_file=None):
    """The project's logger: plain lines on stdout, plus ``log_file`` when given."""
    logger = logging.getLogger(_LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(getattr(h, "_pipeline_console", False) for h in logger.handlers):
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("%(message)s"))
        console._pipeline_console = True
        logger.addHandler(console)
    if log_file:
        path = os.path.abspath(log_file)
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            directory = os.path.dirname(path)
            if directory and not os.path.isdir(directory):
                os.makedirs(directory)
            handler = _LogFileHandler(path, mode="a")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            logger.addHandler(handler)
    return logger


def scalar_summary(tag, value):
    """A training scalar for TensorBoard tagged exactly ``tag``. (tf.summary.scalar tags
    by its op's unique name: 'learning_rate_1' when the graph has an op learning_rate.)
    The op is still named ``tag`` where free: the Estimator adds a summary of its own
    loss unless an op named 'loss' is one already."""
    summary = tf.raw_ops.ScalarSummary(tags=tag, values=value, name=tag)
    tf.add_to_collection(tf.GraphKeys.SUMMARIES, summary)
    return summary


class TrainLoggerHook(tf.train.SessionRunHook):
    """Prints a progress line every ``every_n_steps`` global steps.

    ``tensors`` maps names (loss, total_loss, lr, train_accuracy, loss_scale,
    overflow_steps) to graph tensors; they are fetched only on logging runs so other runs
    pay nothing. One session.run advances ``steps_per_run`` global steps (Ascend's
    iterations_per_loop), except a step that dynamic loss scaling skips (float16
    overflow): the global step is read back on logging runs, and the runs that did not
    advance it are counted. ``overflow_skipped:`` shows the graph's count
    (``overflow_steps``, the run's whole history, as TensorBoard does) when given, else
    this hook's own count since the session started.
    """

    def __init__(self, tensors, every_n_steps, steps_per_epoch, max_steps, global_batch,
                 logger, steps_per_run=1):
        self._tensors = tensors
        self._every = every_n_steps
        self._steps_per_epoch = steps_per_epoch
        self._max_steps = max_steps
        self._steps_per_run = steps_per_run
        self._meter = ProgressMeter(max_steps, global_batch)
        self._logger = logger
        self._global_step = None
        self._step = 0          # global step as far as this hook knows
        self._skipped = 0       # runs that did not advance the global step
        self._runs_since_read = 0
        self._step_at_read = 0
        self._next_log = None

    def begin(self):
        self._global_step = tf.train.get_global_step()

    def after_create_session(self, session, coord):
        self._step = self._step_at_read = session.run(self._global_step)
        self._meter.start(self._step)
        self._next_log = (self._step // self._every + 1) * self._every

    def before_run(self, run_context):
        step_after = self._step + self._steps_per_run
        if step_after >= self._next_log or step_after >= self._max_steps:
            return tf.train.SessionRunArgs(self._tensors)
        return None

    def after_run(self, run_context, run_values):
        self._step += self._steps_per_run
        self._runs_since_read += 1
        if run_values.results:
            self._read_global_step(run_context.session)
            self._report(self._step, run_values.results)

    def _read_global_step(self, session):
        step = int(session.run(self._global_step))
        expected = self._runs_since_read * self._steps_per_run
        self._skipped += max(0, expected - (step - self._step_at_read)) // self._steps_per_run
        self._step = self._step_at_read = step
        self._runs_since_read = 0

    def _report(self, step, results):
        ips, eta = self._meter.update(step)
        self._next_log = (step // self._every + 1) * self._every
        parts = ["step:%d" % step, "epoch:%.2f" % (step / float(self._steps_per_epoch)),
                 "ips:%.1f" % ips]
        for name, fmt in (("loss", "%.4f"), ("total_loss", "%.4f"), ("lr", "%.6g"),
                          ("train_accuracy", "%.4f"), ("loss_scale", "%g")):
            if name in results:
                parts.append(("%s:" + fmt) % (name, results[name]))
        if "overflow_steps" in results:
            parts.append("overflow_skipped:%d" % results["overflow_steps"])
        elif "loss_scale" in results or self._skipped:
            parts.append("overflow_skipped:%d" % self._skipped)
        parts.append("eta:%s" % format_eta(eta))
        self._logger.info(" ".join(parts))
