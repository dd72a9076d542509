"""What data-parallel ranks must agree on, checked where it can go wrong.

Every rank applies the same all-reduced gradient, so the ranks stay equal only while
they agree on everything that shapes a step: the weights, the optimizer's slots, the
global step (it sets the learning rate) and the loss scale (each rank scales its loss
before the all-reduce and unscales after it). Batch-norm moving statistics are each
rank's own by design (they average the rank's own batches), EMA shadows of them too.

RankAgreementHook checks the two scalars across ranks right after the session starts (a
restore that left the ranks apart ends the job there, on every rank, with one line);
StateDigestHook logs a digest of the rest at the end, so two logs compare at a glance.
"""
import hashlib
import re

from utils.errors import UserError
from utils.tf_compat import tf

# Moving statistics (and their EMA shadows): per rank by design.
_PER_RANK = re.compile(r"/moving_(mean|variance)(/|$)")
# float32 holds integers exactly only up to 2**24: the step travels as two parts.
_STEP_PART = 4096


def agreed_variables():
    """The graph's global variables every rank must hold equal, sorted by name; of a
    tf.distribute variable its first local copy (reading the variable itself would
    build a cross-replica reduction, in a graph already finalized)."""
    chosen = sorted((v for v in tf.global_variables() if not _PER_RANK.search(v.op.name)),
                    key=lambda v: v.op.name)
    return [v.values[0] if getattr(v, "values", None) else v for v in chosen]


def state_digest(values):
    """A short digest of a list of numpy arrays (the values of agreed_variables())."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


class StateDigestHook(tf.train.SessionRunHook):
    """At the end of each train() segment, logs ``rank K: step G, state digest D``:
    equal ranks log equal lines."""

    def __init__(self, rank_id, logger):
        self._rank_id = rank_id
        self._logger = logger
        self._variables = None
        self._global_step = None

    def begin(self):
        self._variables = agreed_variables()
        self._global_step = tf.train.get_global_step()

    def end(self, session):
        values, step = session.run([self._variables, self._global_step])
        self._logger.info("rank %d: step %d, state digest %s"
                          % (self._rank_id, step, state_digest(values)))


class RanksDisagree(UserError):
    """The ranks restored different global steps or loss scales."""


class RankAgreementHook(tf.train.SessionRunHook):
    """Once the session exists (restored or fresh), all-reduces the min and the max of
    the global step and the loss scale; every rank gets the same answer, so when they
    differ every rank stops with the same line instead of training apart or waiting in
    a collective until its timeout. ``all_reduce(tensor, reduction)`` is the device's
    collective; ``loss_scale`` a function giving the loss-scale tensor, or None."""

    def __init__(self, all_reduce, loss_scale=None):
        self._all_reduce = all_reduce
        self._loss_scale = loss_scale
        self._extremes = None

    def begin(self):
        step = tf.cast(tf.train.get_global_step(), tf.int64)
        scale = (tf.cast(self._loss_scale(), tf.float32) if self._loss_scale is not None
                 else tf.constant(1.0))
        state = tf.stack([tf.cast(step // _STEP_PART, tf.float32),
                          tf.cast(step % _STEP_PART, tf.float32), scale])
        with tf.name_scope("rank_agreement"):
            # One collective (the max of the values and of their negatives): a single
            # op needs no order among ranks.
            self._extremes = self._all_reduce(tf.concat([state, -state], 0), "max")

    def after_create_session(self, session, coord):
        extremes = session.run(self._extremes)
        high, low = extremes[:3], -extremes[3:]
        steps = [int(v[0]) * _STEP_PART + int(v[1]) for v in (low, high)]
        if steps[0] != steps[1] or low[2] != high[2]:
            raise RanksDisagree(
                "the ranks start from different states: global step %d to %d, loss scale "
                "%g to %g; every rank must resume from train_dir's checkpoint (a rank "
                "that cannot read train_dir, e.g. on another server without shared "
                "storage, starts apart): put train_dir on storage every server sees"
                % (steps[0], steps[1], low[2], high[2]))
