"""The start-up floor: what TensorFlow alone needs before train.py's first step.

Two invocations. ``--save_graph=FILE -- <train.py flags>`` builds train.py's training
graph (its Env, model_fn and input_fn, as benchmarks.session_loop does) and writes it as
a MetaGraph, with train.py's session config beside it. ``--load_graph=FILE`` then does,
in a fresh process, only what no graph-mode TensorFlow trainer of this network can skip:
import TensorFlow, import the already-built graph (no Python graph construction), open a
session with that config, initialize variables and the input iterator, and run one train
step, which it announces. The harness times that process from launch to the announced
step: train.py's start-up minus this floor is what our graph building, Estimator, hooks
and checks cost.

  .venv/bin/python -m benchmarks.startup_floor --save_graph=/tmp/g.meta -- --dataset_dir=D ...
  .venv/bin/python -m benchmarks.startup_floor --load_graph=/tmp/g.meta
"""
import argparse
import os
import sys

from benchmarks import measure
from benchmarks.session_loop import build_train_graph, split_train_argv
from utils.errors import UserError, exit_on_user_error

TRAIN_OP = "startup_floor_train_op"
INIT_OPS = "startup_floor_init_ops"
CONFIG_SUFFIX = ".session_config"


def save_graph(path, train_argv):
    from utils.tf_compat import tf

    with tf.Graph().as_default():
        _, impl, spec, init_ops = build_train_graph(train_argv)
        tf.add_to_collection(TRAIN_OP, spec.train_op)
        for op in init_ops:
            tf.add_to_collection(INIT_OPS, op)
        tf.train.export_meta_graph(filename=path)
        with open(path + CONFIG_SUFFIX, "wb") as handle:
            handle.write(impl.device.session_config().SerializeToString())


def load_and_step(path):
    if not (os.path.isfile(path) and os.path.isfile(path + CONFIG_SUFFIX)):
        raise UserError("no saved graph at %s (with its %s): write one first with "
                        "--save_graph=%s -- <train.py flags>" % (path, CONFIG_SUFFIX, path))
    from utils.tf_compat import tf

    with open(path + CONFIG_SUFFIX, "rb") as handle:
        config = tf.ConfigProto.FromString(handle.read())
    with tf.Graph().as_default():
        tf.train.import_meta_graph(path)
        train_op = tf.get_collection(TRAIN_OP)[0]
        with tf.Session(config=config) as sess:
            sess.run(tf.get_collection(INIT_OPS))
            sess.run(train_op)
            measure.announce_first_step()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, train_argv = split_train_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save_graph", help="build train.py's graph from the flags after "
                                           "-- and write it here")
    mode.add_argument("--load_graph", help="time import, session, init and one step of "
                                           "this saved graph")
    args = parser.parse_args(ours)
    if args.save_graph:
        save_graph(args.save_graph, train_argv)
    else:
        load_and_step(args.load_graph)


if __name__ == "__main__":
    exit_on_user_error(main)(None)  # a bad train.py flag: one line, exit 2
