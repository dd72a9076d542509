"""Finding checkpoints and reading what they hold, without building a model."""
import glob
import os
import re
import shutil

from utils.errors import UserError
from utils.files import read_json_if_present
from utils.tf_compat import tf

EMA_SUFFIX = "/ExponentialMovingAverage"
# Written by training beside its checkpoints: model name, classes, sizes, dataset.
MODEL_SPEC_FILE = "model_spec.json"


def first_given(*values):
    """The first value that is not None: what the user gave, then what training recorded
    in model_spec.json, then a default."""
    for value in values:
        if value is not None:
            return value
    return None


def resolve_checkpoint(path, flag_name="checkpoint_path"):
    """A checkpoint prefix from a prefix or a directory; UserError when there is none."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise UserError("no checkpoint in %s; point --%s at a training directory or a "
                            "checkpoint prefix (model.ckpt-N)" % (path, flag_name))
        return latest
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise UserError("no checkpoint at %s (expected %s.index); pass a checkpoint prefix or its "
                    "directory to --%s" % (path, path, flag_name))


def checkpoint_global_step(checkpoint):
    """The checkpoint's global_step, or 0 for checkpoints without one (published weights)."""
    reader = tf.train.load_checkpoint(checkpoint)
    if reader.has_tensor(tf.GraphKeys.GLOBAL_STEP):
        return int(reader.get_tensor(tf.GraphKeys.GLOBAL_STEP))
    return 0


def _step_in_name(prefix):
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def list_checkpoints(directory):
    """Complete checkpoints in ``directory``, oldest first.

    Trusts the ``checkpoint`` state file, which the Saver rewrites only after a
    checkpoint's files are complete, so a checkpoint still being written is never
    listed. Without a state file (checkpoints copied by hand, published weights),
    every ``*.index`` counts.
    """
    state = tf.train.get_checkpoint_state(directory)
    if state is not None:
        prefixes = [p if os.path.isabs(p) else os.path.join(directory, p)
                    for p in state.all_model_checkpoint_paths]
    else:
        prefixes = [p[:-len(".index")] for p in glob.glob(os.path.join(directory, "*.index"))]
    existing = [p for p in prefixes if tf.io.gfile.exists(p + ".index")]
    return sorted(set(existing), key=lambda p: (_step_in_name(p), p))


# What a process killed while saving leaves behind: the sharded Saver's temporary folder
# (<prefix>_temp), and the temporary files of TensorFlow's atomic writes (state file,
# .meta, graph.pbtxt: <name>.tmp<32 hex digits>).
_SAVE_LEFTOVER = re.compile(r"^(model\.ckpt-\d+_temp.*|(checkpoint|graph\.pbtxt|"
                            r"model\.ckpt-\d+\.meta)\.tmp[0-9a-f]{32})$")
_CHECKPOINT_FILE = re.compile(r"^(model\.ckpt-\d+)\.(index|data-\d+-of-\d+|meta)$")


def checkpoint_problem(prefix):
    """None when the checkpoint at ``prefix`` restores (index readable, every data shard
    present, global_step readable), else what is wrong, in a few words."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
        expected = int(shards[0].rsplit("-of-", 1)[1]) if shards else 1
        if len(shards) != expected:
            return "%d of its %d data files are missing" % (expected - len(shards), expected)
        if reader.has_tensor(tf.GraphKeys.GLOBAL_STEP):
            reader.get_tensor(tf.GraphKeys.GLOBAL_STEP)
    except (tf.errors.OpError, ValueError, IndexError) as err:
        lines = (getattr(err, "message", None) or str(err)).strip().splitlines()
        return lines[-1] if lines else type(err).__name__
    return None


def repair_checkpoints(directory):
    """Makes ``directory`` safe to resume from after a crash; returns what it did, one
    line each (nothing when there was nothing to do).

    The ``checkpoint`` state file is written only once a checkpoint is complete, so a
    process killed while saving leaves the state file pointing at the previous,
    complete checkpoint; what it leaves are files nothing lists: a half-written
    ``model.ckpt-N.index`` / data file, the Saver's ``model.ckpt-N_temp`` folder and
    temporary files. Those are removed (a later save of step N would rewrite them
    anyway). Should a listed checkpoint be unreadable (damaged by hand, or a disk
    error), the state file is rewritten without it, so training resumes from the
    newest checkpoint that restores; when none of the listed ones does, that is a
    UserError rather than a silent start from scratch.
    """
    if not os.path.isdir(directory):
        return []
    done = []
    state = tf.train.get_checkpoint_state(directory)
    listed = list(state.all_model_checkpoint_paths) if state is not None else []
    if state is not None and state.model_checkpoint_path not in listed:
        listed.append(state.model_checkpoint_path)
    good, bad = [], []
    for prefix in listed:
        problem = checkpoint_problem(prefix)
        (bad if problem else good).append((prefix, problem))
    if bad:
        if not good:
            raise UserError("no checkpoint in %s restores: %s (%s); restore the files, or "
                            "delete %s to train from the start"
                            % (directory, os.path.basename(bad[-1][0]), bad[-1][1],
                               os.path.join(directory, "checkpoint")))
        good.sort(key=lambda item: _step_in_name(item[0]))
        here = os.path.abspath(directory)
        names = [os.path.basename(p) if os.path.dirname(os.path.abspath(p)) == here else p
                 for p, _ in good]
        tf.train.update_checkpoint_state(directory, names[-1],
                                         all_model_checkpoint_paths=names)
        for prefix, problem in bad:
            done.append("checkpoint %s does not restore (%s); left out of %s"
                        % (prefix, problem, os.path.join(directory, "checkpoint")))
    kept = set(os.path.basename(p) for p, _ in good)
    newest = max([_step_in_name(p) for p, _ in good] or [-1])
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        match = _CHECKPOINT_FILE.match(name)
        if _SAVE_LEFTOVER.match(name):
            reason = "left by a save that did not finish"
        elif match and match.group(1) not in kept and (
                (state is not None and _step_in_name(match.group(1)) > newest)
                or checkpoint_problem(os.path.join(directory, match.group(1)))):
            # Not restorable, or unlisted and newer than every listed checkpoint: a
            # save that was cut short. Older complete ones (kept by hand) stay.
            reason = "an unfinished checkpoint"
        else:
            continue
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        done.append("removed %s (%s)" % (name, reason))
    return done


def read_model_spec(directory):
    """The model_spec.json training wrote in ``directory``, or {} when there is none."""
    return read_json_if_present(os.path.join(directory, MODEL_SPEC_FILE),
                                "train.py writes it beside its checkpoints: repair or "
                                "delete it (then give the model flags, such as "
                                "--model_name and --num_classes)")
