"""Fixtures and helpers shared by several test modules."""
import atexit
import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile

import pytest

from tests.cli_helpers import ROOT
from utils.tf_compat import tf

# Training runs keep their graphs in the user's cache folder (graph_cache): give the suite,
# and the programs it starts, a fresh one instead.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="test_xdg_cache_")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


class ListHandler(logging.Handler):
    """Keeps the messages a logger emits, for tests to read."""

    def __init__(self):
        logging.Handler.__init__(self)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


# The npu_bridge stand-in (tests/npu_stub/README.md): behaves as the real one does on the
# host and records what it is given (the real one installs only in Huawei's image).
STUB = os.path.join(ROOT, "tests", "npu_stub")
# What npu_bridge reads from the environment; the run may set JOB_ID (devices.npu).
NPU_BRIDGE_ENVIRON = ("JOB_ID", "RANK_SIZE", "RANK_ID", "CM_WORKER_SIZE", "POD_NAME",
                      "RESTORE_FROM", "LOCAL_CHECKPOINT_DIR", "NPU_STUB_BRANCH")


@pytest.fixture
def npu_bridge(monkeypatch):
    """The stand-in importable for one test, freshly imported (its one-per-process job
    information included) with its records emptied, in an environment without npu_bridge's
    variables (restored afterwards, whatever the test sets); tf.distribute's strategies
    booby-trapped, since the NPU path must never build one."""
    for name in NPU_BRIDGE_ENVIRON:
        monkeypatch.setenv(name, "")  # remembered as it was, then removed for the test
        monkeypatch.delenv(name)
    monkeypatch.syspath_prepend(STUB)
    import npu_bridge as stub
    del stub.RECORDS[:]

    def forbidden(*args, **kwargs):
        raise AssertionError("the NPU path built a tf.distribute strategy")
    for name in ("MirroredStrategy",):
        monkeypatch.setattr(tf.distribute, name, forbidden)
    monkeypatch.setattr(tf.distribute.experimental, "MultiWorkerMirroredStrategy", forbidden)
    yield stub
    for name in [m for m in sys.modules if m == "npu_bridge" or m.startswith("npu_bridge.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def npu_dataset(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("npu_ds")), num_classes=3,
                              per_class=8, size=32, train_shards=2)


def made_once_per_run(tmp_path_factory, name, make):
    """``make(folder)``'s JSON-able result, made once per test run in a folder ``name``:
    under pytest-xdist (scripts/run_tests.sh) the first worker to ask makes it while the
    others wait on a lock, then all read the same folder."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, shared by its workers
    folder, done = base / name, base / (name + ".json")
    with open(str(base / (name + ".lock")), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if folder.exists():  # a worker that failed while making it
                shutil.rmtree(str(folder))
            folder.mkdir()
            done.write_text(json.dumps(make(str(folder))))
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """scikit-learn's digits as a 32-px JPEG tree (images/) and TFRecords (records/): the
    real small dataset the export and quantization tests train on (one copy per run)."""
    from datasets import build_tfrecords, digits_demo

    def make(root):
        digits_demo.write_digits_tree(os.path.join(root, "images"), image_size=32)
        build_tfrecords.convert(
            train_directory=os.path.join(root, "images", "train"),
            validation_directory=os.path.join(root, "images", "validation"),
            output_directory=os.path.join(root, "records"), train_shards=2,
            validation_shards=1, num_threads=1)
        return root
    return made_once_per_run(tmp_path_factory, "digits", make)


@pytest.fixture(scope="session")
def digits_float(digits, tmp_path_factory):
    """The trained float MobileNetV2-0.35 (32 px) of the digits that export,
    quantization and their evaluator tests share: its train_dir, which they only read
    (tests/digits_helpers.py: FLOAT_FLAGS, deterministic on one machine; runs on other
    CPUs round differently). 440 steps: top-1 0.922 on the 359 validation images here,
    0.866 on another CPU. One training per run, whichever worker asks first."""
    from tests import digits_helpers
    return made_once_per_run(
        tmp_path_factory, "digits_float_marker",
        lambda _: digits_helpers.train(digits, "float", *digits_helpers.FLOAT_FLAGS)[0])
