"""Whether a checkpoint is whole, found before anything restores it.

A checkpoint is an index (``<prefix>.index``: every tensor's name, dtype, shape, shard and
CRC32C) and its data shards (``<prefix>.data-K-of-N``: the tensors' bytes back to back,
with no padding). Copies cut short, disks that filled during a save and files removed
by hand all leave one that TensorFlow fails on deep inside a restore. Two checks:

cheap  the index parses, all N data shards are there and together hold exactly the
       bytes the index lists (numeric tensors; at least that many with strings):
       milliseconds whatever the size, catches truncated and missing files.
full   the cheap check, then every tensor read back, which makes TensorFlow verify its
       CRC32C: catches bytes changed in place. It reads the whole checkpoint, so it is
       used where a restore reads it anyway.
"""
import glob
import os

from utils.errors import UserError
from utils.tf_compat import tf

# TensorFlow's errors on a bad index or short data, and what its Python wrappers raise.
_READ_ERRORS = (tf.errors.OpError, ValueError, IndexError, OSError, RuntimeError)


class DamagedCheckpoint(UserError):
    """A checkpoint that does not read back whole; ``problem`` says what is wrong."""

    def __init__(self, prefix, problem, advice):
        UserError.__init__(self, "checkpoint %s is damaged: %s; %s" % (prefix, problem,
                                                                      advice))
        self.prefix = prefix
        self.problem = problem


def data_files(prefix):
    """The data shards present for ``prefix``, sorted."""
    return sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))


def _first_line(err):
    lines = (getattr(err, "message", None) or str(err)).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


def _shard_problem(prefix):
    """What is wrong with the set of data shards, or None."""
    shards = data_files(prefix)
    if not shards:
        return "its data file %s.data-00000-of-00001 is missing" % os.path.basename(prefix)
    expected = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != expected:
        return "%d of its %d data files are missing" % (expected - len(shards), expected)
    return None


def _size_problem(prefix, reader):
    """Data shards shorter (or, without strings, longer) than the index says, or None."""
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    listed, has_strings = 0, False
    for name, shape in shapes.items():
        if dtypes[name] == tf.string:
            has_strings = True  # variable length: only a lower bound is known
            continue
        count = 1
        for dim in shape:
            count *= dim
        listed += count * dtypes[name].size
    held = sum(os.path.getsize(path) for path in data_files(prefix))
    if held < listed or (held > listed and not has_strings):
        return ("its data files hold %d bytes where its index lists %d (%s)"
                % (held, listed, "cut short" if held < listed else "not its data"))
    return None


def damage(prefix, full=False):
    """None when the checkpoint at ``prefix`` is whole (see the module's checks), else
    what is wrong, in a few words."""
    if not os.path.exists(prefix + ".index"):
        return "its index file %s.index is missing" % os.path.basename(prefix)
    problem = _shard_problem(prefix)
    if problem:
        return problem
    try:
        reader = tf.train.load_checkpoint(prefix)
    except _READ_ERRORS as err:
        return "its index does not read (%s)" % _first_line(err)
    problem = _size_problem(prefix, reader)
    if problem or not full:
        return problem
    for name in sorted(reader.get_variable_to_shape_map()):
        try:
            reader.get_tensor(name)
        except _READ_ERRORS as err:
            return "tensor %s does not read back (%s)" % (name, _first_line(err))
    return None


def require_intact(prefix, full=True, advice=None):
    """``prefix`` when whole; DamagedCheckpoint (a one-line UserError) otherwise."""
    problem = damage(prefix, full)
    if problem:
        raise DamagedCheckpoint(prefix, problem, advice or (
            "copy it again from where it came from, or use another checkpoint"))
    return prefix
