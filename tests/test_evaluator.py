"""The evaluator against a real short training run: exact counts, numpy-checked
accuracy, EMA weights, every / new checkpoints, periodic eval inside train.py."""
import json
import logging
import os
import re
import time

import numpy as np
import pytest

from datasets import dataset_factory
from evaluation import watch
from evaluation.config import EvalConfig
from evaluation.evaluator import Evaluator
import logger as logger_lib
from tests import reference_eval
from tests.cli_helpers import evaluator_config, run_python as run, single_error_line
from tests.conftest import ListHandler
from utils.checkpoints import EMA_SUFFIX
from utils.errors import UserError
from utils.tf_compat import tf

MODEL = "--model_name=mobilenet_v2_035"
RESULT = re.compile(r"^eval result: checkpoint=(\S+) global_step=(\d+) top1=(\d\.\d{4}) "
                    r"top5=(\d\.\d{4}) images=(\d+) loss=(\d+\.\d{4}) device=host$",
                    re.M)


def train_args(dataset_dir, train_dir, *extra):
    return ["--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir, MODEL,
            "--train_image_size=32", "--batch_size=4", "--learning_rate=0.01",
            "--bn_decay=0.9", "--moving_average_decay=0.9", "--log_every_n_steps=2",
            "--seed=3"] + list(extra)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """6 classes (so top-5 can miss); 12 validation images: not a multiple of 5."""
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("eval_ds")), num_classes=6,
                              per_class=4, size=32)


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory):
    """2 epochs of 6 steps, checkpoints every 4 steps, evaluation after each epoch."""
    train_dir = str(tmp_path_factory.mktemp("eval_train"))
    out = run("train.py", *train_args(dataset_dir, train_dir, "--max_epoch=2",
                                      "--save_checkpoints_steps=4", "--eval_every_n_epochs=1",
                                      "--eval_image_size=32"))
    assert out.returncode == 0, out.stderr[-3000:]
    return train_dir, out


def eval_config(dataset_dir, eval_dir, use_ema="auto", batch_size=5):
    return EvalConfig(
        dataset=dataset_factory.get_dataset("auto", dataset_dir), split="validation",
        model_name="mobilenet_v2_035", num_classes=6, labels_offset=0, image_size=32,
        preprocessing_name="inception", central_fraction=0.875, batch_size=batch_size,
        max_num_batches=None, use_ema=use_ema, log_every_n_batches=1, eval_dir=eval_dir,
        data_threads=1, device="host", precision_mode=None)


@pytest.mark.slow
def test_train_evaluates_every_epoch_in_process(trained):
    train_dir, out = trained
    steps = [int(m.group(2)) for m in RESULT.finditer(out.stdout)]
    assert steps == [6, 12]
    results = json.load(open(os.path.join(train_dir, "eval", "eval_results.json")))
    assert [r["global_step"] for r in results["results"]] == [6, 12]
    assert all(r["images"] == 12 and r["ema"] for r in results["results"])
    assert results["best"]["top1"] == max(r["top1"] for r in results["results"])


