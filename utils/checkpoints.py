"""Finding checkpoints and reading what they hold, without building a model."""
import glob
import os
import re
import shutil

from utils import checkpoint_health
from utils.errors import UserError
from utils.files import read_json_if_present
from utils.tf_compat import tf

EMA_SUFFIX = "/ExponentialMovingAverage"
# Written by training beside its checkpoints: model name, classes, sizes, dataset.
MODEL_SPEC_FILE = "model_spec.json"
# Inside a training directory: where damaged checkpoints are moved (never deleted).
DAMAGED_DIR = "damaged_checkpoints"


def first_given(*values):
    """The first value that is not None: what the user gave, then what training recorded
    in model_spec.json, then a default."""
    for value in values:
        if value is not None:
            return value
    return None


def resolve_checkpoint(path, flag_name="checkpoint_path", verify=True):
    """A checkpoint prefix from a prefix or a directory (its latest); UserError when
    there is none, DamagedCheckpoint when it does not read back whole (``verify``: the
    full check, for callers about to restore it; they read it all anyway)."""
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path) or only_checkpoint(path)
        if prefix is None:
            raise UserError("no checkpoint in %s; point --%s at a training directory or a "
                            "checkpoint prefix (model.ckpt-N)" % (path, flag_name))
    elif tf.io.gfile.exists(path + ".index"):
        prefix = path
    else:
        raise UserError("no checkpoint at %s (expected %s.index); pass a checkpoint prefix "
                        "or its directory to --%s" % (path, path, flag_name))
    if verify:
        checkpoint_health.require_intact(prefix, advice=(
            "copy it again from where it came from, or pass another --%s" % flag_name))
    return prefix


def only_checkpoint(directory):
    """The one checkpoint of a folder without a state file (published weights, such as
    automl's efficientnetv2-s-21k/), else None."""
    found = glob.glob(os.path.join(glob.escape(directory), "*.index"))
    return found[0][:-len(".index")] if len(found) == 1 else None


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


def plan_resume(directory, full=True):
    """(newest intact listed checkpoint or None, [(damaged listed prefix, problem)]) of
    ``directory``'s state file, newest first, without changing anything. With ``full``
    the newest candidates are read whole (the restore reads them anyway) until one
    passes; older ones, which the run would not read, get the cheap check."""
    state = tf.train.get_checkpoint_state(directory) if os.path.isdir(directory) else None
    if state is None:
        return None, []
    listed = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path not in listed:
        listed.append(state.model_checkpoint_path)
    listed = [p if os.path.isabs(p) else os.path.join(directory, p) for p in listed]
    intact, damaged = None, []
    for prefix in sorted(set(listed), key=_step_in_name, reverse=True):
        problem = checkpoint_health.damage(prefix, full=full and intact is None)
        if problem:
            damaged.append((prefix, problem))
        elif intact is None:
            intact = prefix
    return intact, damaged


def _move_into(folder, path):
    """Moves ``path`` into ``folder``, never over a file already there."""
    target = os.path.join(folder, os.path.basename(path))
    suffix = 1
    while os.path.lexists(target):  # the same step damaged before: keep both
        target = os.path.join(folder, "%s.%d" % (os.path.basename(path), suffix))
        suffix += 1
    os.rename(path, target)


def set_aside(prefix, directory):
    """Moves the files of checkpoint ``prefix`` into <directory>/damaged_checkpoints/
    (never deleted: a copy may still be repaired by hand); returns that folder."""
    folder = os.path.join(directory, DAMAGED_DIR)
    os.makedirs(folder, exist_ok=True)
    for path in glob.glob(glob.escape(prefix) + ".*"):
        _move_into(folder, path)
    return folder


def repair_checkpoints(directory, allow_fresh_start=False):
    """Makes ``directory`` safe to resume from; returns what it did, one line each
    (nothing when there was nothing to do).

    Damaged checkpoints the state file lists (checkpoint_health: cut short, corrupted,
    missing files) are moved to <directory>/damaged_checkpoints/ and the state file is
    rewritten without them, so training resumes from the newest intact one. When none
    is intact that is a UserError, unless ``allow_fresh_start``: then they are all moved
    aside and training starts from step 0. What a process killed while saving leaves
    (the state file is written only once a checkpoint is complete, so nothing lists it:
    a half-written checkpoint, the Saver's ``_temp`` folder, temporary files) is moved
    aside too, or removed when it is only a temporary file.
    """
    if not os.path.isdir(directory):
        return []
    intact, damaged = plan_resume(directory)
    if damaged and intact is None and not allow_fresh_start:
        raise UserError(no_intact_checkpoint(directory, damaged))
    done = [_set_aside_damaged(directory, intact, damaged)] if damaged else []
    return done + _tidy_unlisted(directory, intact)


