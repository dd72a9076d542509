"""Finding checkpoints and reading what they hold, without building a model."""
import glob
import json
import os
import re

from utils.errors import UserError
from utils.tf_compat import tf

EMA_SUFFIX = "/ExponentialMovingAverage"
# Written by training beside its checkpoints: model name, classes, sizes, dataset.
MODEL_SPEC_FILE = "model_spec.json"


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


def read_model_spec(directory):
    """The model_spec.json training wrote in ``directory``, or {} when there is none."""
    path = os.path.join(directory, MODEL_SPEC_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as err:
        raise UserError("%s is not valid JSON (%s); pass --model_name, --num_classes and "
                        "--image_size instead" % (path, err))
