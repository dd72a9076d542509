"""Finding checkpoints and reading what they hold, without building a model."""
import os

from utils.errors import UserError
from utils.tf_compat import tf

EMA_SUFFIX = "/ExponentialMovingAverage"


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
