"""Runs one benchmark subprocess: every output line timestamped from the launch, all of
it kept in a log file, a time limit, the process group ended on timeout, and the share
of the CPU that other processes took meanwhile (recorded with each figure).

Timestamps are taken as lines arrive (the child runs with PYTHONUNBUFFERED=1), so the
start-up figure is launch -> first progress line as a user would see it.
"""
import collections
import os
import signal
import subprocess
import threading
import time

from benchmarks import machine

Completed = collections.namedtuple(
    "Completed", "returncode timed_lines seconds log_path other_load")


def child_environment(extra=None, strip_allocator=False):
    """This process's environment, unbuffered, plus ``extra``; with strip_allocator,
    without allocator settings inherited from the caller's shell (MALLOC_*, a preloaded
    jemalloc or tcmalloc), so the harness alone decides them."""
    env = dict(os.environ)
    if strip_allocator:
        for key in list(env):
            if key.startswith("MALLOC_"):
                del env[key]
        if "malloc" in env.get("LD_PRELOAD", ""):
            del env["LD_PRELOAD"]
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run(command, log_path, cwd, env=None, timeout=None):
    """Runs ``command``; returns Completed (returncode None when it timed out)."""
    directory = os.path.dirname(log_path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory)
    timed = []
    with open(log_path, "w") as log:
        log.write("$ %s\n" % " ".join(command))
        log.flush()
        load = machine.LoadMeter()
        load.start()
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True,
                                   start_new_session=True)

        def read():
            for line in process.stdout:
                seconds = time.perf_counter() - start
                line = line.rstrip("\n")
                timed.append((seconds, line))
                log.write("[%8.2f] %s\n" % (seconds, line))
                log.flush()

        reader = threading.Thread(target=read)
        reader.daemon = True
        reader.start()
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own child's group only
            process.wait()
            returncode = None
        reader.join(10)
        seconds = time.perf_counter() - start
        other_load = load.stop()
        log.write("# exit %s after %.1f s; other processes used %s of the CPU meanwhile\n"
                  % (returncode, seconds, "?" if other_load is None
                     else "%.0f%%" % (100 * other_load)))
    return Completed(returncode, timed, seconds, log_path, other_load)


def lines_of(completed):
    return [line for _, line in completed.timed_lines]


def tail(completed, count=15):
    return "\n".join(lines_of(completed)[-count:])
