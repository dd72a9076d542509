"""Turns the harness's raw runs into medians, pairwise ratios, pass/fail and RESULTS.md.

Pure Python (no TF, no torch) so tests/test_benchmarks_report.py checks it on fake
numbers in milliseconds. The harness fills ``results["figures"][key]["runs"]`` with one
value per repetition (None where that repetition failed); ``finalize`` adds medians,
ratios and verdicts; ``render_markdown`` writes the table people read.
"""
import collections

from benchmarks.measure import median

Figure = collections.namedtuple("Figure", "key label unit what")
Comparison = collections.namedtuple(
    "Comparison", "key label numerator denominator kind op target what")

FIGURES = (
    Figure("train_synthetic", "Ours: train.py, synthetic data", "img/s",
           "Estimator training, one random batch repeated (no input cost)"),
    Figure("train_default_alloc", "Ours: train.py, synthetic, default malloc", "img/s",
           "as the first row, without the harness's allocator setting (plain train.py)"),
    Figure("train_tfrecord", "Ours: train.py, JPEG TFRecords", "img/s",
           "Estimator training from the harness's ImageNet-sized JPEG records"),
    Figure("keras_synthetic", "Keras MobileNetV2 fit, synthetic", "img/s",
           "tf_keras.applications.MobileNetV2, model.fit on an in-memory batch"),
    Figure("torch_synthetic", "PyTorch MobileNetV2, synthetic", "img/s",
           "benchmarks/torch_mobilenet_v2.py (MobileNetV2 1.0), channels_last"),
    Figure("session_loop", "Bare tf.Session loop, synthetic", "img/s",
           "the same model_fn train op run in a plain session, no Estimator, no hooks"),
    Figure("input_pipeline", "Input pipeline alone (dataloader)", "img/s",
           "data_provider.make_input_fn batches iterated in a session, no model"),
    Figure("jpeg_decode", "JPEG decode alone (ceiling)", "img/s",
           "tf.io.decode_jpeg of the same records' bytes, full image, no resize"),
    Figure("eval_tfrecord", "Evaluation (eval_image_classifier_mobilenet.py)", "img/s",
           "forward pass + eval preprocessing, per-batch ips lines"),
    Figure("startup", "Start-up: launch to first finished step", "s",
           "train.py process launch to its first progress line (log_every_n_steps=1), "
           "a repeated run: its training graph imported from the graph cache"),
    Figure("startup_cold", "Start-up, first run with these settings", "s",
           "as above with an empty graph cache: train.py builds the training graph in "
           "Python (and stores it for the next run)"),
    Figure("startup_floor", "Start-up floor: TF import, built graph, first step", "s",
           "startup_floor.py: import TF, import train.py's already-built graph, session, "
           "init, one step; no Python graph building, Estimator or hooks"),
    Figure("startup_keras", "Keras start-up: launch to first finished step", "s",
           "the Keras run's launch to its first fit step (build, compile, trace)"),
    Figure("startup_torch", "PyTorch start-up: launch to first finished step", "s",
           "the PyTorch run's launch to its first optimizer step"),
)

