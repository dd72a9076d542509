"""Grappler passes on CPU: TensorFlow's defaults against ours (devices/graph_rewrites.py).

One process builds train.py's graph once (its flags after ``--``, through session_loop's
builder) and opens one session per setting; their training steps alternate, so a machine
whose speed drifts (a shared host) slows every setting alike. Per setting: the first run
of the init ops and of the train op (each is optimized by Grappler on first use) and the
median steady step. Writes a JSON file and prints one line per setting.

  .venv/bin/python -m benchmarks.grappler_ab --steps=12 --out=benchmarks/GRAPPLER.json -- \\
      --dataset_dir=D --train_dir=T --use_synthetic_data --model_name=mobilenet_v2 \\
      --batch_size=32 --device=cpu
"""
import argparse
import json
import platform
import sys
import time

from benchmarks import measure
from benchmarks.session_loop import build_train_graph, split_train_argv
from utils.errors import exit_on_user_error


def _settings(impl, tf):
    """name -> session config: ours, TensorFlow's defaults, and no Grappler at all."""
    ours = impl.device.session_config()
    default = tf.ConfigProto(allow_soft_placement=True)
    bare = tf.ConfigProto(allow_soft_placement=True)
    bare.graph_options.rewrite_options.disable_meta_optimizer = True
    return [("ours", ours), ("tensorflow_default", default), ("grappler_off", bare)]


def _timed(sess, fetches):
    start = time.perf_counter()
    sess.run(fetches)
    return time.perf_counter() - start


def run(train_argv, steps, warmup):
    from utils.tf_compat import tf

    results = {}
    with tf.Graph().as_default():
        env, impl, spec, init_ops = build_train_graph(train_argv)
        sessions = []
        for name, config in _settings(impl, tf):
            sess = tf.Session(config=config)
            first = {"init_s": _timed(sess, init_ops),
                     "first_step_s": _timed(sess, spec.train_op)}
            for _ in range(warmup):
                sess.run(spec.train_op)
            sessions.append((name, sess))
            results[name] = dict(first, steps_s=[])
        for i in range(steps):  # rotate the order so no setting always runs first
            for name, sess in sessions[i % len(sessions):] + sessions[:i % len(sessions)]:
                results[name]["steps_s"].append(_timed(sess, spec.train_op))
        for _, sess in sessions:
            sess.close()
    base = measure.median(results["tensorflow_default"]["steps_s"])
    for figures in results.values():
        step = measure.median(figures["steps_s"])
        figures.update(median_step_s=step, images_per_sec=env.global_batch / step,
                       step_time_vs_default=step / base)
    return {"settings": results, "global_batch": env.global_batch, "steps": steps,
            "train_flags": list(train_argv), "tensorflow": tf.VERSION,
            "python": platform.python_version()}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, train_argv = split_train_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="measured steps per setting")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/GRAPPLER.json")
    args = parser.parse_args(ours)
    result = run(train_argv, args.steps, args.warmup)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
    for name, figures in result["settings"].items():
        print("%-19s init %.2f s  first step %.2f s  steady step %.3f s (%.1f img/s, %.3fx "
              "the default's time)" % (name, figures["init_s"], figures["first_step_s"],
                                       figures["median_step_s"], figures["images_per_sec"],
                                       figures["step_time_vs_default"]))
    print("wrote " + args.out)


if __name__ == "__main__":
    exit_on_user_error(main)(None)  # a bad train.py flag: one line, exit 2
