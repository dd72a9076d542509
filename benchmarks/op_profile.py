"""Where a training step's time goes, by op type: ours against Keras's MobileNetV2.

Both train steps run in the same TF 1.x-style session with the same input (one random
batch held in a variable, so no input cost), SGD momentum, float32. Ours is
estimator_impl.ModelFn's train op, built from train.py flags exactly as session_loop.py
builds it; Keras's is tf_keras.applications.MobileNetV2 called in training mode, its
batch-norm updates grouped with the optimizer's step. After warm-up, a few steps run
with a full trace; each op's execution time (start to end on its thread) is summed by
op type and divided by the steps. Untraced steps give the wall time per step.

  .venv/bin/python -m benchmarks.op_profile --out=benchmarks/OP_PROFILE.md
"""
import argparse
import collections
import os
import sys
import time

CORES = os.cpu_count() or 1


def our_train_op(args, images, labels):
    """The train op train.py builds (Env from its flags, then model_fn)."""
    from absl import flags

    import env as env_lib
    import estimator_impl
    import logger as logger_lib
    from devices import placement
    from utils.tf_compat import tf

    env_lib.define_train_flags()
    flags.FLAGS(["op_profile", "--dataset_dir=" + args.dataset_dir,
                 "--model_name=mobilenet_v2", "--num_classes=%d" % args.num_classes,
                 "--train_image_size=%d" % args.image_size,
                 "--batch_size=%d" % args.batch_size, "--max_train_steps=1000",
                 "--device=cpu", "--optimizer=momentum", "--momentum=0.9"])
    env = env_lib.load_env(flags.FLAGS, environ={})
    log = logger_lib.get_logger()
    model = estimator_impl.ModelFn(env, placement.create(env, log), log)
    spec = model(images, labels, tf.estimator.ModeKeys.TRAIN)
    return spec.train_op


def keras_train_op(args, images, labels):
    """tf_keras's MobileNetV2 trained in the same graph-mode session."""
    import tf_keras
    from utils.tf_compat import tf

    model = tf_keras.applications.MobileNetV2(
        weights=None, classes=args.num_classes,
        input_shape=(args.image_size, args.image_size, 3),
        classifier_activation=None)
    logits = model(images, training=True)
    loss = tf.losses.sparse_softmax_cross_entropy(labels, logits)
    step = tf.train.get_or_create_global_step()
    train = tf.train.MomentumOptimizer(0.01, 0.9).minimize(loss, global_step=step)
    return tf.group(train, *model.get_updates_for(images) + model.get_updates_for(None))


def profile(builder, args):
    """(wall seconds per step, {op type: ms per step}) of ``builder``'s train op."""
    from utils.tf_compat import tf

    size, batch, classes = args.image_size, args.batch_size, args.num_classes
    with tf.Graph().as_default() as graph:
        images = tf.Variable(tf.random.uniform([batch, size, size, 3], -1.0, 1.0),
                             trainable=False)
        labels = tf.Variable(tf.random.uniform([batch], 0, classes, tf.int32),
                             trainable=False)
        train_op = builder(args, images, labels)
        op_types = {op.name: op.type for op in graph.get_operations()}
        with tf.Session(config=tf.ConfigProto(allow_soft_placement=True)) as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            for _ in range(args.warmup):
                sess.run(train_op)
            started = time.perf_counter()
            for _ in range(args.timed):
                sess.run(train_op)
            wall = (time.perf_counter() - started) / args.timed
            by_type = collections.Counter()
            options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
            for _ in range(args.traced):
                metadata = tf.RunMetadata()
                sess.run(train_op, options=options, run_metadata=metadata)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        name = node.node_name.split(":")[0]
                        kind = op_types.get(name, "(runtime: %s)" % name.split("/")[0])
                        by_type[kind] += node.all_end_rel_micros
    return wall, {kind: micros / 1000.0 / args.traced for kind, micros in by_type.items()}


def report(results, args):
    names = list(results)
    lines = ["# Training step by op type: ours vs Keras (MobileNetV2)", "",
             "Written by `python -m benchmarks.op_profile`: %d px, batch %d, %d classes, "
             "float32, SGD momentum, one batch held in memory, %d cores. Each op's "
             "execution time (start to end on its thread) is summed per step over %d "
             "traced steps after %d warm-up steps; ops run in parallel, so the sum can "
             "exceed the wall time, which comes from %d untraced steps."
             % (args.image_size, args.batch_size, args.num_classes, CORES, args.traced,
                args.warmup, args.timed), "",
             "| | " + " | ".join(names) + " |",
             "| --- | " + " | ".join("---:" for _ in names) + " |"]

    def row(label, values, fmt):
        lines.append("| %s | " % label + " | ".join(fmt % v for v in values) + " |")
    row("wall ms/step", [results[n][0] * 1000 for n in names], "%.0f")
    row("img/s", [args.batch_size / results[n][0] for n in names], "%.1f")
    row("op ms/step, all ops", [sum(results[n][1].values()) for n in names], "%.0f")
    kinds = collections.Counter()
    for name in names:
        kinds.update(results[name][1])
    for kind, _ in kinds.most_common(args.top):
        row(kind, [results[n][1].get(kind, 0.0) for n in names], "%.1f")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", default="benchmarks/_work/data_full/records",
                        help="Any TFRecord folder (only its metadata is read: Env needs "
                             "one); the harness's own by default.")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--traced", type=int, default=3)
    parser.add_argument("--timed", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default=None, help="Markdown file (default: stdout).")
    args = parser.parse_args(argv)
    import logger as logger_lib
    logger_lib.quiet_tensorflow()
    results = collections.OrderedDict()
    for name, builder in (("ours", our_train_op), ("keras", keras_train_op)):
        results[name] = profile(builder, args)
        print("%s: %.0f ms/step" % (name, results[name][0] * 1000), file=sys.stderr)
    text = report(results, args)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
