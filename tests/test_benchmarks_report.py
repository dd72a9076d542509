"""benchmarks/: medians, windows, log parsing, pairwise ratios, verdicts and the report,
on fake numbers (no TF, no torch; the benchmarks themselves never run in CI)."""
import json

import pytest

from benchmarks import config, harness, measure, ours, report, session_loop


def test_median_odd_even_and_empty():
    assert measure.median([3, 1, 2]) == 2.0
    assert measure.median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        measure.median([])


def test_window_rates_skip_warmup_and_cut_full_windows():
    # 2 warm-up steps of 1 s, then steps of 0.5 s; batch 10, windows of 2 steps.
    ends = [1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    rates = measure.window_rates(0.0, ends, batch_size=10, warmup=2, window=2)
    assert rates == [20.0, 20.0]  # the 7th step alone is not a full window
    assert measure.window_rates(0.0, ends[:2], 10, 2, 2) == []


def test_progress_rates_read_train_py_lines_after_warmup():
    lines = [
        "device: cpu, float32; model=mobilenet_v2 classes=1000 image=224 batch=32",
        "step:5 epoch:0.31 ips:3.1 loss:6.9 total_loss:7.3 lr:0.1 train_accuracy:0 eta:0:01:00",
        "step:10 epoch:0.62 ips:12.5 loss:6.8 total_loss:7.2 lr:0.09 train_accuracy:0 eta:0:00:40",
        "2026-11-23 10:00:00,000 step:15 epoch:0.94 ips:13.5 loss:6.7 eta:0:00:20",
        "eval batch:3 images:96/500 top1:0.0 top5:0.0 ips:40.0 eta:0:00:10",
        "rank 0: step 15, state digest 0123456789abcdef",
    ]
    assert measure.progress_rates(lines, warmup=5, window=5) == [12.5, 13.5]
    assert measure.eval_rates(lines, warmup_batches=1) == [40.0]
    assert measure.eval_rates(lines, warmup_batches=2) == [40.0]  # batch 3 follows them
    assert measure.eval_rates(lines, warmup_batches=3) == []


def test_first_progress_time_is_the_start_up_figure():
    timed = [(4.0, "device: cpu"), (31.5, "step:1 epoch:0.06 ips:1.2 loss:7 eta:?"),
             (35.0, "step:2 epoch:0.12 ips:9.0 loss:7 eta:?")]
    assert ours.startup_seconds(timed) == 31.5
    assert measure.first_progress_time([(1.0, "no progress here")]) is None


def test_peers_and_the_floor_announce_their_first_step(capsys):
    measure.announce_first_step()
    printed = capsys.readouterr().out.splitlines()
    timed = [(2.0, "importing"), (9.5, printed[0]), (12.0, printed[0])]
    assert measure.first_marker_time(timed) == 9.5
    assert measure.first_marker_time([(1.0, "step:1 ips:3 loss:7")]) is None


def test_tool_arguments_and_train_flags_split_at_the_double_dash():
    argv = ["--warmup=2", "--", "--dataset_dir=D", "--batch_size=8"]
    assert session_loop.split_train_argv(argv) == (["--warmup=2"],
                                                   ["--dataset_dir=D", "--batch_size=8"])
    assert session_loop.split_train_argv(["--warmup=2"]) == (["--warmup=2"], [])


def test_worker_result_line_round_trip():
    lines = ["noise", measure.result_line({"median": 1.5}),
             measure.result_line({"median": 2.5, "windows": [2.5]})]
    assert measure.parse_result(lines) == {"median": 2.5, "windows": [2.5]}
    assert measure.parse_result(["nothing"]) is None


def test_pairwise_ratios_keep_repetitions_apart():
    assert report.pairwise([10, 20, None], [5, 10, 4]) == [2.0, 2.0, None]
    assert report.pairwise([9.5, 19.0], [10.0, 20.0], "overhead") == pytest.approx([0.05, 0.05])
    assert report.pairwise([1, 2, 3], [1]) == [1.0]  # a shorter side ends the pairs


def test_verdicts():
    assert report.verdict(0.96, ">=", 0.95) == report.PASS
    assert report.verdict(0.94, ">=", 0.95) == report.FAIL
    assert report.verdict(12.0, "<=", 10.0) == report.FAIL
    assert report.verdict(None, "<=", 10.0) == report.NO_DATA
    assert report.verdict(1.0, None, None) is None


def _fake_results(mode="full"):
    runs = {
        "train_synthetic": [10.0, 11.0, 12.0], "train_tfrecord": [9.8, 10.9, 11.0],
        "train_default_alloc": [5.0, 5.5, 6.0],
        "keras_synthetic": [8.0, 9.0, 10.0], "torch_synthetic": [20.0, 22.0, 24.0],
        "session_loop": [10.2, 11.2, 12.1], "input_pipeline": [500.0, 520.0, 510.0],
        "jpeg_decode": [700.0, 710.0, 690.0], "eval_tfrecord": [30.0, 31.0, 29.0],
        "startup": [35.0, 30.0, None], "startup_cold": [40.0, 36.0, 45.0],
        "startup_floor": [10.0, 12.0, 9.0],
        "startup_keras": [70.0, 60.0, 50.0], "startup_torch": [5.0, 6.0, 4.0],
    }
    figures = {key: {"runs": values,
                     "details": [{"other_load": 0.02} if v is not None else None
                                 for v in values]}
               for key, values in runs.items()}
    return {"mode": mode, "date": "2026-11-23 12:00", "figures": figures,
            "settings": config.FULL._asdict(), "versions": {"tensorflow-cpu": "2.15.1"},
            "machine": {"cpu_model": "AMD EPYC", "cores": 2, "memory_gib": 23.5,
                        "platform": "Linux"},
            "errors": ["startup rep 3: timed out"], "notes": ["a note"]}


def test_finalize_medians_ratios_and_verdicts():
    results = report.finalize(_fake_results())
    figures, comps = results["figures"], results["comparisons"]
    assert figures["train_synthetic"]["median"] == 11.0
    assert figures["startup"]["median"] == 32.5  # the failed repetition is left out
    assert figures["startup"]["verdict"] == report.FAIL
    tfrecord = comps["tfrecord_vs_synthetic"]
    assert tfrecord["per_run"] == pytest.approx([0.98, 10.9 / 11.0, 11.0 / 12.0])
    assert tfrecord["median"] == pytest.approx(0.98)  # median of per-run ratios
    assert tfrecord["verdict"] == report.PASS
    assert comps["ours_vs_keras"]["verdict"] == report.PASS
    assert comps["ours_vs_torch"]["verdict"] == report.FAIL
    assert comps["pipeline_vs_training"]["median"] == pytest.approx(520.0 / 10.9)
    overhead = comps["estimator_overhead"]
    assert overhead["median"] == pytest.approx(1 - 11.0 / 11.2)
    assert overhead["verdict"] == report.PASS and overhead["target"] == "<= 5%"
    assert comps["pipeline_vs_decode"]["verdict"] is None
    assert comps["allocator_effect"]["median"] == pytest.approx(2.0)
    assert comps["startup_vs_floor"]["per_run"] == pytest.approx([3.5, 2.5, None])
    assert comps["startup_vs_keras"]["median"] == pytest.approx(0.5)  # 35/70, 30/60
    assert comps["startup_vs_torch"]["verdict"] is None  # information only
    assert comps["startup_cold_vs_floor"]["per_run"] == pytest.approx([4.0, 3.0, 5.0])
    assert "verdict" not in figures["startup_cold"]  # the target is on repeated runs
    json.dumps(results)  # results.json must serialize


def test_missing_figure_reports_no_data():
    fake = _fake_results()
    del fake["figures"]["torch_synthetic"]
    results = report.finalize(fake)
    assert results["figures"]["torch_synthetic"]["median"] is None
    assert results["comparisons"]["ours_vs_torch"]["verdict"] == report.NO_DATA


def test_markdown_shows_every_figure_target_and_verdict():
    text = report.render_markdown(report.finalize(_fake_results()))
    for figure in report.FIGURES:
        assert "| %s |" % figure.label in text
    for comp in report.COMPARISONS:
        assert "| %s |" % comp.label in text
    assert "| Start-up: launch to first finished step | 32.5 | s | 35.0, 30.0, — | <= 10 | FAIL |" in text
    assert "| Ours / PyTorch (synthetic) | 0.50x | >= 1 | FAIL |" in text
    assert "| Estimator overhead vs bare session | 1.8% | <= 5% | pass |" in text
    assert "AMD EPYC, 2 cores" in text and "## Errors" in text and "timed out" in text
    assert "Quick mode" not in text
    assert "Quick mode" in report.render_markdown(report.finalize(_fake_results("quick")))


def test_record_keeps_runs_aligned_by_repetition():
    class Done(object):
        seconds, other_load = 12.0, 0.25
    results = {"figures": {}}
    harness._record(results, 1, {"keras_synthetic": {"median": 9.87654}}, Done())
    entry = results["figures"]["keras_synthetic"]
    assert entry["runs"] == [None, 9.877]
    assert entry["details"][1]["other_load"] == 0.25


def test_paired_block_alternates_direction_and_the_rest_keeps_its_order():
    names = [name for name, _ in harness.BENCHMARKS]
    paired = names[:harness.PAIRED_BLOCK]
    assert "train_synthetic" in paired and "train_tfrecord" in paired

    def order(selected, rep):
        return [name for name, _ in harness._repetition_order(selected, rep)]
    assert order(harness.BENCHMARKS, 0) == names
    assert order(harness.BENCHMARKS, 1) == paired[::-1] + names[harness.PAIRED_BLOCK:]
    assert order(harness.BENCHMARKS, 2) == names
    # eval reads a checkpoint of this repetition's training: it always comes after it.
    for rep in (0, 1):
        names_now = order(harness.BENCHMARKS, rep)
        assert names_now.index("eval") > max(names_now.index("train_synthetic"),
                                             names_now.index("train_tfrecord"))
    only = harness._selected("eval,train_tfrecord,train_synthetic")
    assert order(only, 1) == ["train_tfrecord", "train_synthetic", "eval"]


@pytest.mark.parametrize("settings", [config.QUICK, config.FULL])
def test_settings_windows_line_up_with_progress_lines(settings):
    assert settings.warmup_steps % settings.window == 0
    assert settings.measure_steps % settings.window == 0
    assert settings.measure_steps // settings.window >= 2
    assert settings.train_images >= settings.batch_size * settings.eval_batches
    flags = ours.train_flags(settings, "DATA", "TRAIN", True, config.total_steps(settings),
                             settings.window)
    assert "--use_synthetic_data" in flags and "--model_name=mobilenet_v2" in flags
    assert "--log_every_n_steps=%d" % settings.window in flags


def test_allocator_environment_is_the_harness_choice(monkeypatch):
    from benchmarks import runner
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so")
    env = runner.child_environment({"MALLOC_MMAP_MAX_": "0"}, strip_allocator=True)
    assert env["MALLOC_MMAP_MAX_"] == "0" and env["PYTHONUNBUFFERED"] == "1"
    assert "MALLOC_ARENA_MAX" not in env and "LD_PRELOAD" not in env
    assert harness.allocator_env("default") == {}
    tuned = harness.allocator_env("tuned")
    assert tuned.get("MALLOC_MMAP_MAX_") == "0" or "jemalloc" in tuned.get("LD_PRELOAD", "")