COMPARISONS = (
    Comparison("tfrecord_vs_synthetic", "TFRecord / synthetic training", "train_tfrecord",
               "train_synthetic", "ratio", ">=", 0.95,
               "input pipeline keeps up with the model"),
    Comparison("ours_vs_keras", "Ours / Keras (synthetic)", "train_synthetic",
               "keras_synthetic", "ratio", ">=", 1.0, "same network, batch, optimizer"),
    Comparison("ours_vs_torch", "Ours / PyTorch (synthetic)", "train_synthetic",
               "torch_synthetic", "ratio", ">=", 1.0, "same network, batch, optimizer"),
    Comparison("pipeline_vs_training", "Input pipeline / TFRecord training",
               "input_pipeline", "train_tfrecord", "ratio", ">=", 2.0,
               "headroom of the input pipeline"),
    Comparison("estimator_overhead", "Estimator overhead vs bare session",
               "train_synthetic", "session_loop", "overhead", "<=", 0.05,
               "1 - Estimator steps/s / bare-session steps/s"),
    Comparison("allocator_effect", "Ours: tuned / default malloc", "train_synthetic",
               "train_default_alloc", "ratio", None, None,
               "what the allocator setting is worth to train.py (information)"),
    Comparison("pipeline_vs_decode", "Input pipeline / JPEG decode alone",
               "input_pipeline", "jpeg_decode", "ratio", None, None,
               "how close preprocessing gets to the decode ceiling (information)"),
    Comparison("eval_vs_training", "Evaluation / TFRecord training", "eval_tfrecord",
               "train_tfrecord", "ratio", None, None, "information"),
    Comparison("startup_vs_floor", "Start-up: ours / floor", "startup", "startup_floor",
               "ratio", None, None, "lower is faster; 1 would mean our Estimator, hooks "
               "and checks cost nothing (information)"),
    Comparison("startup_cold_vs_floor", "Start-up, first run: ours / floor", "startup_cold",
               "startup_floor", "ratio", None, None, "lower is faster; the graph built in "
               "Python, not imported (information)"),
    Comparison("startup_vs_keras", "Start-up: ours / Keras", "startup", "startup_keras",
               "ratio", None, None, "lower is faster (information)"),
    Comparison("startup_vs_torch", "Start-up: ours / PyTorch", "startup", "startup_torch",
               "ratio", None, None, "lower is faster (information)"),
)

# Targets on a figure itself rather than on a ratio.
FIGURE_TARGETS = {"startup": ("<=", 10.0)}

PASS, FAIL, NO_DATA = "pass", "FAIL", "no data"


def figure_label(key):
    return dict((f.key, f.label) for f in FIGURES)[key]


def _present(values):
    return [v for v in values if v is not None]


def pairwise(numerators, denominators, kind="ratio"):
    """Per-repetition comparison of run i with run i; repetitions missing either side
    (None, or one list shorter) are skipped. kind 'overhead' gives 1 - num / den."""
    values = []
    for num, den in zip(numerators, denominators):
        if num is None or den is None or den == 0:
            values.append(None)
            continue
        ratio = float(num) / float(den)
        values.append(1.0 - ratio if kind == "overhead" else ratio)
    return values


def verdict(value, op, target):
    """PASS / FAIL for ``value op target``; None when there is no target; NO_DATA when
    there is no value."""
    if op is None:
        return None
    if value is None:
        return NO_DATA
    ok = value >= target if op == ">=" else value <= target
    return PASS if ok else FAIL


def target_text(op, target, kind="ratio"):
    """'>= 0.95', '<= 5%' (overheads are shown as percentages), or None."""
    if op is None:
        return None
    if kind == "overhead":
        return "%s %g%%" % (op, 100.0 * target)
    return "%s %g" % (op, target)


def finalize(results):
    """Adds each figure's median and every comparison's per-run values, median and
    verdict to ``results`` (in place); returns it."""
    figures = results.setdefault("figures", {})
    for figure in FIGURES:
        entry = figures.setdefault(figure.key, {"runs": []})
        present = _present(entry.get("runs", []))
        entry["median"] = median(present) if present else None
        entry["unit"] = figure.unit
        op_target = FIGURE_TARGETS.get(figure.key)
        if op_target:
            entry["target"] = target_text(*op_target)
            entry["verdict"] = verdict(entry["median"], *op_target)
    comparisons = collections.OrderedDict()
    for comp in COMPARISONS:
        per_run = pairwise(figures[comp.numerator].get("runs", []),
                           figures[comp.denominator].get("runs", []), comp.kind)
        present = _present(per_run)
        value = median(present) if present else None
        comparisons[comp.key] = {
            "numerator": comp.numerator, "denominator": comp.denominator,
            "kind": comp.kind, "per_run": per_run, "median": value,
            "target": target_text(comp.op, comp.target, comp.kind),
            "verdict": verdict(value, comp.op, comp.target),
        }
    results["comparisons"] = comparisons
    return results


