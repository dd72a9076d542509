"""Runs every benchmark of issue #8 and writes benchmarks/RESULTS.md and results.json.

  bash scripts/run_benchmarks.sh [--quick]          (installs what it needs, then this)
  .venv/bin/python -m benchmarks.harness [--quick] [--only=a,b] [--repeats=N] ...

Each benchmark runs as its own subprocess (ours and Keras with .venv's Python, PyTorch
with .venv-bench's), one repetition of all of them after the other, so slow drift of the
machine hits every figure alike and ratios can be taken repetition by repetition.
Every subprocess's output is kept under <work>/logs/. A failed benchmark is reported
(and makes the exit status 1) but does not stop the others.
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import time

from benchmarks import config, machine, make_jpeg_dataset, measure, ours, report, runner

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
# The allocator every benchmark process gets (--allocator=tuned): glibc malloc keeping
# freed memory instead of mapping and unmapping each step's activations. PyTorch needs it
# for its best speed, and TF as much: by default glibc serves big blocks with mmap until
# the process happens to free a bigger one (its dynamic threshold), so the same train op
# ran ~2x faster in train.py (which frees big checkpoint and graph buffers at start-up)
# than in a bare session. One setting for all keeps the comparisons fair; the
# train_default_alloc figure shows what plain `python train.py` gets.
GLIBC_TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
LIBJEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


class Context(object):
    """Everything a benchmark needs: settings, interpreters, folders, where to record."""

    def __init__(self, settings, python, bench_python, work_dir, dataset_dir, results,
                 allocator_env):
        self.settings = settings
        self.allocator_env = allocator_env
        self.python = python
        self.bench_python = bench_python
        self.work_dir = work_dir
        self.dataset_dir = dataset_dir
        self.results = results
        self.checkpoint_dirs = {}
        self.floor_graph = None
        self.graph_cache = None  # startup_cold's, which startup then imports from
        self.cache_home = os.path.join(work_dir, "xdg_cache")
        shutil.rmtree(self.cache_home, ignore_errors=True)  # nothing from earlier runs
        self.last = None

    def run(self, name, rep, command, default_allocator=False):
        """Runs one benchmark process (with the tuned allocator unless told not to)."""
        log_path = os.path.join(self.work_dir, "logs", "%s_rep%d.log" % (name, rep + 1))
        environment = runner.child_environment(
            None if default_allocator else self.allocator_env, strip_allocator=True)
        # train.py's graph cache (graph_cache.default_dir) under the work folder: the
        # user's own cache is neither read nor written, only startup_cold warms it.
        environment["XDG_CACHE_HOME"] = self.cache_home
        done = runner.run(command, log_path, REPO_ROOT, environment, self.settings.timeout_s)
        self.last = done
        status = "timed out" if done.returncode is None else "exit %d" % done.returncode
        print("  %-19s rep %d: %s in %.0f s, other processes took %s of the CPU"
              % (name, rep + 1, status, done.seconds, _percent(done.other_load)), flush=True)
        if done.returncode != 0:
            raise BenchmarkError("%s rep %d: %s after %.0f s; see %s. Last lines:\n%s"
                                 % (name, rep + 1, status, done.seconds, log_path,
                                    runner.tail(done, 8)))
        return done

    def fresh_dir(self, name):
        path = os.path.join(self.work_dir, "runs", name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        return path


def _percent(share):
    return "?" if share is None else "%.0f%%" % (100 * share)


class BenchmarkError(Exception):
    pass


def _need(value, what, completed):
    if value is None:
        raise BenchmarkError("%s: no measurement in the output (too few steps?); see %s"
                             % (what, completed.log_path))
    return value


def _worker_result(completed, what):
    payload = measure.parse_result(runner.lines_of(completed))
    if payload is None:
        raise BenchmarkError("%s printed no %sline; see %s"
                             % (what, measure.RESULT_PREFIX, completed.log_path))
    return payload


def _train(ctx, rep, name, synthetic, default_allocator=False):
    s = ctx.settings
    train_dir = ctx.fresh_dir(name)
    flags = ours.train_flags(s, ctx.dataset_dir, train_dir, synthetic,
                             config.total_steps(s), s.window)
    done = ctx.run(name, rep, ours.train_command(ctx.python, REPO_ROOT, flags),
                   default_allocator)
    figure = ours.training_figure(runner.lines_of(done), s)
    _need(figure["median"], name, done)
    ctx.checkpoint_dirs[name] = train_dir
    return figure


def bench_train_synthetic(ctx, rep):
    return {"train_synthetic": _train(ctx, rep, "train_synthetic", True)}


def bench_train_default_alloc(ctx, rep):
    """train.py as a user runs it, without the allocator setting (nothing to add when
    the whole run already uses the default allocator)."""
    if not ctx.allocator_env:
        return {}
    return {"train_default_alloc": _train(ctx, rep, "train_default_alloc", True, True)}


def bench_train_tfrecord(ctx, rep):
    return {"train_tfrecord": _train(ctx, rep, "train_tfrecord", False)}


def bench_session_loop(ctx, rep):
    s = ctx.settings
    flags = ours.train_flags(s, ctx.dataset_dir, ctx.fresh_dir("session_loop"), True,
                             config.total_steps(s), s.window)
    command = [ctx.python, "-m", "benchmarks.session_loop", "--warmup=%d" % s.warmup_steps,
               "--window=%d" % s.window, "--"] + flags
    done = ctx.run("session_loop", rep, command)
    figure = _worker_result(done, "session_loop")
    _need(figure["median"], "session_loop", done)
    return {"session_loop": figure}


def bench_eval(ctx, rep):
    s = ctx.settings
    checkpoint_dir = ctx.checkpoint_dirs.get("train_tfrecord") or ctx.checkpoint_dirs.get(
        "train_synthetic")
    if not checkpoint_dir:
        raise BenchmarkError("eval rep %d: no training run of this repetition left a "
                             "checkpoint to evaluate" % (rep + 1))
    eval_dir = ctx.fresh_dir("eval")
    done = ctx.run("eval", rep, ours.eval_command(ctx.python, REPO_ROOT, s, ctx.dataset_dir,
                                                  checkpoint_dir, eval_dir))
    figure = ours.eval_figure(runner.lines_of(done), s)
    _need(figure["median"], "eval", done)
    return {"eval_tfrecord": figure}


def bench_input_pipeline(ctx, rep):
    s = ctx.settings
    command = [ctx.python, "-m", "benchmarks.input_pipeline",
               "--dataset_dir=%s" % ctx.dataset_dir, "--batch_size=%d" % s.batch_size,
               "--image_size=%d" % s.image_size, "--num_classes=%d" % s.num_classes,
               "--warmup=%d" % s.pipeline_warmup_batches,
               "--batches=%d" % s.pipeline_batches]
    done = ctx.run("input_pipeline", rep, command)
    payload = _worker_result(done, "input_pipeline")
    shared = {k: v for k, v in payload.items() if k not in ("pipeline", "decode")}
    pipeline = dict(payload["pipeline"], **shared)
    decode = dict(payload["decode"], **shared)
    _need(pipeline["median"], "input_pipeline", done)
    _need(decode["median"], "jpeg_decode", done)
    return {"input_pipeline": pipeline, "jpeg_decode": decode}


def _peer_flags(s):
    return ["--batch_size=%d" % s.batch_size, "--image_size=%d" % s.image_size,
            "--num_classes=%d" % s.num_classes, "--warmup=%d" % s.warmup_steps,
            "--steps=%d" % s.measure_steps, "--window=%d" % s.window,
            "--threads=%d" % (os.cpu_count() or 1)]


def _bench_peer(ctx, rep, name, python):
    """One peer framework's run (benchmarks/<name>_peer.py under ``python``): its
    throughput, and its start-up from the same run (launch to its first step)."""
    done = ctx.run(name, rep, [python, "-m", "benchmarks.%s_peer" % name]
                   + _peer_flags(ctx.settings))
    figure = _worker_result(done, name + "_peer")
    _need(figure["median"], name, done)
    startup = _need(measure.first_marker_time(done.timed_lines), name + " start-up", done)
    return {name + "_synthetic": figure, "startup_" + name: {"median": startup}}


def bench_keras(ctx, rep):
    return _bench_peer(ctx, rep, "keras", ctx.python)


def allocator_env(kind):
    """The environment of --allocator: tuned = jemalloc when Debian's libjemalloc2 is
    installed, else glibc told to keep freed memory; default = nothing."""
    if kind == "default":
        return {}
    if os.path.exists(LIBJEMALLOC):
        return {"LD_PRELOAD": LIBJEMALLOC}
    return dict(GLIBC_TUNED_ENV)


def bench_torch(ctx, rep):
    return _bench_peer(ctx, rep, "torch", ctx.bench_python)


def _startup(ctx, rep, name):
    """Seconds from train.py's launch to its first progress line, with ctx.graph_cache."""
    flags = ours.train_flags(ctx.settings, ctx.dataset_dir, ctx.fresh_dir(name), False, 1, 1)
    command = ours.train_command(ctx.python, REPO_ROOT, flags + [
        "--graph_cache_dir=%s" % ctx.graph_cache])
    done = ctx.run(name, rep, command)
    return _need(ours.startup_seconds(done.timed_lines), name, done)


