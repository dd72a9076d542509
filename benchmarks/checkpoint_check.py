"""What finding a damaged checkpoint costs (utils/checkpoint_health), beside a restore.

    .venv/bin/python -m benchmarks.checkpoint_check [--repeats=5]

Writes checkpoints of real networks (their weights only, as the published ones are, and
with the Momentum slots training adds) into a temporary folder and times, per checkpoint:
the cheap check (index, shard set, sizes against the index), the full check (every
tensor read back, CRC32C verified), and a Saver.restore of the same checkpoint into its
graph, each with the files in the page cache (warm) and evicted from it first (cold,
posix_fadvise DONTNEED, as after a copy from elsewhere). Medians of --repeats go to
benchmarks/CHECKPOINT_CHECK.json and a table to stdout.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from nets import nets_factory
from utils import checkpoint_health
from utils.files import write_json
from utils.tf_compat import tf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "CHECKPOINT_CHECK.json")
# (label, model, with the Momentum slots of a training checkpoint)
CASES = (("mobilenet_v2 weights", "mobilenet_v2", False),
         ("efficientnet_v2_s weights", "efficientnet_v2_s", False),
         ("efficientnet_v2_s training", "efficientnet_v2_s", True))


def evict(prefix):
    """Drops the checkpoint's files from the page cache (clean pages only)."""
    for path in [prefix + ".index"] + checkpoint_health.data_files(prefix):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_checkpoint(model, slots, folder):
    """(graph, saver, prefix) of ``model``'s variables saved into ``folder``."""
    graph = tf.Graph()
    with graph.as_default():
        nets_factory.get_network_fn(model, 1000)(tf.zeros([1, 64, 64, 3]))
        if slots:
            optimizer = tf.train.MomentumOptimizer(0.1, 0.9)
            for var in tf.trainable_variables():
                optimizer._zeros_slot(var, "Momentum", "Momentum")
        tf.train.get_or_create_global_step()
        saver = tf.train.Saver()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(folder, "model.ckpt"), global_step=1)
    return graph, saver, prefix


def timed(action, prefix, cold):
    if cold:
        evict(prefix)
    started = time.time()
    action()
    return time.time() - started


def measure(label, model, slots, repeats):
    folder = tempfile.mkdtemp(prefix="ckpt_check_")
    try:
        graph, saver, prefix = write_checkpoint(model, slots, folder)
        size = sum(os.path.getsize(p) for p in
                   [prefix + ".index"] + checkpoint_health.data_files(prefix))
        with graph.as_default(), tf.Session(graph=graph) as sess:
            actions = {
                "cheap": lambda: checkpoint_health.damage(prefix),
                "full": lambda: checkpoint_health.damage(prefix, full=True),
                "restore": lambda: saver.restore(sess, prefix)}
            row = {"checkpoint": label, "megabytes": round(size / 1e6, 1)}
            for name, action in actions.items():
                for cold in (False, True):
                    action()  # once first: graph and reader set-up out of the figures
                    seconds = [timed(action, prefix, cold) for _ in range(repeats)]
                    row["%s_%s_s" % (name, "cold" if cold else "warm")] = round(
                        statistics.median(seconds), 4)
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [measure(label, model, slots, args.repeats) for label, model, slots in CASES]
    columns = ["checkpoint", "megabytes"] + ["%s_%s_s" % (n, c) for n in
                                             ("cheap", "full", "restore")
                                             for c in ("warm", "cold")]
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    write_json(OUT, {"repeats": args.repeats, "tensorflow": tf.version.VERSION,
                     "rows": rows})
    print("wrote %s" % OUT)


if __name__ == "__main__":
    main(sys.argv[1:])
