"""Data parallelism on the CPU, across real processes talking over 127.0.0.1:
MultiWorkerMirroredStrategy through the project's device layer and launcher."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.cli_helpers import ROOT, TIMEOUT_S, _env
from tests.qat_checks import LOGITS, assert_ranges_learned, changed, moving_statistics

# Every test here trains a network or exports and runs one: the whole tier only.
pytestmark = pytest.mark.slow

WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("dist_ds")), num_classes=3,
                              per_class=8, size=32, train_shards=2)


def launch(result_dir, *command, **options):
    """python -m devices.launch --device=cpu --rank_size=N -- command..."""
    args = [sys.executable, "-m", "devices.launch", "--device=cpu",
            "--rank_size=%d" % options.get("ranks", 2), "--result_dir=" + result_dir, "--"]
    return subprocess.run(args + list(command), cwd=ROOT, env=_env({}),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=TIMEOUT_S)


def test_two_replicas_of_batch_b_step_like_one_of_batch_2b(tmp_path):
    single = str(tmp_path / "single")
    out = subprocess.run([sys.executable, WORKER, single, "4", "3"], cwd=ROOT, env=_env({}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    pair = str(tmp_path / "pair")
    out = launch(str(tmp_path / "logs"), sys.executable, WORKER, pair, "4", "3")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    one, two = np.load(os.path.join(single, "weights.npz")), np.load(
        os.path.join(pair, "weights.npz"))
    assert sorted(one.files) == sorted(two.files) == [
        "conv.biases", "conv.weights", "logits.weights"]
    for name in one.files:
        assert np.abs(one[name]).max() > 0
        np.testing.assert_allclose(two[name], one[name], atol=1e-5, rtol=0)


def test_two_workers_train_mobilenet_to_identical_weights(tmp_path, tiny_records):
    train_dir = str(tmp_path / "train")
    out = launch(str(tmp_path / "8p"), sys.executable, "train.py", "--device=cpu",
                 "--dataset_dir=" + tiny_records, "--train_dir=" + train_dir,
                 "--model_name=mobilenet_v2_035", "--train_image_size=32", "--batch_size=4",
                 "--max_train_steps=4", "--learning_rate=0.01", "--bn_decay=0.9",
                 "--log_every_n_steps=2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    digests = []
    for rank in (0, 1):
        with open(os.path.join(str(tmp_path / "8p"), str(rank), "train.log")) as handle:
            log = handle.read()
        assert "worker %d of 2 (MultiWorkerMirroredStrategy)" % rank in log
        assert "batch=4 x 2 devices = 8" in log
        digests.append(re.findall(r"^rank %d: step 4, state digest ([0-9a-f]{16})$" % rank,
                                  log, re.M))
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    # the chief's log reaches the console
    assert "rank 0: step 4, state digest " + digests[0][0] in out.stdout
    # Only the chief checkpoints into train_dir and writes the run's result.
    assert os.path.exists(os.path.join(train_dir, "model.ckpt-4.index"))
    assert os.path.exists(os.path.join(train_dir, "train_result.json"))


def test_two_workers_train_quantization_aware(tmp_path, tiny_records):
    """QAT under MultiWorkerMirroredStrategy, a checkpoint at every step: the range
    variables (ON_READ, averaged over replicas) need no cross-replica call in the graph.
    Both workers end with every variable equal, the non-trainable ones included (each
    saves its own session's: the chief into train_dir, worker 1 into
    train_dir/tmp_worker_1); the ranges are learned ones; --freeze_bn_delay=2 let step 1
    move the batch-norm statistics and held them at step 2."""
    from utils.tf_compat import tf
    train_dir = str(tmp_path / "train")
    out = launch(str(tmp_path / "logs"), sys.executable, "train.py", "--device=cpu",
                 "--dataset_dir=" + tiny_records, "--train_dir=" + train_dir,
                 "--model_name=mobilenet_v2_035", "--train_image_size=32", "--batch_size=4",
                 "--max_train_steps=2", "--save_checkpoints_steps=1", "--learning_rate=0.01",
                 "--learning_rate_decay_type=fixed", "--bn_decay=0.9",
                 "--log_every_n_steps=1", "--quantize_delay=1", "--freeze_bn_delay=2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    chief = [tf.train.load_checkpoint(os.path.join(train_dir, "model.ckpt-%d" % step))
             for step in range(3)]
    worker = tf.train.load_checkpoint(os.path.join(train_dir, "tmp_worker_1", "model.ckpt-2"))
    names = sorted(chief[2].get_variable_to_shape_map())
    assert names == sorted(worker.get_variable_to_shape_map())
    assert {"fake_quantization_step", LOGITS + "act_quant/min", LOGITS + "weights/Momentum",
            "MobilenetV2/Conv/BatchNorm/moving_mean"} <= set(names)
    assert [name for name in names
            if not np.array_equal(chief[2].get_tensor(name), worker.get_tensor(name))] == []
    assert chief[2].get_tensor("fake_quantization_step") == 2
    statistics = [moving_statistics(reader) for reader in chief]
    assert changed(statistics[0], statistics[1]) == sorted(statistics[0])
    assert changed(statistics[1], statistics[2]) == []
    assert_ranges_learned(chief[2], chief[1].get_tensor(LOGITS + "weights"), steps=2)