def _number(value, unit=""):
    if value is None:
        return "—"
    if unit == "s":
        return "%.1f" % value
    return "%.1f" % value if abs(value) >= 10 else "%.2f" % value


def _comparison_value(value, kind):
    if value is None:
        return "—"
    return "%.1f%%" % (100.0 * value) if kind == "overhead" else "%.2fx" % value


def _runs_text(values, fmt):
    return ", ".join("—" if v is None else fmt(v) for v in values) or "—"


def render_markdown(results):
    """RESULTS.md text of finalized ``results``."""
    machine = results.get("machine", {})
    settings = results.get("settings", {})
    versions = results.get("versions", {})
    lines = ["# Performance benchmarks (issue #8)", ""]
    if results.get("mode") == "quick":
        lines += ["**Quick mode (smoke test): tiny step counts. The numbers below are not "
                  "measurements; run `bash scripts/run_benchmarks.sh` for those.**", ""]
    lines += [
        "- Date: %s (%s mode, %s s wall)" % (results.get("date", "?"), results.get("mode", "?"),
                                              results.get("wall_seconds", "?")),
        "- Machine: %s, %s cores, %s GiB memory, %s" % (
            machine.get("cpu_model", "?"), machine.get("cores", "?"),
            machine.get("memory_gib", "?"), machine.get("platform", "?")),
        "- Versions: %s" % (", ".join("%s %s" % kv for kv in sorted(versions.items())) or "?"),
        "- Commit: %s" % results.get("commit", "?"),
        "- Settings: %s" % ", ".join("%s=%s" % kv for kv in sorted(settings.items())),
        "",
        "Each figure is the median over repetitions; each repetition's own figure is the "
        "median of its steady-state windows (after warm-up). Ratios are taken repetition "
        "by repetition (run i with run i), then the median. \"Others' CPU\" is the share "
        "of the machine that other processes used during each run: figures measured "
        "beside a busy neighbour are low and noisy.",
        "",
        "## Figures",
        "",
        "| figure | median | unit | runs | target | result | others' CPU | what |",
        "| --- | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    figures = results.get("figures", {})
    for figure in FIGURES:
        entry = figures.get(figure.key, {})
        loads = [d.get("other_load") if d else None for d in entry.get("details") or []]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            figure.label, _number(entry.get("median"), figure.unit), figure.unit,
            _runs_text(entry.get("runs", []), lambda v, u=figure.unit: _number(v, u)),
            entry.get("target") or "—", entry.get("verdict") or "—",
            _runs_text(loads, lambda v: "%.0f%%" % (100.0 * v)), figure.what))
    lines += ["", "## Comparisons", "",
              "| comparison | value | target | result | per run | figures compared |",
              "| --- | ---: | --- | --- | --- | --- |"]
    for comp in COMPARISONS:
        entry = results.get("comparisons", {}).get(comp.key, {})
        num = figures.get(comp.numerator, {}).get("median")
        den = figures.get(comp.denominator, {}).get("median")
        lines.append("| %s | %s | %s | %s | %s | %s: %s vs %s: %s; %s |" % (
            comp.label, _comparison_value(entry.get("median"), comp.kind),
            entry.get("target") or "—", entry.get("verdict") or "—",
            _runs_text(entry.get("per_run", []),
                       lambda v, k=comp.kind: _comparison_value(v, k)),
            comp.numerator, _number(num), comp.denominator, _number(den), comp.what))
    errors = results.get("errors", [])
    if errors:
        lines += ["", "## Errors", ""]
        lines += ["- %s" % e for e in errors]
    notes = results.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""]
        lines += ["- %s" % n for n in notes]
    return "\n".join(lines) + "\n"