def bench_startup_cold(ctx, rep):
    """The first run with these settings: an empty graph cache, so train.py builds the
    training graph (and stores it)."""
    ctx.graph_cache = ctx.fresh_dir("graph_cache")
    return {"startup_cold": {"median": _startup(ctx, rep, "startup_cold")}}


def bench_startup(ctx, rep):
    """A later run with the same settings: train.py imports the graph startup_cold
    stored (run alone, this warms the cache first, uncounted)."""
    if ctx.graph_cache is None:
        bench_startup_cold(ctx, rep)
    return {"startup": {"median": _startup(ctx, rep, "startup")}}


def bench_startup_floor(ctx, rep):
    """TensorFlow's own share of start-up: a fresh process importing train.py's graph,
    already built (once per harness run, by this code), then one step."""
    floor = [ctx.python, "-m", "benchmarks.startup_floor"]
    if ctx.floor_graph is None:
        folder = ctx.fresh_dir("startup_floor")
        graph = os.path.join(folder, "train_graph.meta")
        flags = ours.train_flags(ctx.settings, ctx.dataset_dir,
                                 os.path.join(folder, "train"), False, 1, 1)
        ctx.run("startup_floor_build", rep, floor + ["--save_graph=%s" % graph, "--"] + flags)
        ctx.floor_graph = graph
    done = ctx.run("startup_floor", rep, floor + ["--load_graph=%s" % ctx.floor_graph])
    seconds = _need(measure.first_marker_time(done.timed_lines), "startup_floor", done)
    return {"startup_floor": {"median": seconds}}


