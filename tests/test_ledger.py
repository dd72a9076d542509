"""The checkpoint ledger on a real 6-step run with moving averages: the averaged
checkpoint is the numpy mean of its inputs, the ledger's rows and best, best/ holding
the chosen weights under the model's names, reruns skipping measured rows, exporting
best/, and one-line mistakes."""
import csv
import json
import os
import re

import numpy as np
import pytest

from datasets import dataset_factory
from evaluation import config as config_lib
from evaluation import ledger, sources
from evaluation import checkpoint_average
from evaluation.config import EvalConfig, LedgerConfig
from evaluation.evaluator import Evaluator
from tests.cli_helpers import evaluator_flags, run_python
from utils.checkpoints import EMA_SUFFIX, MODEL_SPEC_FILE, list_checkpoints
from utils.errors import UserError
from utils.files import write_json
from utils.tf_compat import tf

# Every test here trains or evaluates through TensorFlow programs: the whole tier only.
pytestmark = pytest.mark.slow

MODEL = "--model_name=mobilenet_v2_035"


class Lines(object):
    """A logger that keeps its lines."""

    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


def tensors(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return dict((name, reader.get_tensor(name))
                for name in reader.get_variable_to_shape_map())


def model_names(held):
    """The model's own variables (and global_step) among a training checkpoint's."""
    slots = checkpoint_average.optimizer_slots(held)
    return sorted(n for n in held if n not in slots and not n.endswith(EMA_SUFFIX))


def assert_holds_weights(best_prefix, source, ema):
    """best_prefix holds exactly source's model variables, from their moving averages
    when ``ema``, under the variables' own names."""
    held, original = tensors(best_prefix), tensors(source)
    names = model_names(original)
    assert sorted(held) == names
    for name in names:
        expected = original.get(name + EMA_SUFFIX, original[name]) if ema else original[name]
        np.testing.assert_array_equal(held[name], expected, err_msg=name)
    if ema:  # the moving averages really differ from the weights in this run
        assert any(not np.array_equal(held[n], original[n]) for n in names)


def eval_config(dataset_dir, eval_dir):
    """What the evaluator's flags in ``swept`` make."""
    return EvalConfig(
        dataset=dataset_factory.get_dataset("auto", dataset_dir), split="validation",
        model_name="mobilenet_v2_035", num_classes=3, labels_offset=0, image_size=32,
        preprocessing_name="inception", central_fraction=0.875, batch_size=4,
        max_num_batches=None, use_ema="auto", log_every_n_batches=10, eval_dir=eval_dir,
        data_threads=1, device="host", precision_mode=None)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Checkpoints at steps 2, 4 and 6 (a run from scratch writes no step 0), each
    with moving averages."""
    from tests.ds_helpers import write_tiny_dataset
    root = tmp_path_factory.mktemp("ledger")
    dataset_dir = write_tiny_dataset(str(root / "ds"), num_classes=3, per_class=4)
    train_dir = str(root / "train")
    # A small LR: batch 4 at 32 px leaves 1x1 maps for batch norm, and at 0.05 the loss
    # reached ~1000 by step 5 and NaN on CI's machine.
    out = run_python("train.py", "--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
                     MODEL, "--train_image_size=32", "--batch_size=4", "--bn_decay=0.9",
                     "--learning_rate=0.002", "--moving_average_decay=0.9",
                     "--save_checkpoints_steps=2", "--max_train_steps=6",
                     "--keep_checkpoint_max=3", "--seed=7")
    assert out.returncode == 0, out.stderr[-3000:]
    return dataset_dir, train_dir


@pytest.fixture(scope="module")
def swept(run_dir):
    dataset_dir, train_dir = run_dir
    out = run_python("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
                     "--dataset_dir=" + dataset_dir, MODEL, "--eval_image_size=32",
                     "--batch_size=4", "--ledger", "--average_last=2")
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_average_is_the_mean_of_its_inputs(run_dir, tmp_path):
    _, train_dir = run_dir
    checkpoints = list_checkpoints(train_dir)
    assert [os.path.basename(c) for c in checkpoints] == [
        "model.ckpt-2", "model.ckpt-4", "model.ckpt-6"]
    folder = str(tmp_path / "average_last_3")
    prefix, written = checkpoint_average.write_average(checkpoints, folder)
    assert written and prefix == os.path.join(folder, "model.ckpt-6")
    assert tf.train.latest_checkpoint(folder) == prefix
    inputs = [tensors(c) for c in checkpoints]
    averaged = tensors(prefix)
    slots = [n for n in inputs[-1] if n.endswith("/Momentum")]
    assert slots and set(averaged) == set(inputs[-1]) - set(slots)
    floats = [n for n in averaged if n != "global_step"]
    assert len([n for n in floats if n.endswith(EMA_SUFFIX)]) == 262
    for name in floats:
        mean = np.mean([t[name].astype(np.float64) for t in inputs], axis=0)
        assert averaged[name].dtype == np.float32
        np.testing.assert_allclose(averaged[name], mean, rtol=1e-6, atol=1e-6, err_msg=name)
    weights = "MobilenetV2/Conv/weights"
    assert not np.allclose(averaged[weights], inputs[-1][weights])  # the inputs differ
    assert averaged["global_step"] == 6
    with open(os.path.join(folder, MODEL_SPEC_FILE)) as copy, \
            open(os.path.join(train_dir, MODEL_SPEC_FILE)) as original:
        assert json.load(copy) == json.load(original)
    # Same inputs: kept as it is. Other inputs: remade.
    index_time = os.stat(prefix + ".index").st_mtime_ns
    assert checkpoint_average.write_average(checkpoints, folder) == (prefix, False)
    assert os.stat(prefix + ".index").st_mtime_ns == index_time
    assert checkpoint_average.write_average(checkpoints[1:], folder) == (prefix, True)
    np.testing.assert_allclose(
        tensors(prefix)[weights], (inputs[1][weights] + inputs[2][weights]) / 2, rtol=1e-6)
    assert sorted(os.listdir(str(tmp_path))) == ["average_last_3"]  # no .partial / .old


def test_ledger_rows_best_and_best_checkpoint(run_dir, swept, tmp_path):
    dataset_dir, train_dir = run_dir
    eval_dir = os.path.join(train_dir, "eval")
    with open(os.path.join(eval_dir, "ledger.json")) as handle:
        payload = json.load(handle)
    rows = payload["rows"]
    average = os.path.join(train_dir, "average_last_2", "model.ckpt-6")
    expected = []
    for step in (2, 4, 6):
        checkpoint = os.path.join(train_dir, "model.ckpt-%d" % step)
        expected += [(checkpoint, step, "raw"), (checkpoint, step, "ema")]
    expected += [(average, 6, "average_last_2"), (average, 6, "average_last_2_ema")]
    assert [(r["checkpoint"], r["global_step"], r["weights"]) for r in rows] == expected
    assert all(r["images"] == 6 and r["images_per_sec"] > 0 for r in rows)
    assert len(set(r["loss"] for r in rows)) > 4  # really different weights
    with open(os.path.join(eval_dir, "ledger.csv")) as handle:
        table = list(csv.reader(handle))
    assert tuple(table[0]) == ledger.CSV_COLUMNS == ledger.COLUMNS + ("device",)
    assert [(c, int(s), w, float(t1), float(l), d)
            for c, s, w, t1, _, l, _, _, d in table[1:]] == [
        (r["checkpoint"], r["global_step"], r["weights"], r["top1"], r["loss"], "host")
        for r in rows]
    assert payload["device"] == "host" and all(r["device"] == "host" for r in rows)
    # The average's inputs are the last 2 checkpoints, the run's own files untouched.
    assert [os.path.basename(c) for c in list_checkpoints(train_dir)] == [
        "model.ckpt-2", "model.ckpt-4", "model.ckpt-6"]
    with open(os.path.join(train_dir, "average_last_2", "average.json")) as handle:
        assert [i["global_step"] for i in json.load(handle)["inputs"]] == [4, 6]

    best = max(rows, key=lambda r: (r["top1"], -r["loss"], r["global_step"]))
    assert payload["best"] == best
    stdout = swept.stdout
    assert re.search(r"^ledger of %s: 3 checkpoints, 8 rows, 8 to measure, into \S+, on the "
                     r"host CPU$" % re.escape(train_dir), stdout, re.M), stdout
    assert [int(k) for k in re.findall(r"^ledger row (\d+)/8: ", stdout, re.M)] == list(
        range(1, 9))
    assert ("ledger best: checkpoint=%s weights=%s global_step=%d top1=%.4f top5=%.4f "
            "loss=%.4f images=6; wrote it to %s"
            % (best["checkpoint"], best["weights"], best["global_step"], best["top1"],
               best["top5"], best["loss"], os.path.join(train_dir, "best"))) in stdout
    header = [l for l in stdout.splitlines() if "checkpoint" in l and "images/s" in l]
    starred = [l for l in stdout.splitlines() if l.startswith("*  ")]
    assert len(header) == 1 and len(starred) == 1
    assert starred[0].split()[1:4] == [os.path.relpath(best["checkpoint"], train_dir),
                                       str(best["global_step"]), best["weights"]]

    best_dir = os.path.join(train_dir, "best")
    prefix = tf.train.latest_checkpoint(best_dir)
    assert prefix == os.path.join(best_dir, "model.ckpt-%d" % best["global_step"])
    with open(os.path.join(best_dir, "best.json")) as handle:
        info = json.load(handle)
    assert (info["source_checkpoint"], info["weights"], info["top1"], info["loss"]) == (
        best["checkpoint"], best["weights"], best["top1"], best["loss"])
    assert info["ledger"] == os.path.join(eval_dir, "ledger.json")
    assert os.path.exists(os.path.join(best_dir, MODEL_SPEC_FILE))
    assert_holds_weights(prefix, best["checkpoint"], best["weights"].endswith("ema"))
    # Read with no flags (use_ema=auto), it scores what its ledger row scored.
    result = Evaluator(eval_config(dataset_dir, str(tmp_path)), Lines()).evaluate(
        prefix)
    assert result["ema"] is False and result["global_step"] == best["global_step"]
    assert result["top1"] == best["top1"] and abs(result["loss"] - best["loss"]) < 1e-4

    # Whichever kind won here, the other kind is written as right (EMA: the moving
    # averages as the weights, under the weights' names).
    other = "raw" if best["weights"].endswith("ema") else "ema"
    row = [r for r in rows if r["weights"] == other][-1]
    folder, written = ledger.write_best(eval_config(dataset_dir, str(tmp_path)),
                                        str(tmp_path), row, "ledger.json")
    assert written and folder == str(tmp_path / "best")
    assert_holds_weights(tf.train.latest_checkpoint(folder), row["checkpoint"], other == "ema")


def test_rerun_skips_measured_rows(run_dir, swept):
    dataset_dir, train_dir = run_dir
    eval_dir = os.path.join(train_dir, "eval")
    path = os.path.join(eval_dir, "ledger.json")
    with open(path) as handle:
        before = json.load(handle)
    best_json = os.path.join(train_dir, "best", "best.json")
    average_index = os.path.join(train_dir, "average_last_2", "model.ckpt-6.index")
    stamps = [os.stat(best_json).st_mtime_ns, os.stat(average_index).st_mtime_ns]
    # As a sweep interrupted before its last row leaves it.
    write_json(path, dict(before, rows=before["rows"][:-1], best=None))
    log = Lines()
    with Evaluator(eval_config(dataset_dir, eval_dir), log) as evaluator:
        rows, best = ledger.sweep(
            evaluator, LedgerConfig(directory=train_dir, average_last=2), log)
    skipped = [l for l in log.lines if l.endswith("skipped")]
    measured = [l for l in log.lines if re.match(r"ledger row \d/8: .* top1=", l)]
    assert len(skipped) == 7 and len(measured) == 1
    assert measured[0].startswith(
        "ledger row 8/8: average_last_2/model.ckpt-6 average_last_2_ema: top1=")
    assert rows[:7] == before["rows"][:7]
    assert (rows[7]["top1"], rows[7]["weights"]) == (before["rows"][7]["top1"],
                                                      before["rows"][7]["weights"])
    assert "%s already holds the average" % os.path.join(train_dir, "average_last_2") in \
        log.lines[0]
    assert (best["checkpoint"], best["weights"]) == (before["best"]["checkpoint"],
                                                     before["best"]["weights"])
    assert log.lines[-1].endswith("already in %s" % os.path.join(train_dir, "best"))
    assert [os.stat(best_json).st_mtime_ns, os.stat(average_index).st_mtime_ns] == stamps


def test_export_best(run_dir, swept, tmp_path, monkeypatch):
    _, train_dir = run_dir
    output = str(tmp_path / "model.pb")
    out = run_python("export_model.py", "--checkpoint_path=" + os.path.join(train_dir, "best"),
                     "--format=frozen_pb", "--output=" + output)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(train_dir, "best", "best.json")) as handle:
        best = json.load(handle)
    with open(output + ".meta.json") as handle:
        meta = json.load(handle)
    assert meta["ledger_best"]["source_checkpoint"] == best["source_checkpoint"]
    assert meta["ledger_best"]["weights"] == best["weights"]
    assert meta["checkpoint"] == os.path.join(train_dir, "best",
                                              "model.ckpt-%d" % best["global_step"])
    assert ("weights: the ledger's best, %s weights of %s (top1=%.4f"
            % (best["weights"], best["source_checkpoint"], best["top1"])) in out.stdout
    # The frozen graph's constants are the chosen weights of the source checkpoint.
    graph_def = tf.GraphDef()
    with open(output, "rb") as handle:
        graph_def.ParseFromString(handle.read())
    constants = dict((n.name, tf.make_ndarray(n.attr["value"].tensor))
                     for n in graph_def.node if n.op == "Const")
    original = tensors(best["source_checkpoint"])
    names = [n for n in model_names(original) if n != "global_step"]
    assert len(names) == 262
    for name in names:
        source = name + EMA_SUFFIX if best["weights"].endswith("ema") else name
        np.testing.assert_array_equal(constants[name], original[source], err_msg=name)

    # A bare --checkpoint_path=best where there is no ./best.
    monkeypatch.chdir(str(tmp_path))
    with pytest.raises(UserError) as err:
        ledger.resolve_best_path("best")
    assert str(err.value) == (
        "--checkpoint_path=best: there is no ./best here; run the ledger "
        "(eval_image_classifier_mobilenet.py --checkpoint_path=<train_dir> --ledger) and "
        "pass --checkpoint_path=<train_dir>/best")


@pytest.mark.parametrize("k", [4, 1])
def test_bad_average_last_is_a_user_error(run_dir, k):
    """Made in-process as the evaluator makes its settings: flags, the disk, configs."""
    dataset_dir, train_dir = run_dir
    f = evaluator_flags("--checkpoint_path=" + train_dir, "--dataset_dir=" + dataset_dir,
                        MODEL, "--ledger", "--average_last=%d" % k)
    config_lib.check_flags(f)
    with pytest.raises(UserError) as err:
        config_lib.ledger_config_from_flags(f, sources.read_sources(f))
    assert str(err.value) == ("--average_last=%d must be between 2 and 3, the number of "
                              "checkpoints in %s" % (k, train_dir))
