"""Fixtures and helpers shared by several test modules."""
import atexit
import collections
import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

from tests.cli_helpers import ROOT
from utils.tf_compat import tf

# Training runs keep their graphs in the user's cache folder (graph_cache): give the suite,
# and the programs it starts, a fresh one instead.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="test_xdg_cache_")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


# The modules that take longest whole, longest first (measured with --durations on 2
# workers); the rest follow by their number of slow tests. A long module started last
# leaves one worker running it alone at the end.
LONGEST_MODULES = ("test_quantization", "test_npu_resume", "test_distributed", "test_reliability",
                   "test_evaluator", "test_graph_cache", "test_finetune", "test_devices_npu",
                   "test_full_disk")


def _module_rank(name, slow_tests):
    short = name.rpartition(".")[2]
    if short in LONGEST_MODULES:
        return (0, LONGEST_MODULES.index(short))
    return (1, -slow_tests)


def pytest_collection_modifyitems(session, config, items):
    """The longest modules first (LONGEST_MODULES, then the most slow tests);
    pytest_xdist_make_scheduler hands whole modules to the workers in this order."""
    slow = collections.Counter(item.module.__name__ for item in items
                               if item.get_closest_marker("slow"))
    first = {}
    for index, item in enumerate(items):
        first.setdefault(item.module.__name__, index)
    items.sort(key=lambda item: (_module_rank(item.module.__name__, slow[item.module.__name__]),
                                 first[item.module.__name__]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's --dist loadscope, but handing out modules in collection order:
    its own scheduler sorts them by their number of tests, which started the few long
    multi-process tests last."""
    from xdist.scheduler import LoadScopeScheduling

    class InCollectionOrder(LoadScopeScheduling):
        def _assign_work_unit(self, node):
            if not getattr(self, "_in_order", False):
                order = {}
                for nodeid in self.collection:
                    order.setdefault(self._split_scope(nodeid), len(order))
                for scope in sorted(self.workqueue, key=order.get):
                    self.workqueue.move_to_end(scope)
                self._in_order = True
            LoadScopeScheduling._assign_work_unit(self, node)

    return InCollectionOrder(config, log)


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
# What npu_bridge and tf_adapter read from the environment; the run may set JOB_ID and
# HCCL_EXEC_TIMEOUT (devices.npu).
NPU_BRIDGE_ENVIRON = ("JOB_ID", "RANK_SIZE", "RANK_ID", "CM_WORKER_SIZE", "POD_NAME",
                      "RESTORE_FROM", "LOCAL_CHECKPOINT_DIR", "NPU_STUB_BRANCH", "AOE_MODE",
                      "CM_CHIEF_IP", "CM_CHIEF_PORT", "CM_CHIEF_DEVICE", "CM_WORKER_IP",
                      "ASCEND_DEVICE_ID", "DEVICE_ID", "RANK_TABLE_FILE", "HCCL_EXEC_TIMEOUT",
                      "NPU_STUB_HCCL_PORT", "HCCL_CONNECT_TIMEOUT")


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
    for name in [m for m in sys.modules
                 if m.split(".")[0] in ("npu_bridge", "hccl")]:
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


@pytest.fixture(scope="session")
def digits_outlier(digits_float, tmp_path_factory):
    """``digits_float`` with one folded channel of its first depthwise layer 237 times
    the median (tests/qat_checks.py write_outlier_checkpoint): the checkpoint prefix of
    the case where per-tensor int8 loses, which the QAT tests fine-tune."""
    from tests import qat_checks
    prefix = made_once_per_run(
        tmp_path_factory, "digits_outlier",
        lambda folder: qat_checks.write_outlier_checkpoint(digits_float, folder))
    # Read back independently: the edit made the outlier (the median moves with it).
    assert qat_checks.outlier_ratio(prefix) > 100
    return prefix


@pytest.fixture(scope="session")
def digits_outlier_ranges(digits, digits_outlier, tmp_path_factory):
    """The train_dir of contrib's per-tensor ranges learned on ``digits_outlier`` without
    training it (20 steps at a learning rate of 1e-12, batch norm frozen): what per-tensor
    int8 makes of the outlier case, which the quantization tests compare with."""
    from tests import digits_helpers
    return made_once_per_run(
        tmp_path_factory, "digits_outlier_ranges_marker",
        lambda _: digits_helpers.train(
            digits, "outlier_per_tensor_ranges", "--max_train_steps=20",
            "--learning_rate=1e-12", "--freeze_bn_delay=0", "--restore_path=" + digits_outlier,
            "--restore_exclude=none", "--quantize_delay=0")[0])


@pytest.fixture(scope="module")
def validation_images(digits):
    """The 359 validation digits preprocessed as evaluation does, with their labels (the
    ONNX QDQ tests')."""
    from dataloader import image_files
    folder = os.path.join(digits, "images", "validation")
    paths = image_files.list_image_files([folder])
    _, images = next(image_files.image_batches(paths, 32, len(paths)))
    labels = [int(os.path.basename(os.path.dirname(p))) for p in paths]
    return images, np.array(labels)


@pytest.fixture(scope="session")
def digits_qat(digits, digits_float, tmp_path_factory):
    """The QAT fine-tune of ``digits_float`` (the references' second start:
    tests/digits_helpers.py, QAT_FLAGS) that tests/test_quantization.py and
    tests/test_quantization_onnx.py share: [its train_dir, which they only read (the
    ledger test adds best/ beside its checkpoints), train.py's stdout]. One training
    per run, whichever worker asks first."""
    from tests import digits_helpers

    def make(_):
        train_dir, out = digits_helpers.train(
            digits, "qat_finetune", "--restore_path=" + digits_float,
            *digits_helpers.QAT_FLAGS)
        return [train_dir, out.stdout]
    return made_once_per_run(tmp_path_factory, "digits_qat_marker", make)


# The padded-evaluation case: a split whose size no usual batch size divides.
THOUSAND_AND_ONE = 1001


@pytest.fixture(scope="session")
def thousand_and_one(tmp_path_factory):
    """A 1,001-image validation split the evaluator tells apart, and its logits computed
    another way: {"records", "checkpoint", "labels", "logits"}.

    The images: 7 classes x 143, 12 px JPEGs written by tests/ds_helpers and converted by
    datasets.build_tfrecords into 3 shards, then stored as PNG (reference_eval.png_copy:
    TensorFlow and Pillow decode the same pixels). The checkpoint: MobileNetV2-0.35 at
    32 px with seeded random weights (He-scaled, so each image has features of its own)
    and a head fitted by ridge regression on every other image's features: on this CPU
    999 of the 1,001 right, the top two logits of each image at least 0.06 apart. The
    logits: Pillow's pixels, tests/reference_eval's numpy preprocessing, one placeholder
    batch of all 1,001 (no data_provider, no evaluator, no padding)."""
    from nets import nets_factory
    from tests import reference_eval
    from tests.ds_helpers import write_tiny_dataset
    root = tmp_path_factory.mktemp("thousand_and_one")
    jpeg = write_tiny_dataset(str(root / "jpeg"), num_classes=7, per_class=1, size=12,
                              split_counts={"train": 1, "validation": 143},
                              train_shards=1, validation_shards=3)
    records = reference_eval.png_copy(jpeg, str(root / "records"))
    pixels, labels = reference_eval.read_split(records)
    assert len(labels) == THOUSAND_AND_ONE
    images = np.stack([reference_eval.eval_image(p, 32, 0.875) for p in pixels])
    checkpoint = str(root / "model" / "model.ckpt-0")
    rng = np.random.RandomState(4)
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, [None, 32, 32, 3])
        logits, end_points = nets_factory.get_network_fn("mobilenet_v2_035", 7)(inputs)
        tf.train.get_or_create_global_step()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for var in tf.global_variables():
                name, shape = var.op.name, var.shape.as_list()
                if name.endswith("weights") and not name.startswith("MobilenetV2/Logits/"):
                    fan_in = np.prod(shape[:2] if "depthwise" in name else shape[:-1])
                    var.load(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
                             .astype(np.float32), sess)
            features = sess.run(end_points["global_pool"], {inputs: images})
            design = np.hstack([features.reshape(len(images), -1),
                                np.ones((len(images), 1))])[::2]
            head = np.linalg.solve(design.T.dot(design) + np.eye(design.shape[1]),
                                   design.T.dot(np.eye(7)[labels[::2]]))
            weights, biases = [v for v in tf.global_variables()
                               if v.op.name.startswith("MobilenetV2/Logits/")]
            weights.load(head[:-1].reshape(weights.shape.as_list()).astype(np.float32), sess)
            biases.load(head[-1].astype(np.float32), sess)
            expected = sess.run(logits, {inputs: images}).astype(np.float64)
            tf.train.Saver().save(sess, checkpoint)
    return {"records": records, "checkpoint": checkpoint, "labels": labels,
            "logits": expected}
