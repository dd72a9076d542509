"""Fine-tuning through train.py on tiny records: restore with the head excluded, frozen
backbone, resume wins over --restore_path, misfits named in one line."""
import os

import numpy as np
import pytest

from tests.cli_helpers import run_python, single_error_line
from utils.tf_compat import tf

HEAD = "MobilenetV2/Logits/"


def train(*args):
    return run_python("train.py", "--model_name=mobilenet_v2_035", "--train_image_size=32",
                      "--batch_size=4", "--learning_rate=0.01", "--bn_decay=0.9",
                      "--log_every_n_steps=1", "--seed=5", *args)


def tensors(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("MobilenetV2/") and not name.endswith(
                ("/Momentum", "/ExponentialMovingAverage"))}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    root = tmp_path_factory.mktemp("ft")
    source = write_tiny_dataset(str(root / "src"), num_classes=3, per_class=4)
    target = write_tiny_dataset(str(root / "dst"), num_classes=5, per_class=4)
    return source, target


@pytest.fixture(scope="module")
def source_checkpoint(datasets, tmp_path_factory):
    train_dir = str(tmp_path_factory.mktemp("ft_source"))
    out = train("--dataset_dir=" + datasets[0], "--train_dir=" + train_dir,
                "--max_train_steps=3")
    assert out.returncode == 0, out.stderr[-3000:]
    return os.path.join(train_dir, "model.ckpt-3")


def test_restore_excludes_head_and_copies_backbone_bit_for_bit(datasets, source_checkpoint,
                                                               tmp_path):
    train_dir = str(tmp_path)
    out = train("--dataset_dir=" + datasets[1], "--train_dir=" + train_dir,
                "--max_train_steps=2", "--restore_path=" + os.path.dirname(source_checkpoint))
    assert out.returncode == 0, out.stderr[-3000:]
    source = tensors(source_checkpoint)
    start = tensors(os.path.join(train_dir, "model.ckpt-0"))  # saved before the first step
    head = [n for n in start if n.startswith(HEAD)]
    assert sorted(head) == [HEAD + "Conv2d_1c_1x1/biases", HEAD + "Conv2d_1c_1x1/weights"]
    assert start[HEAD + "Conv2d_1c_1x1/weights"].shape == (1, 1, 1280, 5)
    assert not np.any(start[HEAD + "Conv2d_1c_1x1/biases"])  # freshly initialised
    for name in start:
        if name not in head:
            np.testing.assert_array_equal(start[name], source[name], err_msg=name)
    assert ("restored %d variables from %s; excluded 2 (%s); 0 missing"
            % (len(start) - 2, source_checkpoint, HEAD)) in out.stdout


def test_frozen_backbone_keeps_weights_and_statistics(datasets, source_checkpoint, tmp_path):
    train_dir = str(tmp_path)
    out = train("--dataset_dir=" + datasets[1], "--train_dir=" + train_dir,
                "--max_train_steps=3", "--restore_path=" + source_checkpoint,
                "--freeze_backbone")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training only MobilenetV2/Logits" in out.stdout
    source = tensors(source_checkpoint)
    start = tensors(os.path.join(train_dir, "model.ckpt-0"))
    end = tensors(os.path.join(train_dir, "model.ckpt-3"))
    moving = [n for n in end if n.endswith("moving_mean")]
    assert len(moving) == 52
    for name in end:
        if not name.startswith(HEAD):
            np.testing.assert_array_equal(end[name], source[name], err_msg=name)
    assert not np.allclose(end[HEAD + "Conv2d_1c_1x1/weights"],
                           start[HEAD + "Conv2d_1c_1x1/weights"])


def test_resumed_fine_tune_does_not_restore_again(datasets, source_checkpoint, tmp_path):
    train_dir = str(tmp_path)
    common = ["--dataset_dir=" + datasets[1], "--train_dir=" + train_dir,
              "--restore_path=" + source_checkpoint]
    first = train("--max_train_steps=2", *common)
    second = train("--max_train_steps=4", *common)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
    assert "restored" in first.stdout and "restored" not in second.stdout
    assert "--restore_path is not applied to a resumed run" in second.stdout
    resumed = tensors(os.path.join(train_dir, "model.ckpt-2"))
    source = tensors(source_checkpoint)
    name = "MobilenetV2/Conv/weights"
    assert not np.array_equal(resumed[name], source[name])  # trained past the restore


@pytest.mark.parametrize("extra, fragment", [
    (["--restore_exclude=none"],
     "cannot restore MobilenetV2/Logits/Conv2d_1c_1x1/weights: shape [1, 1, 1280, 3] in"),
    (["--restore_exclude=none"], "--restore_exclude=MobilenetV2/Logits/"),
    (["--restore_path=/no/such/ckpt"], "no checkpoint at /no/such/ckpt"),
    (["--freeze_backbone", "--trainable_scopes=MobilenetV2/Conv/"], "not both"),
])
def test_misfits_get_one_line(datasets, source_checkpoint, tmp_path, extra, fragment):
    args = ["--dataset_dir=" + datasets[1], "--train_dir=" + str(tmp_path),
            "--max_train_steps=1", "--restore_path=" + source_checkpoint] + extra
    assert fragment in single_error_line(train(*args))
