"""Steady-state throughput from timestamps and log lines; pure Python, no TF, no torch.

Every benchmark reduces its run to the same kind of number: images/s over windows of
``window`` steps that start after ``warmup`` steps, and the median of those windows.
Our train.py prints one progress line per window (``step:N ... ips:X``); the peers and
the bare-session loop record a timestamp per step and cut the same windows here, so all
figures are compared on the same footing.
"""
import argparse
import json
import os
import re

RESULT_PREFIX = "BENCH_RESULT "
# Printed by a peer or probe the moment its first training step has finished, so the
# harness times launch-to-first-step the way it times train.py's first progress line.
FIRST_STEP_MARKER = "BENCH_FIRST_STEP"

_PROGRESS = re.compile(r"(?:^|\s)step:(\d+)\s.*?\bips:([0-9.]+)")
_EVAL = re.compile(r"\beval batch:(\d+)\s.*?\bips:([0-9.]+)")


def median(values):
    """Median of a non-empty sequence of numbers (mean of the middle two when even)."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("median of no values")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def window_rates(start, step_ends, batch_size, warmup, window):
    """Images/s of consecutive ``window``-step windows after ``warmup`` steps.

    ``start`` is the time before step 1, ``step_ends[i]`` the time step i+1 finished.
    Windows are [warmup, warmup+window), [warmup+window, ...): the same steps train.py's
    progress lines cover when log_every_n_steps == window and warmup is a multiple of it.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    bounds = [start] + list(step_ends)
    rates = []
    first = warmup
    while first + window < len(bounds):
        seconds = bounds[first + window] - bounds[first]
        rates.append(window * batch_size / max(seconds, 1e-9))
        first += window
    return rates


def progress_rates(lines, warmup, window):
    """ips of train.py progress lines whose window starts at or after step ``warmup``.

    A line ``step:N ... ips:X`` covers steps (N - window, N]; earlier lines hold the
    one-time costs (graph build is before, but the first steps allocate and tune).
    """
    rates = []
    for line in lines:
        match = _PROGRESS.search(line)
        if match and int(match.group(1)) - window >= warmup:
            rates.append(float(match.group(2)))
    return rates


def eval_rates(lines, warmup_batches, every=1):
    """ips of the evaluator's ``eval batch:N ... ips:X`` lines after the warm-up batches."""
    rates = []
    for line in lines:
        match = _EVAL.search(line)
        if match and int(match.group(1)) - every >= warmup_batches:
            rates.append(float(match.group(2)))
    return rates


def first_progress_time(timed_lines):
    """Seconds (as recorded with the line) of the first train.py progress line, or None."""
    for seconds, line in timed_lines:
        if _PROGRESS.search(line):
            return seconds
    return None


def first_marker_time(timed_lines):
    """Seconds (as recorded with the line) of the first FIRST_STEP_MARKER line, or None."""
    for seconds, line in timed_lines:
        if line.startswith(FIRST_STEP_MARKER):
            return seconds
    return None


def announce_first_step():
    print(FIRST_STEP_MARKER, flush=True)


def summarize(rates):
    """{"median": m, "windows": [...]} of one run's window rates (median None if empty)."""
    return {"median": median(rates) if rates else None,
            "windows": [round(r, 2) for r in rates]}


def result_line(payload):
    """The one line a worker prints for the harness: prefix + JSON."""
    return RESULT_PREFIX + json.dumps(payload, sort_keys=True)


def parse_result(lines):
    """The payload of the last BENCH_RESULT line among ``lines``, or None."""
    found = None
    for line in lines:
        if line.startswith(RESULT_PREFIX):
            found = json.loads(line[len(RESULT_PREFIX):])
    return found


def peer_argument_parser(description):
    """The arguments every peer benchmark (Keras, PyTorch) takes, so both run the same
    batch, resolution, classes, step counts and thread count."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return parser
