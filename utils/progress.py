"""Rates and ETAs of long work (training steps, evaluated images, predicted files)."""
import datetime
import time


def format_eta(seconds):
    """H:MM:SS for a number of seconds; "?" when unknown (None, NaN, negative)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


class ProgressMeter(object):
    """Images/sec and ETA over the interval since the last report."""

    def __init__(self, total_units, images_per_unit):
        self._total = total_units
        self._images_per_unit = images_per_unit
        self._last_time = None
        self._last_done = None

    def start(self, done):
        self._last_time = time.time()
        self._last_done = done

    def update(self, done):
        """Returns (images_per_sec, eta_seconds) since the previous update."""
        now = time.time()
        elapsed = max(now - self._last_time, 1e-9)
        units = done - self._last_done
        self._last_time, self._last_done = now, done
        if units <= 0:
            return 0.0, None
        rate = units / elapsed
        return rate * self._images_per_unit, max(self._total - done, 0) / rate
