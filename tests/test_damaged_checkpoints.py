"""Damaged checkpoints (issue #21), with real files cut, garbled and removed: each fault is
found before use, and every command says so in one line and loses nothing. Training
resumes from the newest intact checkpoint and keeps the damaged files aside; the
evaluator's sweeps skip and record them; export, predict and --restore_path name them."""
import json
import os
import shutil

import pytest

from evaluation import ledger
from tests.cli_helpers import run_python, single_error_line
from utils import checkpoint_health, checkpoints
from utils.errors import UserError
from utils.tf_compat import tf

MODEL = ["--model_name=mobilenet_v2_035", "--train_image_size=32"]
DATA = ".data-00000-of-00001"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("damaged_ds")), num_classes=3,
                              per_class=4, size=32)


def train_args(dataset_dir, train_dir, steps, *extra):
    return (["--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
             "--max_train_steps=%d" % steps, "--save_checkpoints_steps=2", "--batch_size=4",
             "--learning_rate=0.01", "--bn_decay=0.9", "--seed=3", "--log_every_n_steps=2"]
            + MODEL + list(extra))


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory):
    """A training directory holding model.ckpt-2 and model.ckpt-4 (never changed: each
    test works on a copy)."""
    train_dir = str(tmp_path_factory.mktemp("damaged_train") / "train")
    out = run_python("train.py", *train_args(dataset_dir, train_dir, 4))
    assert out.returncode == 0, out.stderr[-3000:]
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(train_dir)] == [
        "model.ckpt-2", "model.ckpt-4"]
    return train_dir


def copy_of(trained, tmp_path):
    train_dir = str(tmp_path / "train")
    shutil.copytree(trained, train_dir)
    return train_dir


def truncate(path, size=1000):
    with open(path, "r+b") as handle:
        handle.truncate(size)