def no_intact_checkpoint(directory, damaged):
    """The line for a train_dir whose listed checkpoints are all damaged."""
    prefix, problem = damaged[0]
    return ("no intact checkpoint in %s: the newest, %s, is damaged (%s)%s; copy them "
            "again from where they came from, or pass --allow_fresh_start to move them to "
            "%s and train from step 0"
            % (directory, os.path.basename(prefix), problem,
               " and so are the %d older ones" % (len(damaged) - 1) if len(damaged) > 1
               else "", os.path.join(directory, DAMAGED_DIR)))


def _set_aside_damaged(directory, intact, damaged):
    """Moves the damaged listed checkpoints aside, lists only intact ones; one line."""
    folder = None
    for prefix, _ in damaged:
        folder = set_aside(prefix, directory)
    remaining = list_checkpoints(directory) if intact else []
    if remaining:
        tf.train.update_checkpoint_state(
            directory, os.path.relpath(intact, directory),
            all_model_checkpoint_paths=[os.path.relpath(p, directory) for p in remaining])
    elif os.path.exists(os.path.join(directory, "checkpoint")):
        _move_into(folder, os.path.join(directory, "checkpoint"))
    newest, problem = damaged[0]
    more = (" (and %d older damaged ones)" % (len(damaged) - 1)) if len(damaged) > 1 else ""
    return ("checkpoint %s is damaged (%s)%s: moved to %s; %s"
            % (os.path.basename(newest), problem, more, folder,
               "resuming from %s" % os.path.basename(intact) if intact else
               "no intact checkpoint is left, training starts from step 0 "
               "(--allow_fresh_start)"))


def _tidy_unlisted(directory, intact):
    """Removes the temporary files of an interrupted save and moves aside the
    checkpoints nothing lists that are newer than the one resumed from (a save cut
    short) or not whole; older whole ones (kept by hand) stay. A line for each."""
    done = []
    listed = tf.train.get_checkpoint_state(directory) is not None
    kept = set(os.path.basename(p) for p in list_checkpoints(directory)) if listed else set()
    newest = _step_in_name(intact) if intact else -1
    unfinished = set()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        match = _CHECKPOINT_FILE.match(name)
        if _SAVE_LEFTOVER.match(name):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
            done.append("removed %s (left by a save that did not finish)" % name)
        elif match and match.group(1) not in kept:
            unfinished.add(match.group(1))
    for name in sorted(unfinished, key=_step_in_name):
        prefix = os.path.join(directory, name)
        if (listed and _step_in_name(name) > newest) or checkpoint_health.damage(prefix):
            set_aside(prefix, directory)
            done.append("moved %s to %s (an unfinished checkpoint)" % (name, DAMAGED_DIR))
    return done


def read_model_spec(directory):
    """The model_spec.json training wrote in ``directory``, or {} when there is none;
    its sizes always under "train_image_size" and "eval_image_size" (None when it
    does not say). A file from before both were written has the eval size alone, as
    "image_size"."""
    path = os.path.join(directory, MODEL_SPEC_FILE)
    advice = ("train.py writes it beside its checkpoints: repair or delete it (then give "
              "the model flags, such as --model_name and --num_classes)")
    spec = read_json_if_present(path, advice)
    if not isinstance(spec, dict):
        raise UserError("%s holds no JSON object; %s" % (path, advice))
    if not spec:
        return spec
    spec = dict(spec)
    legacy_eval_size = spec.pop("image_size", None)
    spec.setdefault("eval_image_size", legacy_eval_size)
    spec.setdefault("train_image_size", None)
    return spec


def write_tensors(prefix, tensors):
    """Writes {name: numpy array} as a checkpoint at ``prefix`` (no state file, no graph):
    what converters write."""
    names = sorted(tensors)
    with tf.Graph().as_default():
        feeds = [tf.placeholder(tf.as_dtype(tensors[n].dtype), tensors[n].shape)
                 for n in names]
        save = tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                                 shape_and_slices=[""] * len(names), tensors=feeds)
        with tf.Session() as sess:
            sess.run(save, dict((feed, tensors[n]) for feed, n in zip(feeds, names)))
    return prefix


def write_checkpoint_copy(prefix, directory):
    """Copies checkpoint ``prefix``'s index and data files into ``directory`` (each via a
    temporary name and rename) and makes it the folder's only listed checkpoint; returns
    the copy's prefix."""
    copied = os.path.join(directory, os.path.basename(prefix))
    for path in [prefix + ".index"] + checkpoint_health.data_files(prefix):
        target = os.path.join(directory, os.path.basename(path))
        shutil.copyfile(path, target + ".copying")
        os.replace(target + ".copying", target)
    tf.train.update_checkpoint_state(directory, os.path.basename(copied),
                                     all_model_checkpoint_paths=[os.path.basename(copied)])
    return copied
