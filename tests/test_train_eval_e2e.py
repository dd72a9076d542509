"""A real short run through the command lines: train -> checkpoint -> resume -> eval,
and bad command lines ending in one clear line."""
import json
import os
import re

import pytest

from tests.cli_helpers import run_python as run

# Every test here trains or evaluates through TensorFlow programs: the whole tier only.
pytestmark = pytest.mark.slow

TINY_MODEL = ["--model_name=mobilenet_v2_035"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("e2e_ds")), num_classes=3,
                              per_class=8, size=32)


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory):
    """Six steps with EMA, then a resumed run to step nine."""
    train_dir = str(tmp_path_factory.mktemp("e2e_train"))
    common = ["--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
              "--train_image_size=32", "--batch_size=4", "--save_checkpoints_steps=3",
              "--learning_rate=0.01",
              "--log_every_n_steps=2", "--bn_decay=0.9", "--moving_average_decay=0.99",
              "--seed=1"] + TINY_MODEL
    first = run("train.py", "--max_train_steps=6", *common)
    second = run("train.py", "--max_train_steps=9", *common)
    return train_dir, first, second


def test_training_prints_progress_and_checkpoints(trained):
    train_dir, first, _ = trained
    assert first.returncode == 0, first.stderr[-3000:]
    lines = [l for l in first.stdout.splitlines() if l.startswith("step:")]
    assert [int(re.match(r"step:(\d+)", l).group(1)) for l in lines] == [2, 4, 6]
    pattern = (r"step:\d+ epoch:[\d.]+ ips:[\d.]+ loss:[\d.]+ total_loss:[\d.]+ "
               r"lr:[\d.e-]+ train_accuracy:[\d.]+ eta:\S+")
    assert all(re.match(pattern, l) for l in lines), lines
    assert "Traceback" not in first.stderr and "WARNING" not in first.stdout
    log = open(os.path.join(train_dir, "train_log.log")).read()
    assert "step:6 " in log
    # From scratch: no step-0 checkpoint (it would hold only the seeded initial weights).
    from utils.checkpoints import list_checkpoints
    assert [os.path.basename(c) for c in list_checkpoints(train_dir)] == [
        "model.ckpt-3", "model.ckpt-6", "model.ckpt-9"]


def test_resume_continues_from_last_checkpoint(trained):
    train_dir, _, second = trained
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(r"rank 0 resumes from .*model\.ckpt-6 at step 6", second.stdout)
    steps = [int(m) for m in re.findall(r"^step:(\d+)", second.stdout, re.M)]
    assert steps == [8, 9]
    assert os.path.exists(os.path.join(train_dir, "model.ckpt-9.index"))
    result = json.load(open(os.path.join(train_dir, "train_result.json")))
    assert (result["start_step"], result["final_step"]) == (6, 9)
    assert result["checkpoint"].endswith("model.ckpt-9")


def test_checkpoint_has_slim_names_and_moving_averages(trained):
    from utils.tf_compat import tf
    train_dir, _, _ = trained
    names = tf.train.load_checkpoint(os.path.join(train_dir, "model.ckpt-9")) \
        .get_variable_to_shape_map()
    assert names["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] == [1, 1, 1280, 3]
    assert "MobilenetV2/Conv/weights/ExponentialMovingAverage" in names
    assert "MobilenetV2/Conv/BatchNorm/moving_mean/ExponentialMovingAverage" in names


def test_eval_counts_every_image_once_and_records(trained, dataset_dir):
    train_dir, _, _ = trained
    out = run("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
              "--dataset_dir=" + dataset_dir, "--eval_image_size=32", "--batch_size=5",
              "--log_every_n_batches=1", *TINY_MODEL)
    assert out.returncode == 0, out.stderr[-3000:]
    meta = json.load(open(os.path.join(dataset_dir, "dataset_meta.json")))
    expected = meta["splits"]["validation"]["num_samples"]
    match = re.search(r"^eval result: checkpoint=(\S+) global_step=(\d+) top1=(0\.\d{4}|1\.0000) "
                      r"top5=(0\.\d{4}|1\.0000) images=(\d+) loss=(\d+\.\d{4}) "
                      r"device=host$",
                      out.stdout, re.M)
    assert match, out.stdout
    assert match.group(1).endswith("model.ckpt-9") and match.group(2) == "9"
    assert int(match.group(5)) == expected
    assert float(match.group(4)) == 1.0  # 3 classes: top-5 always hits
    assert "eval batch:1 " in out.stdout
    results = json.load(open(os.path.join(train_dir, "eval", "eval_results.json")))
    assert results["best"]["global_step"] == 9 and results["results"][0]["ema"] is True
    assert results["results"][0]["images"] == expected