def garble(path, offset=None):
    """Overwrites 16 bytes in the middle of the file, keeping its size."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.seek(size // 2 if offset is None else offset)
        handle.write(b"\xde\xad\xbe\xef" * 4)


def file_bytes(directory):
    """{relative path: content} of every file under ``directory``."""
    found = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, directory)] = handle.read()
    return found


# ----------------------------------------------------------------------------- detection

FAULTS = [
    ("truncated data", lambda p: truncate(p + DATA), False, "cut short"),
    ("garbled data", lambda p: garble(p + DATA), True, "Checksum does not match"),
    ("garbage index", lambda p: open(p + ".index", "wb").write(b"\0garbage" * 64), False,
     "index does not read"),
    ("truncated index", lambda p: truncate(p + ".index", 40), False, "index does not read"),
    ("missing data", lambda p: os.remove(p + DATA), False, "is missing"),
    ("missing index", lambda p: os.remove(p + ".index"), False, "index file"),
]


@pytest.mark.parametrize("name, fault, needs_full_read, words", FAULTS,
                         ids=[f[0] for f in FAULTS])
def test_each_fault_is_found(trained, tmp_path, name, fault, needs_full_read, words):
    prefix = os.path.join(copy_of(trained, tmp_path), "model.ckpt-4")
    assert checkpoint_health.damage(prefix, full=True) is None  # whole before
    fault(prefix)
    cheap = checkpoint_health.damage(prefix)
    full = checkpoint_health.damage(prefix, full=True)
    assert full and words in full, full
    # Bytes changed in place keep every size: only reading them back finds them.
    assert (cheap is None) == needs_full_read, cheap


def test_the_cheap_check_measures_sizes_against_the_index(trained, tmp_path):
    """The index lists exactly the data file's bytes (float32 and int64 tensors, no
    padding), so one byte more or less is found without reading the data."""
    prefix = os.path.join(copy_of(trained, tmp_path), "model.ckpt-4")
    reader = tf.train.load_checkpoint(prefix)
    listed = sum(int(tf.TensorShape(shape).num_elements()) * dtype.size for shape, dtype in
                 zip(reader.get_variable_to_shape_map().values(),
                     [reader.get_variable_to_dtype_map()[n]
                      for n in reader.get_variable_to_shape_map()]))
    assert os.path.getsize(prefix + DATA) == listed
    with open(prefix + DATA, "ab") as handle:
        handle.write(b"\0")
    assert "not its data" in checkpoint_health.damage(prefix)
    truncate(prefix + DATA, listed - 1)
    assert "cut short" in checkpoint_health.damage(prefix)


def test_repair_moves_damaged_ones_aside_and_resumes_from_the_newest_intact(trained,
                                                                            tmp_path):
    train_dir = copy_of(trained, tmp_path)
    newest = os.path.join(train_dir, "model.ckpt-4")
    garble(newest + DATA)
    lines = checkpoints.repair_checkpoints(train_dir)
    assert len(lines) == 1 and "model.ckpt-4 is damaged" in lines[0] \
        and "resuming from model.ckpt-2" in lines[0], lines
    assert tf.train.latest_checkpoint(train_dir).endswith("model.ckpt-2")
    aside = os.path.join(train_dir, checkpoints.DAMAGED_DIR)
    assert sorted(os.listdir(aside)) == ["model.ckpt-4" + DATA, "model.ckpt-4.index"]
    assert checkpoints.repair_checkpoints(train_dir) == []  # nothing more to do


def test_a_state_file_naming_files_that_are_gone(trained, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    for suffix in (DATA, ".index"):
        os.remove(os.path.join(train_dir, "model.ckpt-4" + suffix))
    lines = checkpoints.repair_checkpoints(train_dir)
    assert "model.ckpt-4 is damaged (its index file model.ckpt-4.index is missing)" \
        in lines[0]
    assert tf.train.latest_checkpoint(train_dir).endswith("model.ckpt-2")


def test_none_intact_stops_without_touching_a_file(trained, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    for step in (2, 4):
        truncate(os.path.join(train_dir, "model.ckpt-%d%s" % (step, DATA)))
    before = file_bytes(train_dir)
    with pytest.raises(UserError, match="no intact checkpoint in .*--allow_fresh_start"):
        checkpoints.repair_checkpoints(train_dir)
    assert file_bytes(train_dir) == before


# ----------------------------------------------------------------------------- commands

@pytest.mark.slow
def test_train_resumes_from_the_newest_intact_checkpoint(dataset_dir, trained, tmp_path):
    """The user's case: the newest checkpoint's data file is 1,000 bytes of a copy."""
    train_dir = copy_of(trained, tmp_path)
    truncate(os.path.join(train_dir, "model.ckpt-4" + DATA))
    kept = open(os.path.join(train_dir, "model.ckpt-4" + DATA), "rb").read()
    out = run_python("train.py", *train_args(dataset_dir, train_dir, 6))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    moved = [l for l in out.stdout.splitlines() if l.startswith("checkpoint ")]
    assert len(moved) == 1 and "model.ckpt-4" in moved[0] \
        and "resuming from model.ckpt-2" in moved[0], out.stdout[-3000:]
    assert "rank 0 resumes from %s at step 2" % os.path.join(train_dir, "model.ckpt-2") \
        in out.stdout
    aside = os.path.join(train_dir, checkpoints.DAMAGED_DIR, "model.ckpt-4" + DATA)
    assert open(aside, "rb").read() == kept  # kept as it was, never used again
    assert checkpoints.list_checkpoints(train_dir)[-1].endswith("model.ckpt-6")
    assert checkpoints.checkpoint_global_step(tf.train.latest_checkpoint(train_dir)) == 6


@pytest.mark.slow
def test_train_with_no_intact_checkpoint_stops_or_starts_fresh_when_told(
        dataset_dir, trained, tmp_path):
    train_dir = copy_of(trained, tmp_path)
    for step in (2, 4):
        truncate(os.path.join(train_dir, "model.ckpt-%d%s" % (step, DATA)))
    before = file_bytes(train_dir)
    line = single_error_line(run_python("train.py", *train_args(dataset_dir, train_dir, 4)))
    assert "no intact checkpoint" in line and "--allow_fresh_start" in line
    assert {k: v for k, v in file_bytes(train_dir).items()
            if not k.endswith(".log")} == {k: v for k, v in before.items()
                                           if not k.endswith(".log")}
    out = run_python("train.py", *train_args(dataset_dir, train_dir, 2,
                                             "--allow_fresh_start"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training starts from step 0" in out.stdout
    assert sorted(os.listdir(os.path.join(train_dir, checkpoints.DAMAGED_DIR))) == sorted(
        ["checkpoint"] + ["model.ckpt-%d%s" % (s, e) for s in (2, 4) for e in
                          (DATA, ".index")])
    assert checkpoints.checkpoint_global_step(tf.train.latest_checkpoint(train_dir)) == 2


def eval_args(dataset_dir, checkpoint_path, eval_dir, *extra):
    return (["--checkpoint_path=" + checkpoint_path, "--dataset_dir=" + dataset_dir,
             "--eval_dir=" + eval_dir, "--batch_size=4"] + list(extra))


@pytest.mark.slow
def test_evaluator_names_a_damaged_checkpoint_and_sweeps_skip_it(dataset_dir, trained,
                                                                tmp_path):
    train_dir = copy_of(trained, tmp_path)
    garble(os.path.join(train_dir, "model.ckpt-4" + DATA))
    eval_dir = str(tmp_path / "eval")
    line = single_error_line(run_python(
        "eval_image_classifier_mobilenet.py", *eval_args(dataset_dir, train_dir, eval_dir)))
    assert "checkpoint %s is damaged" % os.path.join(train_dir, "model.ckpt-4") in line
    assert "Checksum does not match" in line

    out = run_python("eval_image_classifier_mobilenet.py",
                     *eval_args(dataset_dir, train_dir, eval_dir, "--eval_all_checkpoints"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "warning: skipped %s: damaged" % os.path.join(train_dir, "model.ckpt-4") \
        in out.stdout
    with open(os.path.join(eval_dir, "eval_results.json")) as handle:
        results = json.load(handle)
    assert [r["global_step"] for r in results["results"]] == [2]
    assert [s["checkpoint"] for s in results["skipped"]] == [
        os.path.join(train_dir, "model.ckpt-4")]

    ledger_dir = str(tmp_path / "ledger")
    out = run_python("eval_image_classifier_mobilenet.py",
                     *eval_args(dataset_dir, train_dir, ledger_dir, "--ledger"))
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(ledger_dir, ledger.LEDGER_JSON)) as handle:
        recorded = json.load(handle)
    assert [r["global_step"] for r in recorded["rows"]] == [2]
    assert [s["checkpoint"] for s in recorded["skipped"]] == [
        os.path.join(train_dir, "model.ckpt-4")]
    assert "Checksum does not match" in recorded["skipped"][0]["problem"]


@pytest.mark.slow
def test_export_stops_at_a_checkpoint_tensorflow_would_restore(trained, tmp_path):
    """A data file one byte longer than its index lists (not the data the index was
    written with): TensorFlow reads each tensor at its offset and restores it whole, so
    only the check keeps the export from being written."""
    prefix = os.path.join(copy_of(trained, tmp_path), "model.ckpt-4")
    with open(prefix + DATA, "ab") as handle:
        handle.write(b"\0")
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)  # reads back, its CRC32C verified
    output = str(tmp_path / "export.pb")
    out = run_python("export_model.py", "--checkpoint_path=" + prefix, "--output=" + output,
                     "--format=frozen_pb")
    assert not os.path.exists(output), out.stdout[-2000:]
    line = single_error_line(out)
    assert "checkpoint %s is damaged" % prefix in line and "not its data" in line, line


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "restore_path"])
def test_predict_and_restore_path_name_the_damaged_file(dataset_dir, trained, tmp_path,
                                                        command):
    train_dir = copy_of(trained, tmp_path)
    prefix = os.path.join(train_dir, "model.ckpt-4")
    truncate(prefix + DATA)
    if command == "predict":
        image = os.path.join(os.path.dirname(dataset_dir), "images", "train")
        image = os.path.join(image, sorted(os.listdir(image))[0])
        image = os.path.join(image, sorted(os.listdir(image))[0])
        out = run_python("predict.py", "--model=" + prefix, image)
    else:
        out = run_python("train.py", *train_args(dataset_dir, str(tmp_path / "ft"), 2,
                                                 "--restore_path=" + prefix))
    line = single_error_line(out)
    assert "checkpoint %s is damaged" % prefix in line and "cut short" in line, line