# One repetition, in this order: pairs that are compared run next to each other
# (train_synthetic between its two targets with 5% margins). The first PAIRED_BLOCK
# entries run in reverse order every other repetition, so a host that speeds up or slows
# down over minutes (10-20% here) favours neither side of those comparisons.
PAIRED_BLOCK = 3
BENCHMARKS = (
    ("session_loop", bench_session_loop),
    ("train_synthetic", bench_train_synthetic),
    ("train_tfrecord", bench_train_tfrecord),
    ("train_default_alloc", bench_train_default_alloc),
    ("eval", bench_eval),
    ("input_pipeline", bench_input_pipeline),
    ("keras", bench_keras),
    ("torch", bench_torch),
    ("startup_cold", bench_startup_cold),
    ("startup", bench_startup),
    ("startup_floor", bench_startup_floor),
)
# Information-only figures measured in the first repetition only, to save time.
FIRST_REPETITION_ONLY = ("train_default_alloc",)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: tiny step counts, one repetition")
    parser.add_argument("--only", default=None,
                        help="comma-separated benchmarks to run: %s"
                             % ",".join(name for name, _ in BENCHMARKS))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup_steps", type=int, default=None)
    parser.add_argument("--measure_steps", type=int, default=None)
    parser.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                        help="tuned: every benchmark process keeps freed memory (jemalloc "
                             "or glibc settings); default: no allocator setting at all")
    parser.add_argument("--out_dir", default=HERE,
                        help="where RESULTS.md and results.json go (default: benchmarks/)")
    parser.add_argument("--work_dir", default=os.path.join(HERE, "_work"),
                        help="dataset, run folders and logs (reused between runs)")
    parser.add_argument("--bench_python",
                        default=os.path.join(REPO_ROOT, ".venv-bench", "bin", "python"),
                        help="interpreter with torch, for the PyTorch peer")
    return parser.parse_args(argv)


def _settings(args):
    settings = config.get(args.quick)
    overrides = {k: getattr(args, k) for k in ("repeats", "warmup_steps", "measure_steps")
                 if getattr(args, k) is not None}
    settings = settings._replace(**overrides)
    if settings.warmup_steps % settings.window or settings.measure_steps % settings.window:
        raise SystemExit("--warmup_steps and --measure_steps must be multiples of the "
                         "window (%d steps): progress lines come every window"
                         % settings.window)
    return settings


