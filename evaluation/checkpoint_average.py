"""Checkpoint averaging, and writing a checkpoint folder of our own beside a run's.

The average of the last K checkpoints is the element-wise mean of every float variable
they hold: weights, batch-norm moving statistics and their moving averages (EMA
shadows); global_step is the newest input's. Optimizer slots (<variable>/Momentum,
/RMSProp, /Adam ...) are dropped: an average is for evaluation, export and fine-tuning,
never for resuming the run (the training directory is for that), a mean of slots
describes no state the optimizer was ever in, and slots are as large as the weights
(Adam's twice).

A folder (average_last_K/, the ledger's best/) is written under <folder>.partial and
renamed into place once complete, so a crash never leaves a half checkpoint that looks
whole, and the folder it replaces stays until then. It holds one model.ckpt-<step>, its
own ``checkpoint`` state file, a copy of the run's model_spec.json (so the exporter and
predict.py need no flags) and a JSON file saying where it came from.
"""
import os
import shutil

import numpy as np

from utils.checkpoints import EMA_SUFFIX, MODEL_SPEC_FILE, checkpoint_global_step
from utils.errors import UserError
from utils.files import publish, read_json_if_present, remove_path, write_json
from utils.tf_compat import tf

AVERAGE_FILE = "average.json"
GLOBAL_STEP = "global_step"


def average_dir_name(k):
    """The folder the ledger averages the last ``k`` checkpoints into."""
    return "average_last_%d" % k


def fingerprint(prefix):
    """What tells one checkpoint's files from another's: its real path, step, and the
    size and time of its index file (a checkpoint rewritten at the same path, by a new
    run in the same folder or a remade average, gets a new fingerprint)."""
    stat = os.stat(prefix + ".index")
    return {"checkpoint": os.path.realpath(prefix),
            "global_step": checkpoint_global_step(prefix),
            "index_bytes": stat.st_size, "index_mtime_ns": stat.st_mtime_ns}


def optimizer_slots(names):
    """The names among ``names`` that are another variable's optimizer slot
    (<variable>/<slot>); moving averages (<variable>/ExponentialMovingAverage) are not."""
    names = set(names)
    return set(n for n in names if "/" in n and not n.endswith(EMA_SUFFIX)
               and n.rsplit("/", 1)[0] in names)


def average_tensors(prefixes):
    """{name: numpy array}: the mean of every float variable of the checkpoints at
    ``prefixes`` (oldest first), other variables (global_step) from the newest, optimizer
    slots left out."""
    readers = [tf.train.load_checkpoint(p) for p in prefixes]
    all_shapes = [r.get_variable_to_shape_map() for r in readers]
    newest, shapes = readers[-1], all_shapes[-1]
    dtypes = newest.get_variable_to_dtype_map()
    slots = optimizer_slots(dtypes)
    averaged = {}
    for name in sorted(dtypes):
        if name in slots:
            continue
        if not dtypes[name].is_floating:
            averaged[name] = np.asarray(newest.get_tensor(name))
            continue
        total = np.zeros(shapes[name], np.float64)
        for prefix, reader, their_shapes in zip(prefixes, readers, all_shapes):
            if their_shapes.get(name) != shapes[name]:
                raise UserError("cannot average %s with %s: %s differs or is missing; "
                                "average checkpoints of one run"
                                % (prefix, prefixes[-1], name))
            total += reader.get_tensor(name)
        averaged[name] = (total / len(prefixes)).astype(dtypes[name].as_numpy_dtype)
    return averaged


def save_tensors(tensors, prefix):
    """Writes {name: numpy array} as the checkpoint ``prefix`` (index + one data file),
    as a Saver would, with one save op instead of a variable per tensor."""
    names = sorted(tensors)
    values = [np.asarray(tensors[name]) for name in names]
    with tf.Graph().as_default():
        # Fed rather than baked in as constants: no 2 GB graph limit.
        holders = [tf.placeholder(tf.as_dtype(v.dtype), v.shape) for v in values]
        save = tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                                 shape_and_slices=[""] * len(names), tensors=holders)
        with tf.Session() as sess:
            sess.run(save, dict(zip(holders, values)))


def write_checkpoint_folder(folder, step, save, spec_dir, info_name, info):
    """Writes the folder ``folder`` holding model.ckpt-<step> (``save(prefix)`` writes
    its files), its state file, spec_dir's model_spec.json and ``info`` as
    ``info_name``; returns the checkpoint prefix. What was at ``folder`` is replaced
    only once the new folder is complete."""
    staged = folder + ".partial"
    remove_path(staged)
    os.makedirs(staged)
    name = "model.ckpt-%d" % step
    save(os.path.join(staged, name))
    # A relative name, so the state file still holds once the folder is renamed.
    tf.train.update_checkpoint_state(staged, name, all_model_checkpoint_paths=[name])
    spec = os.path.join(spec_dir, MODEL_SPEC_FILE)
    if os.path.exists(spec):
        shutil.copy2(spec, os.path.join(staged, MODEL_SPEC_FILE))
    write_json(os.path.join(staged, info_name), info)
    publish(staged, folder)
    return os.path.join(folder, name)


def write_average(prefixes, folder):
    """(prefix, written): the average of the checkpoints at ``prefixes`` (oldest first)
    in ``folder``; an average already there from the very same inputs is kept."""
    inputs = [fingerprint(p) for p in prefixes]
    recorded = read_json_if_present(os.path.join(folder, AVERAGE_FILE),
                                    "delete %s to have the average remade" % folder)
    existing = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    if existing is not None and recorded.get("inputs") == inputs:
        return existing, False
    tensors = average_tensors(prefixes)
    step = int(tensors[GLOBAL_STEP]) if GLOBAL_STEP in tensors else 0
    prefix = write_checkpoint_folder(
        folder, step, lambda path: save_tensors(tensors, path),
        os.path.dirname(prefixes[-1]), AVERAGE_FILE,
        {"k": len(prefixes), "inputs": inputs})
    return prefix, True
