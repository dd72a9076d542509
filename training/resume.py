"""One resume source for every rank: train_dir's newest intact checkpoint.

Rank 0 checkpoints into train_dir; a device whose other ranks write elsewhere (Ascend:
NPUEstimator gives every rank its own saver, train_dir/rank_K here) would otherwise
restore each rank from its own folder, and the ranks' global steps, optimizer slots and
loss scales part whenever those folders differ: a kill between two ranks' saves, a
damaged checkpoint rank 0 moved aside, --allow_fresh_start, a lost folder, more ranks
than before. So every rank takes the same decision from the same files, and the other
ranks' folders are scratch, refilled from the chosen checkpoint at start.

The decision is read-only (utils.checkpoints.plan_resume), so rank K needs no message
from rank 0: it reaches rank 0's answer whether or not rank 0's repair has run yet (what
the repair moves aside is what the plan skips). devices.rank_state checks the outcome
across ranks once the sessions start.
"""
import collections
import os
import time

from utils import checkpoint_health
from utils.checkpoints import (checkpoint_global_step, no_intact_checkpoint, plan_resume,
                               write_checkpoint_copy)
from utils.errors import UserError
from utils.files import remove_path

# Where every rank starts: the checkpoint to restore (None: step 0) and its step.
ResumePoint = collections.namedtuple("ResumePoint", "checkpoint step")

# Rank 0 saves the checkpoint it resumed from again as its session starts (the
# Estimator's saver does at every start), while a rank copies it: copy until whole.
_COPY_TRIES = 5
_COPY_RETRY_S = 1.0


def resume_point(train_dir, allow_fresh_start):
    """The ResumePoint of every rank: the newest intact checkpoint train_dir's state file
    lists, or step 0 when there is none (or none intact and ``allow_fresh_start``)."""
    intact, damaged = plan_resume(train_dir)
    if intact is None:
        if damaged and not allow_fresh_start:
            raise UserError(no_intact_checkpoint(train_dir, damaged))
        return ResumePoint(None, 0)
    return ResumePoint(intact, checkpoint_global_step(intact))


def describe(rank_id, point):
    """The log line saying where rank ``rank_id`` starts."""
    if point.checkpoint is None:
        return "rank %d starts at step 0" % rank_id
    return "rank %d resumes from %s at step %d" % (rank_id, point.checkpoint, point.step)


def refill_scratch_dir(model_dir, point):
    """Empties a rank's own model_dir and, when the run resumes, puts a copy of the
    resume checkpoint there as its only one, so the rank's Estimator restores exactly
    what rank 0 restores."""
    remove_path(model_dir)
    os.makedirs(model_dir)
    if point.checkpoint is None:
        return
    for attempt in range(_COPY_TRIES):
        copied = write_checkpoint_copy(point.checkpoint, model_dir)
        problem = checkpoint_health.damage(copied, full=True)
        if problem is None:
            return
        time.sleep(_COPY_RETRY_S)
    raise UserError("cannot copy %s into %s: the copy stays damaged (%s); check that "
                    "train_dir's disk is healthy and not full"
                    % (point.checkpoint, model_dir, problem))