def _selected(only):
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = dict(BENCHMARKS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit("unknown benchmark %r; known: %s" % (unknown[0], ", ".join(known)))
    return [(name, fn) for name, fn in BENCHMARKS if name in names]


def _repetition_order(selected, rep):
    """selected, with the paired block (those of BENCHMARKS[:PAIRED_BLOCK] selected)
    reversed on odd repetitions."""
    paired = [entry for entry in selected if entry in BENCHMARKS[:PAIRED_BLOCK]]
    rest = [entry for entry in selected if entry not in paired]
    return (paired[::-1] if rep % 2 else paired) + rest


def _record(results, rep, figures, completed):
    """Stores one repetition's figures, each with its run's wall time and the CPU share
    other processes took meanwhile (a busy neighbour explains an outlier)."""
    for key, figure in figures.items():
        figure = dict(figure, process_seconds=round(completed.seconds, 1),
                      other_load=None if completed.other_load is None
                      else round(completed.other_load, 3))
        entry = results["figures"].setdefault(key, {"runs": [], "details": []})
        while len(entry["runs"]) <= rep:
            entry["runs"].append(None)
            entry["details"].append(None)
        value = figure.get("median")
        entry["runs"][rep] = None if value is None else round(value, 3)
        entry["details"][rep] = figure


def _versions(results):
    versions = dict(machine.package_versions(
        ("tensorflow-cpu", "tensorflow", "tensorflow-estimator", "tf-keras", "tf-slim",
         "numpy")))
    versions["python"] = "%d.%d.%d" % sys.version_info[:3]
    torch_details = results["figures"].get("torch_synthetic", {}).get("details") or []
    for detail in torch_details:
        if detail and detail.get("torch"):
            versions["torch"] = detail["torch"]
    return versions


def _notes(results, settings, other_load_before, other_load_during, alloc_env):
    notes = []
    for when, share in (("before", other_load_before), ("during", other_load_during)):
        if share is not None:
            notes.append("CPU used by other processes %s the run: %.0f%% of the machine%s"
                         % (when, 100 * share, " (figures are depressed; rerun on an idle "
                            "machine)" if share > 0.1 else ""))
    if alloc_env:
        notes.append("Every benchmark process runs with %s (memory kept by the allocator "
                     "instead of mapped and unmapped every step), except \"%s\"."
                     % (" ".join("%s=%s" % kv for kv in sorted(alloc_env.items())),
                        report.figure_label("train_default_alloc")))
    else:
        notes.append("Every benchmark process runs with the default allocator "
                     "(--allocator=default).")
    notes.append("Training figures: %d warm-up steps, then %d steps in windows of %d "
                 "(train.py --log_every_n_steps=%d); batch %d, %d px, %d classes, float32, "
                 "SGD momentum 0.9; intra/inter-op threads = %s cores for every framework."
                 % (settings.warmup_steps, settings.measure_steps, settings.window,
                    settings.window, settings.batch_size, settings.image_size,
                    settings.num_classes, os.cpu_count()))
    details = results["figures"].get("input_pipeline", {}).get("details") or [None]
    if details[0]:
        notes.append("Input pipeline and decode: %d tf.data threads (the dataloader's "
                     "default), %d train records, mean JPEG %.1f KiB."
                     % (details[0]["threads"], details[0]["records"],
                        details[0]["mean_jpeg_kib"]))
    return notes


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = _settings(args)
    selected = _selected(args.only)
    started = time.time()
    other_before = machine.idle_share_of_others(1.0)
    load = machine.LoadMeter()
    load.start()
    results = {"mode": settings.mode, "settings": settings._asdict(),
               "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M %Z").strip(),
               "machine": machine.describe(), "commit": machine.git_commit(REPO_ROOT),
               "figures": {}, "errors": []}
    print("benchmarks: %s mode, %d repetition(s) of %s; logs in %s"
          % (settings.mode, settings.repeats, ", ".join(n for n, _ in selected),
             os.path.join(args.work_dir, "logs")), flush=True)
    dataset_dir = make_jpeg_dataset.ensure_dataset(
        os.path.join(args.work_dir, "data_%s" % settings.mode), settings.train_images,
        settings.validation_images, settings.num_image_classes, python=sys.executable,
        repo_root=REPO_ROOT, log=lambda line: print("  dataset: " + line, flush=True))
    alloc_env = allocator_env(args.allocator)
    results["allocator_env"] = alloc_env
    ctx = Context(settings, sys.executable, args.bench_python, args.work_dir, dataset_dir,
                  results, alloc_env)
    for rep in range(settings.repeats):
        print("repetition %d of %d" % (rep + 1, settings.repeats), flush=True)
        ctx.checkpoint_dirs = {}
        for name, bench in _repetition_order(selected, rep):
            if rep > 0 and name in FIRST_REPETITION_ONLY:
                continue
            try:
                _record(results, rep, bench(ctx, rep), ctx.last)
            except BenchmarkError as err:
                results["errors"].append(str(err).splitlines()[0])
                print("  error: %s" % err, flush=True)
    # Checkpoints of the runs (~80 MB each) are not needed once measured; logs stay.
    shutil.rmtree(os.path.join(args.work_dir, "runs"), ignore_errors=True)
    results["wall_seconds"] = int(round(time.time() - started))
    results["versions"] = _versions(results)
    results["notes"] = _notes(results, settings, other_before, load.stop(), alloc_env)
    report.finalize(results)
    if not os.path.isdir(args.out_dir):
        os.makedirs(args.out_dir)
    with open(os.path.join(args.out_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
        handle.write("\n")
    markdown = report.render_markdown(results)
    with open(os.path.join(args.out_dir, "RESULTS.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    print("wrote %s and results.json in %d s" % (os.path.join(args.out_dir, "RESULTS.md"),
                                                results["wall_seconds"]))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
