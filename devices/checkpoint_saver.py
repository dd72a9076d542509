"""The checkpoint saver hook of the GPU / CPU Estimator (NPUEstimator brings its own).

TensorFlow's saver hook writes a checkpoint at session start; in a resumed run that
rewrites the newest listed checkpoint's index in place, so a kill at that moment would
leave the one checkpoint to resume from unreadable. This one does not.
"""
import re

from utils.errors import UserError, no_room_line
from utils.tf_compat import tf


def _checkpoint_step(prefix):
    match = re.search(r"-(\d+)$", prefix or "")
    return int(match.group(1)) if match else None


class ResumeSafeSaverHook(tf.train.CheckpointSaverHook):
    """tf.train.CheckpointSaverHook that never rewrites the checkpoint of the step it
    resumed from. TensorFlow's hook saves at session start; in a resumed run that step's
    checkpoint exists already and is the newest listed one, and the Saver writes its
    .index in place, so a process killed then would lose the checkpoint to resume from
    (and an evaluator could read it half-written).

    Build it with save_graph_def=False: TensorFlow's default writes graph.pbtxt in
    protobuf's text format, in pure Python (10 MB, about 3 s of MobileNetV2's start-up),
    and a .meta graph beside every checkpoint; nothing here reads either (the evaluator
    and the exporter build the graph from code). At session start it leaves TensorBoard's
    graph to the Estimator's summary hook, which writes it too (each copy costs
    MobileNetV2 ~0.7 s to serialize).

    A run from scratch writes no step-0 checkpoint (initial_checkpoint=False): it would
    hold only the seeded initial weights, which a rerun makes again (that save and its
    finite-weights check measured ~1.4 s of MobileNetV2's start-up). A warm-started run
    writes it, so the restored weights are on record and a crash before the first
    interval resumes from them, and so does a --deterministic one: its starting weights
    on record, for comparing the training with another implementation's from the same
    start (benchmarks/training_parity.py)."""

    def __init__(self, checkpoint_dir, initial_checkpoint=True, **kwargs):
        super(ResumeSafeSaverHook, self).__init__(checkpoint_dir, **kwargs)
        self._initial_checkpoint = initial_checkpoint

    def after_create_session(self, session, coord):
        global_step = session.run(self._global_step_tensor)
        if self._initial_checkpoint or tf.train.latest_checkpoint(self._checkpoint_dir):
            self._save(session, global_step)
        self._timer.update_last_triggered_step(global_step)

    def _save(self, session, step):
        latest = tf.train.latest_checkpoint(self._checkpoint_dir)
        if latest is not None and _checkpoint_step(latest) == step:
            return False
        try:
            return super(ResumeSafeSaverHook, self)._save(session, step)
        except tf.errors.OpError as err:
            # A file-size limit fails the write with OutOfRangeError, which
            # MonitoredSession takes for the end of the input and ends training
            # quietly, that checkpoint unwritten: say it instead.
            line = no_room_line(err)
            if line is None:
                raise
            raise UserError(line)
