"""Stand-in for npu_bridge/estimator/npu/npu_hook.py: the hooks NPUEstimator adds to
training (master, r1.15.0 and r3.2.0 are the same for these)."""
import logging
import os
import signal

from npu_bridge import record
from npu_bridge.estimator.npu import util
from npu_bridge.hccl import hccl_ops
from utils.tf_compat import tf

_log = logging.getLogger("npu_bridge")

for _name in (util.ITERATIONS_PER_LOOP_VAR, util.LOOP_COND_VAR, util.CONST_ZERO,
              util.CONST_ONE):
    util.register_func(_name)


class NPUBroadcastGlobalVariablesHook(tf.train.SessionRunHook):
    """Broadcasts rank ``root_rank``'s trainable variables to every rank once the session
    exists (fresh or restored); nothing when RANK_SIZE is 1. ``index`` is this rank's id
    (kept, unused)."""

    def __init__(self, root_rank=None, index=None):
        record("NPUBroadcastGlobalVariablesHook", root_rank=root_rank, index=index)
        self._root_rank = root_rank
        self._index = index
        self._bcast_op = None
        rank_size = util.get_ranksize()
        self._rank_size = int(rank_size) if rank_size.isdigit() else 1

    def begin(self):
        if self._rank_size > 1 and (not self._bcast_op or
                                    self._bcast_op.graph != tf.get_default_graph()):
            self._bcast_op = broadcast_global_variables(self._root_rank)

    def after_create_session(self, session, coord):
        if self._rank_size > 1:
            record("NPUBroadcastGlobalVariablesHook.run", root_rank=self._root_rank)
            session.run(self._bcast_op)


def broadcast_global_variables(root_rank):
    """Despite the name, tf.trainable_variables() only: batch-norm statistics, optimizer
    slots, the global step and loss-scale variables stay each rank's own. One broadcast
    per variable (fused into one on the device), made to run one after the other (see
    hccl_ops)."""
    ops = []
    with hccl_ops.in_creation_order():
        for var in tf.trainable_variables():
            outputs = hccl_ops.broadcast(tensor=[var], root_rank=root_rank)
            if outputs is not None:
                ops.append(outputs[0].op)
                ops.append(tf.assign(var, outputs[0]))
    return tf.group(ops)


class NPUCheckpointSaverHook(tf.train.CheckpointSaverHook):
    """tf.train.CheckpointSaverHook that also reads the global step after every run."""

    def __init__(self, checkpoint_dir, save_secs=None, save_steps=None, saver=None,
                 checkpoint_basename="model.ckpt", scaffold=None, listeners=None):
        record("NPUCheckpointSaverHook", checkpoint_dir=checkpoint_dir, save_secs=save_secs,
               save_steps=save_steps)
        super(NPUCheckpointSaverHook, self).__init__(
            checkpoint_dir=checkpoint_dir, save_secs=save_secs, save_steps=save_steps,
            saver=saver, checkpoint_basename=checkpoint_basename, scaffold=scaffold,
            listeners=listeners, save_graph_def=not _no_graph_def())

    def after_run(self, run_context, run_values):
        global_step = run_context.session.run(self._global_step_tensor)
        _log.info("global_step..." + str(global_step))
        super(NPUCheckpointSaverHook, self).after_run(run_context, run_values)

    def end(self, session):
        _log.info("NPUCheckpointSaverHook end...")
        super(NPUCheckpointSaverHook, self).end(session)

    def _save(self, session, step):
        if _kill_before_save(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return super(NPUCheckpointSaverHook, self)._save(session, step)


def _no_graph_def():
    """Stand-in only: NPU_STUB_NO_GRAPH_DEF=1 skips what TensorFlow's saver hook writes
    besides the checkpoints (graph.pbtxt at session start, a .meta beside each
    checkpoint; the real hook writes both), for tests that launch many ranks and read
    neither: protobuf's text format of the graph, in pure Python, is seconds of every
    rank's start-up (tests/test_npu_resume.py)."""
    return os.environ.get("NPU_STUB_NO_GRAPH_DEF", "") == "1"


def _kill_before_save(step):
    """Stand-in only: NPU_STUB_KILL_BEFORE_SAVE="RANK:STEP" makes rank RANK kill -9 itself
    as its saver is about to write step STEP, after the other ranks' savers wrote theirs
    or while they do: a kill between two ranks' saves, on cue (tests/test_npu_resume.py)."""
    planned = os.environ.get("NPU_STUB_KILL_BEFORE_SAVE", "")
    return bool(planned) and planned == "%s:%d" % (os.environ.get("RANK_ID", "0"), step)


class SetIterationsVarHook(tf.train.SessionRunHook):
    """Loads iterations_per_loop - 1 into npu_runconfig/iterations_per_loop (and 0 / 0 / 1
    into loop_cond / zero / one) once the session exists: the device loop reads them."""

    def __init__(self, iterations_per_loop=None):
        self._iterations_per_loop = iterations_per_loop
        self._variables = None

    def begin(self):
        self._variables = [util.create_or_get_var(name) for name in (
            util.ITERATIONS_PER_LOOP_VAR, util.LOOP_COND_VAR, util.CONST_ZERO,
            util.CONST_ONE)]

    def after_create_session(self, session, coord):
        iterations, loop_cond, zero, one = self._variables
        iterations.load(self._iterations_per_loop - 1, session=session)
        loop_cond.load(0, session=session)
        zero.load(0, session=session)
        one.load(1, session=session)
        _log.info("load iterations_per_loop value %d", session.run(iterations))
