"""Silencing what native code prints straight to the process's stdout / stderr."""
import contextlib
import os
import sys


@contextlib.contextmanager
def silenced(enabled=True):
    """Points file descriptors 1 and 2 at /dev/null inside the block: the TFLite
    converter's C++ prints op statistics there that no Python logging level stops."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [null]:
            os.close(fd)