@pytest.mark.slow
def test_a_training_directory_needs_no_model_flags(trained, dataset_dir, tmp_path):
    """Network, classes and eval size come from train.py's model_spec.json; the result is
    the one training's own evaluation recorded for the same checkpoint."""
    train_dir, _ = trained
    out = run("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
              "--dataset_dir=" + dataset_dir, "--eval_dir=" + str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert ("evaluating mobilenet_v2_035 (6 classes) on 12 validation images of %s at 32 px, "
            "on the host CPU (npu_bridge does not import)" % dataset_dir) in out.stdout
    in_training = json.load(open(os.path.join(train_dir, "eval", "eval_results.json")))
    last = in_training["results"][-1]
    match = RESULT.search(out.stdout)
    assert (int(match.group(2)), float(match.group(3))) == (12, round(last["top1"], 4))


@pytest.mark.slow
def test_accuracy_matches_numpy_over_the_same_records(trained, dataset_dir, tmp_path):
    """The evaluator's top-1 / top-5 / loss against a second route (tests/reference_eval):
    records parsed in Python, pixels decoded by Pillow and preprocessed in numpy, a
    fresh network restored from the moving averages by a plain Saver, scores in numpy.
    On PNG copies of the validation records, so both routes decode the same pixels."""
    train_dir, _ = trained
    checkpoint = tf.train.latest_checkpoint(train_dir)
    records = reference_eval.png_copy(dataset_dir, str(tmp_path / "png_records"))
    config = eval_config(records, str(tmp_path / "eval"))
    evaluator = Evaluator(config, logger_lib.get_logger())
    result = evaluator.evaluate(checkpoint)

    pixels, labels = reference_eval.read_split(records)
    assert len(labels) == 12 and sorted(labels) == sorted(list(range(6)) * 2)
    images = np.stack([reference_eval.eval_image(p, 32, 0.875) for p in pixels])
    # The evaluator reads the same: order, labels, pixels; the partial last batch kept.
    batches = reference_eval.evaluator_batches(evaluator)  # without the padding
    assert [len(b[1]) for b in batches] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    inputs = np.concatenate([b[0] for b in batches])
    np.testing.assert_allclose(inputs, images, rtol=0, atol=1e-6)

    # Trained with --moving_average_decay=0.9: use_ema=auto restores the shadows.
    logits = reference_eval.logits("mobilenet_v2_035", 6, checkpoint, images, use_ema=True,
                                   batch_size=5)
    # The inputs match bit for bit here, and so do the logits (measured: 0.0 apart). A
    # platform rounding the preprocessing otherwise differs by an ulp, which this barely
    # trained network magnifies to ~1e-3 in the logits: a hit or miss decided by less
    # than the tolerance is then left open.
    tolerance = 1e-5 if np.array_equal(inputs, images) else 1e-2
    expected = reference_eval.scores(logits, labels, tolerance)
    assert result["images"] == 12 and result["ema"] is True
    for k in ("top1", "top5"):
        low, high = expected[k + "_range"]
        assert low <= result[k] <= high, (k, result[k], expected)
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert result["checkpoint"] == checkpoint and result["global_step"] == 12


@pytest.mark.slow
@pytest.mark.parametrize("use_ema, source_suffix", [("auto", EMA_SUFFIX), ("true", EMA_SUFFIX),
                                                    ("false", "")])
def test_moving_averages_are_the_weights_restored(trained, dataset_dir, tmp_path, use_ema,
                                                  source_suffix):
    train_dir, _ = trained
    checkpoint = tf.train.latest_checkpoint(train_dir)
    reader = tf.train.load_checkpoint(checkpoint)
    name = "MobilenetV2/Conv/weights"
    assert not np.allclose(reader.get_tensor(name), reader.get_tensor(name + EMA_SUFFIX))
    evaluator = Evaluator(eval_config(dataset_dir, str(tmp_path), use_ema),
                                     logger_lib.get_logger())
    with tf.Graph().as_default():
        evaluator.build_logits()
        with tf.Session() as sess:
            used = evaluator.restore(sess, checkpoint)
            restored = sess.run(tf.global_variables(name)[0])
    assert used == (source_suffix == EMA_SUFFIX)
    np.testing.assert_array_equal(restored, reader.get_tensor(name + source_suffix))


@pytest.mark.slow
def test_eval_all_checkpoints_oldest_first(trained, dataset_dir, tmp_path):
    train_dir, _ = trained
    out = run("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
              "--dataset_dir=" + dataset_dir, MODEL, "--eval_image_size=32", "--batch_size=5",
              "--eval_all_checkpoints", "--eval_dir=" + str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    evaluated = [m.group(1) for m in RESULT.finditer(out.stdout)]
    # Each epoch's training call (6 steps) saves 4 steps after it starts and at its end:
    # steps 4, 6, 10, 12; the checkpoints in the folder, read from its .index files.
    steps = [int(m.group(2)) for m in RESULT.finditer(out.stdout)]
    assert steps == [4, 6, 10, 12]
    on_disk = sorted(int(re.match(r"model\.ckpt-(\d+)\.index$", n).group(1))
                     for n in os.listdir(train_dir) if n.endswith(".index"))
    assert evaluated == [os.path.join(train_dir, "model.ckpt-%d" % s) for s in on_disk]
    assert all(int(m.group(5)) == 12 for m in RESULT.finditer(out.stdout))
    events = [f for f in os.listdir(str(tmp_path)) if f.startswith("events.")]
    assert events, "TensorBoard summaries missing"


def scored_steps(eval_dir):
    """Global steps in eval_results.json, read as plain JSON (the watch writes it whole)."""
    try:
        with open(os.path.join(eval_dir, "eval_results.json")) as handle:
            return [r["global_step"] for r in json.load(handle)["results"]]
    except (IOError, OSError):
        return []


@pytest.mark.slow
def test_watch_follows_a_live_training_run(dataset_dir, tmp_path):
    """Training in two calls: checkpoints 2 and 4 wait when the watch starts; the call
    writing 6 and 8 starts only once the watch has scored 4. So checkpoints before the
    last are scored while training goes on (built, not left to a race), each once, oldest
    first, none skipped when several arrive together."""
    train_dir = str(tmp_path / "train")
    eval_dir = str(tmp_path / "eval")

    def train(steps):
        out = run("train.py", *train_args(dataset_dir, train_dir, "--save_checkpoints_steps=2",
                                          "--max_train_steps=%d" % steps))
        assert out.returncode == 0, out.stderr[-3000:]
    train(4)
    watcher = run("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
                  "--dataset_dir=" + dataset_dir, MODEL, "--eval_image_size=32",
                  "--batch_size=5", "--watch", "--watch_interval=0.5", "--watch_timeout=300",
                  "--final_step=8", "--eval_dir=" + eval_dir, background=True)
    with watcher:
        try:
            deadline = time.time() + 300
            while 4 not in scored_steps(eval_dir) and time.time() < deadline:
                assert watcher.poll() is None, watcher.communicate()
                time.sleep(0.1)
            assert scored_steps(eval_dir) == [2, 4]
            assert not os.path.exists(os.path.join(train_dir, "model.ckpt-6.index"))
            train(8)
            out, err = watcher.communicate(timeout=600)
        finally:
            watcher.kill()  # only when the test failed before it ended
    assert watcher.returncode == 0, err[-3000:]
    steps = [int(m.group(2)) for m in RESULT.finditer(out)]
    assert steps == [2, 4, 6, 8] == scored_steps(eval_dir), out
    on_disk = sorted(int(re.match(r"model\.ckpt-(\d+)\.index$", n).group(1))
                     for n in os.listdir(train_dir) if n.endswith(".index"))
    assert on_disk == steps
    assert "done watching" in out
    # A second watch repeats nothing: the final step is already evaluated.
    again = run("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
                "--dataset_dir=" + dataset_dir, MODEL, "--eval_image_size=32", "--watch",
                "--final_step=8", "--eval_dir=" + eval_dir)
    assert again.returncode == 0 and not RESULT.search(again.stdout)


@pytest.mark.slow
def test_bad_eval_inputs_are_user_errors(trained, dataset_dir, tmp_path):
    """Mistakes the flags, the dataset or the restore find, made in-process as the
    evaluator makes them: each a UserError, which the command prints as its one line."""
    from tests.ds_helpers import write_tiny_dataset
    train_dir, _ = trained
    only_train = write_tiny_dataset(str(tmp_path / "only_train"), num_classes=6, per_class=1,
                                    split_counts={"train": 1})
    cases = [
        (dict(model_name="mobilenet_v2_050", dataset_dir=dataset_dir),
         r"MobilenetV2/\S+ has shape \[.*\] but the model expects \["),
        (dict(model_name="mobilenet_v2_035", dataset_dir=only_train), "validation"),
        (dict(model_name="mobilenet_v2_035", dataset_dir=dataset_dir, batch_size=0),
         "--batch_size=0"),
        (dict(model_name="mobilenet_v2_035", dataset_dir=dataset_dir, num_classes=4),
         "shape"),
    ]
    for given, pattern in cases:
        with pytest.raises(UserError, match=pattern):
            config = evaluator_config(checkpoint_path=train_dir, eval_image_size=32,
                                      eval_dir=str(tmp_path / "e"), **given)
            with Evaluator(config, logger_lib.get_logger()) as evaluator:
                evaluator.evaluate(tf.train.latest_checkpoint(train_dir))


def test_corrupt_model_spec_is_a_user_error(dataset_dir, tmp_path):
    (tmp_path / "model_spec.json").write_text("{not json")
    with pytest.raises(UserError) as err:
        evaluator_config(checkpoint_path=str(tmp_path), dataset_dir=dataset_dir)
    line = str(err.value)
    assert "model_spec.json is not valid JSON" in line and "repair or delete it" in line
    assert (tmp_path / "model_spec.json").read_text() == "{not json"  # left as it was


@pytest.mark.slow
def test_corrupt_results_file_gets_one_line(trained, dataset_dir, tmp_path):
    train_dir, _ = trained
    (tmp_path / "eval_results.json").write_text("{not json")
    out = run("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
              "--dataset_dir=" + dataset_dir, MODEL, "--eval_image_size=32",
              "--eval_dir=" + str(tmp_path))
    assert "eval_results.json is unreadable" in single_error_line(out)
    assert (tmp_path / "eval_results.json").read_text() == "{not json"  # left as it was


def padded_eval_config(split, eval_dir, **changes):
    """The evaluator's settings for conftest's thousand_and_one split: batches of 64,
    which 1,001 is no multiple of (15 full batches and 41 images)."""
    config = EvalConfig(
        dataset=dataset_factory.get_dataset("auto", split["records"]), split="validation",
        model_name="mobilenet_v2_035", num_classes=7, labels_offset=0, image_size=32,
        preprocessing_name="inception", central_fraction=0.875, batch_size=64,
        max_num_batches=None, use_ema="auto", log_every_n_batches=100, eval_dir=eval_dir,
        data_threads=1, device="host", precision_mode=None)
    return config.replace(**changes)


def assert_scores_every_image_once(result, split):
    """``result`` counts 1,001 images, and its top-1 / top-5 / loss are numpy's over the
    split's logits computed another way (conftest: no padding there)."""
    expected = reference_eval.scores(split["logits"], split["labels"], 1e-3)
    # The top two logits of every image are far apart: the hits are certain.
    assert expected["top1_range"] == (expected["top1"], expected["top1"])
    assert result["images"] == 1001
    assert result["top1"] == expected["top1"] == np.mean(
        split["logits"].argmax(axis=1) == split["labels"])
    assert result["top5"] == expected["top5"]
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_padded_evaluation_counts_every_image_once(thousand_and_one, tmp_path):
    """The last batch is padded to the batch size (static shapes for the device); its
    padding weighs 0, so 1,001 images count once each and score as numpy scores them."""
    split = thousand_and_one
    evaluator = Evaluator(padded_eval_config(split, str(tmp_path)), logger_lib.get_logger())
    with tf.Graph().as_default():
        images, labels, weights = evaluator.build_inputs()
    assert (images.shape.as_list(), labels.shape.as_list(), weights.shape.as_list()) == (
        [64, 32, 32, 3], [64], [64])
    batches = reference_eval.evaluator_batches(evaluator, padded=True)
    assert [len(b[1]) for b in batches] == [64] * 16
    last_images, last_labels, last_weights = batches[-1]
    np.testing.assert_array_equal(last_weights, [1.0] * 41 + [0.0] * 23)
    assert not last_images[41:].any() and not last_labels[41:].any()
    assert all(b[2].all() for b in batches[:-1])
    np.testing.assert_array_equal(np.concatenate([b[1][b[2] > 0] for b in batches]),
                                  split["labels"])

    with evaluator:
        result = evaluator.evaluate_and_record(split["checkpoint"])
        # The graph the session runs reads one static batch shape from its iterator.
        get_next = [op for op in evaluator._kept.graph.get_operations()
                    if op.type == "IteratorGetNext"]
        assert [[t.shape.as_list() for t in op.outputs] for op in get_next] == [
            [[64, 32, 32, 3], [64], [64]]]
    assert_scores_every_image_once(result, split)
    assert (result["device"], result["precision_mode"]) == ("host", None)
    recorded = json.load(open(os.path.join(str(tmp_path), "eval_results.json")))
    assert recorded["results"][0]["device"] == "host"


class _RestoresOnly(object):
    """An evaluator that only restores one variable from the checkpoint it is given."""

    def evaluate_or_skip(self, checkpoint):
        with tf.Graph().as_default():
            weight = tf.Variable(1.0, name="weight")
            with tf.Session() as session:
                tf.train.Saver([weight]).restore(session, checkpoint)


def test_watch_skips_a_checkpoint_training_deleted_before_the_restore(tmp_path):
    """The watcher's race with keep_checkpoint_max: a checkpoint found (and checked) is
    removed by training before the Saver reads it, and the Saver says so with a
    ValueError: skipped with a line. A checkpoint that is still there but unreadable
    is not hidden that way."""
    log = logging.getLogger("test_watch_race")
    lines = ListHandler()
    log.handlers[:] = [lines]
    log.setLevel(logging.INFO)
    gone = str(tmp_path / "model.ckpt-5")
    assert watch._evaluate_new(_RestoresOnly(), gone, log) is None
    assert lines.lines == ["skipped %s: training deleted it before it was read" % gone]
    unreadable = str(tmp_path / "model.ckpt-6")
    with open(unreadable + ".index", "wb") as handle:
        handle.write(b"not a checkpoint index")
    with pytest.raises(UserError):
        watch._evaluate_new(_RestoresOnly(), unreadable, log)
