"""A disk that fills (here a real per-process file-size limit, RLIMIT_FSIZE as prlimit
--fsize sets it: each write past it fails with EFBIG) during a checkpoint save, a TFRecord
conversion, an export and a results write (issue #21): one line naming the path and the
cause, exit 2, nothing written before changed or lost, and the same command finishes once
there is room."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT, run_module, run_python, single_error_line
from utils import checkpoints
from utils.tf_compat import tf

# Every test here runs train.py, the converter or export under a file-size limit.
pytestmark = pytest.mark.slow


def file_bytes(directory, names=None):
    found = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and (names is None or name in names):
            with open(path, "rb") as handle:
                found[name] = handle.read()
    return found


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("full_disk_ds")), num_classes=3,
                              per_class=4, size=32)


# MobileNetV2 1.0 (3 classes, 32 px): its training checkpoint (weights and Momentum slots)
# is ~18 MB, the TensorBoard events file with the graph ~12.6 MB; a 15 MB limit lets the
# events through and stops the checkpoint save.
TRAIN_LIMIT = 15 * 1000 * 1000


def train_args(dataset_dir, train_dir, steps):
    return ["--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
            "--model_name=mobilenet_v2", "--train_image_size=32", "--batch_size=4",
            "--max_train_steps=%d" % steps, "--save_checkpoints_steps=2",
            "--bn_decay=0.9", "--learning_rate=0.01", "--seed=2", "--log_every_n_steps=2"]


@pytest.fixture(scope="module")
def trained_once(dataset_dir, tmp_path_factory):
    """A run that stopped at step 2 (model.ckpt-2), trained once for the module."""
    train_dir = str(tmp_path_factory.mktemp("full_disk_train") / "train")
    out = run_python("train.py", *train_args(dataset_dir, train_dir, 2))
    assert out.returncode == 0, out.stderr[-3000:]
    size = os.path.getsize(os.path.join(train_dir, "model.ckpt-2.data-00000-of-00001"))
    assert size > TRAIN_LIMIT  # the next save cannot fit
    return train_dir


@pytest.fixture
def trained(trained_once, tmp_path_factory):
    """A copy of that run for one test: tests train on in it, so none sees another's."""
    copy = str(tmp_path_factory.mktemp("full_disk_copy") / "train")
    shutil.copytree(trained_once, copy)
    # The Saver's state file names checkpoints by absolute path: point it at the copy's.
    tf.train.update_checkpoint_state(copy, os.path.join(copy, "model.ckpt-2"))
    return copy


def test_a_full_disk_during_a_checkpoint_save_stops_cleanly_and_resumes(dataset_dir,
                                                                        trained):
    train_dir = trained
    before = file_bytes(train_dir, ["model.ckpt-2.index", "model.ckpt-2.data-00000-of-00001"])
    out = run_python("train.py", *train_args(dataset_dir, train_dir, 6), fsize=TRAIN_LIMIT)
    line = single_error_line(out)
    # The save of step 4 is what failed: its staging folder is named, with the cause.
    assert "cannot write %s" % os.path.join(train_dir, "model.ckpt-4_temp") in line, line
    assert "File too large" in line and "run the same command again" in line
    assert file_bytes(train_dir, before) == before
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(train_dir)] == [
        "model.ckpt-2"]

    out = run_python("train.py", *train_args(dataset_dir, train_dir, 6))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "removed model.ckpt-4_temp (left by a save that did not finish)" in out.stdout
    assert "rank 0 resumes from %s at step 2" % os.path.join(train_dir, "model.ckpt-2") \
        in out.stdout
    assert checkpoints.checkpoint_global_step(tf.train.latest_checkpoint(train_dir)) == 6


def convert(images, output, **options):
    return run_module("datasets.build_tfrecords",
                      "--train_directory=" + os.path.join(images, "train"),
                      "--validation_directory=" + os.path.join(images, "validation"),
                      "--output_directory=" + output, "--train_shards=4",
                      "--validation_shards=1", **options)


def test_a_full_disk_during_a_conversion_keeps_the_complete_shards(dataset_dir, tmp_path):
    images = os.path.join(os.path.dirname(dataset_dir), "images")
    reference = str(tmp_path / "reference")
    assert convert(images, reference).returncode == 0
    shards = file_bytes(reference)
    train = [len(v) for k, v in shards.items() if k.startswith("train-")]
    validation = len(shards["validation-00000-of-00001"])
    assert max(train) < validation  # a limit between them stops only the last shard
    output = str(tmp_path / "records")
    line = single_error_line(convert(images, output,
                                     fsize=(max(train) + validation) // 2))
    assert "cannot write %s" % os.path.join(output, ".tmp-validation-00000-of-00001") \
        in line and "File too large" in line, line
    written = file_bytes(output)
    assert sorted(k for k in written if not k.startswith(".")) == sorted(
        k for k in shards if k.startswith("train-"))  # complete shards only
    assert all(written[k] == shards[k] for k in written if k.startswith("train-"))

    out = convert(images, output)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming the unfinished conversion" in out.stdout
    assert file_bytes(output) == shards


def test_a_full_disk_during_an_export_keeps_the_earlier_export(trained, tmp_path):
    output = str(tmp_path / "model.pb")
    args = ["--checkpoint_path=" + trained, "--format=frozen_pb", "--output=" + output]
    assert run_python("export_model.py", *args).returncode == 0
    before = file_bytes(str(tmp_path))
    line = single_error_line(run_python("export_model.py", *(args + ["--overwrite"]),
                                        fsize=1000 * 1000))
    assert "cannot write %s.partial: File too large" % output in line, line
    assert file_bytes(str(tmp_path)) == before  # the earlier export, no staging left
    saved_model = str(tmp_path / "saved_model")
    line = single_error_line(run_python(
        "export_model.py", "--checkpoint_path=" + trained, "--output=" + saved_model,
        fsize=1000 * 1000))
    assert "cannot write %s.partial/" % saved_model in line, line
    assert sorted(os.listdir(str(tmp_path))) == sorted(before)


WRITE_RESULTS = """
import resource, sys
from utils.errors import UserError
from utils.files import write_json
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_json(sys.argv[1], {"results": ["x" * 100] * 100})
except UserError as err:
    print(err)
"""


def test_a_full_disk_during_a_results_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "eval_results.json")
    with open(path, "w") as handle:
        handle.write('{"results": []}\n')
    done = subprocess.run([sys.executable, "-c", WRITE_RESULTS, path], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cannot write %s: File too large" % path), done.stdout
    assert open(path).read() == '{"results": []}\n'
    assert os.listdir(str(tmp_path)) == ["eval_results.json"]  # no temporary file left
