"""The Estimator's cost: our model_fn's train op run in a bare tf.Session loop.

Takes train.py's own flags (after ``--``) and builds what train.py builds, through the
same Env and estimator_impl.ModelFn, with the same input_fn (use --use_synthetic_data)
and the same session config, but runs ``train_op`` in a plain loop: no Estimator, no
MonitoredSession, no hooks (no progress fetches, summaries or checkpoint saver).
Comparing its steps/s with train.py's at the same flags gives the Estimator overhead.

  .venv/bin/python -m benchmarks.session_loop --warmup=10 --window=5 -- \\
      --dataset_dir=D --train_dir=T --use_synthetic_data --max_train_steps=50 ...
"""
import argparse
import platform
import sys
import time

from benchmarks import measure
from utils.errors import exit_on_user_error


def split_train_argv(argv):
    """(this tool's arguments, train.py's flags): the two sides of ``--``."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def build_train_graph(train_argv):
    """In the current default graph, what train.py builds from ``train_argv``:
    returns (env, model, spec, init_ops); run init_ops in each new session."""
    from absl import flags

    import env as env_lib
    import estimator_impl
    import logger as logger_lib
    from devices import placement
    from training import loop
    from utils.tf_compat import tf

    env_lib.define_train_flags()
    flags.FLAGS(["session_loop"] + list(train_argv))
    logger_lib.quiet_tensorflow(flags.FLAGS.verbose)
    env = env_lib.load_env(flags.FLAGS)
    if env.seed is not None:
        tf.set_random_seed(env.seed)
    log = logger_lib.get_logger()
    model = estimator_impl.ModelFn(env, placement.create(env, log), log)
    iterator = tf.data.make_initializable_iterator(loop.train_input_fn(env)())
    features, labels = iterator.get_next()
    spec = model(features, labels, tf.estimator.ModeKeys.TRAIN)
    init_ops = [tf.global_variables_initializer(), tf.local_variables_initializer(),
                tf.tables_initializer(), iterator.initializer]
    return env, model, spec, init_ops


def build_and_run(train_argv, warmup, window):
    from utils.tf_compat import tf

    with tf.Graph().as_default():
        env, model, spec, init_ops = build_train_graph(train_argv)
        with tf.Session(config=model.device.session_config()) as sess:
            sess.run(init_ops)
            ends = []
            start = time.perf_counter()
            for _ in range(env.max_train_steps):
                sess.run(spec.train_op)
                ends.append(time.perf_counter())
            loss = sess.run(spec.loss)
    rates = measure.window_rates(start, ends, env.global_batch, warmup, window)
    result = measure.summarize(rates)
    result.update({"steps": env.max_train_steps, "global_batch": env.global_batch,
                   "loss_after": round(float(loss), 4), "tensorflow": tf.VERSION,
                   "python": platform.python_version()})
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, train_argv = split_train_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--window", type=int, default=5)
    args = parser.parse_args(ours)
    result = build_and_run(train_argv, args.warmup, args.window)
    print(measure.result_line(result), flush=True)


if __name__ == "__main__":
    exit_on_user_error(main)(None)  # a bad train.py flag: one line, exit 2
