"""What the figures were measured on: CPU, cores, memory, versions, and how busy the
machine was with work other than ours (a busy neighbour halves CPU throughput, so the
report says so instead of leaving a reader to guess)."""
import os
import platform
import resource
import subprocess
import time


def _first_value(path, key):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except (IOError, OSError):
        pass
    return None


def describe():
    memory_kib = _first_value("/proc/meminfo", "MemTotal")
    memory_gib = None
    if memory_kib:
        memory_gib = round(int(memory_kib.split()[0]) / 1024.0 / 1024.0, 1)
    return {"cpu_model": _first_value("/proc/cpuinfo", "model name") or platform.processor(),
            "cores": os.cpu_count(), "memory_gib": memory_gib,
            "platform": platform.platform()}


def package_versions(names):
    """Installed versions of ``names`` in this interpreter's environment, without
    importing them (TensorFlow's import alone takes seconds)."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        return {}
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except Exception:  # PackageNotFoundError and friends
            pass
    return found


def git_commit(repo_root):
    try:
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"],
                                         cwd=repo_root, stderr=subprocess.DEVNULL)
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD"], cwd=repo_root,
                                stderr=subprocess.DEVNULL) != 0
        return commit.decode().strip() + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_jiffies():
    """(busy, total) jiffies over all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (IOError, OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


class LoadMeter(object):
    """Share of the machine's CPU time that others used between start() and stop():
    all busy time minus this process's and its children's."""

    def start(self):
        self._jiffies = _cpu_jiffies()
        self._ours = self._our_seconds()
        self._wall = time.time()

    @staticmethod
    def _our_seconds():
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def stop(self):
        """Fraction (0..1) of all cores busy with other work, or None if unknown."""
        end = _cpu_jiffies()
        if self._jiffies is None or end is None:
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = (end[0] - self._jiffies[0]) / float(hz)
        capacity = (end[1] - self._jiffies[1]) / float(hz)
        ours = self._our_seconds() - self._ours
        if capacity <= 0:
            return None
        return max(0.0, min(1.0, (busy - ours) / capacity))


def idle_share_of_others(seconds=2.0):
    """Other work's share of the CPU over a short idle sample (before the run)."""
    meter = LoadMeter()
    meter.start()
    time.sleep(seconds)
    return meter.stop()
