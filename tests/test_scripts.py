"""The launchers users run: bash scripts/run_1p.sh DATA [flags], run_finetune.sh."""
import os

import pytest

from tests.cli_helpers import run_bash as bash


def test_run_1p_trains_into_result_dir(tmp_path):
    from tests.ds_helpers import write_tiny_dataset
    data = write_tiny_dataset(str(tmp_path / "ds"), num_classes=2, per_class=4, size=32)
    result = tmp_path / "result"
    out = bash("run_1p.sh", data, "--model_name=mobilenet_v2_035", "--train_image_size=32",
               "--batch_size=4", "--max_train_steps=2", "--learning_rate=0.01",
               "--moving_average_decay=0.9", "--warmup_epochs=0", "--log_every_n_steps=1",
               RESULT_DIR=str(result))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "step:2 " in out.stdout
    logs = [p for p in os.listdir(str(result)) if p.startswith("train_") and p.endswith(".log")]
    assert "train_log.log" in logs and len(logs) == 2  # console log + hook log
    assert os.path.exists(str(result / "model.ckpt-2.index"))


def test_run_1p_without_dataset_says_how(tmp_path):
    out = bash("run_1p.sh", str(tmp_path / "missing"))
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: dataset dir") and "Traceback" not in out.stderr
    out = bash("run_1p.sh", DATA_DIR="")
    assert out.returncode == 2 and "usage" in out.stderr


def test_run_finetune_needs_train_and_validation_folders(tmp_path):
    out = bash("run_finetune.sh", str(tmp_path), str(tmp_path / "ckpt"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: %s/train is missing" % tmp_path)


@pytest.mark.parametrize("script, recipe, ranks, expected", [
    ("train_1p.sh", "", "1", ["--model_name=mobilenet_v2", "--batch_size=256",
                              "--learning_rate=0.1", "--max_epoch=300", "--num_gpus=1"]),
    ("train_8p.sh", "", "8", ["--batch_size=256", "--learning_rate=0.8",
                              "--moving_average_decay=0.9999"]),
    ("train_8p.sh", "mnasnet_a1", "8", ["--model_name=mnasnet_a1", "--batch_size=128",
                                        "--learning_rate=0.064", "--opt_epsilon=0.001",
                                        "--weight_decay=0.00001", "--max_epoch=350"]),
    ("train_8p.sh", "mobilenet_v3_large", "8", ["--model_name=mobilenet_v3_large",
                                                "--learning_rate=0.025"]),
    ("train_1p.sh", "efficientnet_v2_s_finetune", "1", [
        "--model_name=efficientnet_v2_s", "--train_image_size=384", "--batch_size=64",
        "--learning_rate=0.000125", "--drop_path_rate=0.2", "--clip_gradient_norm=5",
        "--max_epoch=15"]),
    ("train_8p.sh", "mobilenet_v2_cifar10_qat", "8", [
        "--model_name=mobilenet_v2_cifar", "--learning_rate=0.04", "--quantize_delay=0",
        "--freeze_bn_delay=490", "--restore_exclude=none", "--restore_path=FLOAT"]),
])
def test_recipes_scale_the_learning_rate_with_the_global_batch(script, recipe, ranks,
                                                               expected):
    given = ("--restore_path=FLOAT",) if recipe.endswith("_qat") else ()
    out = bash(script, "DATA", "TRAIN", *(given + ("--seed=1",)),
               RECIPE=recipe, RANK_SIZE=ranks, RECIPE_DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[-1] == "--seed=1" and "--dataset_dir=DATA" in words
    for flag in expected:
        assert flag in words, (flag, words)


def test_recipe_run_length_and_unknown_recipe():
    out = bash("train_1p.sh", "DATA", "TRAIN", "--max_train_steps=5", RECIPE_DRY_RUN="1")
    assert "--max_train_steps=5" in out.stdout and "--max_epoch" not in out.stdout
    out = bash("train_1p.sh", "DATA", "TRAIN", RECIPE="resnet50")
    assert out.returncode == 2 and out.stderr.startswith("error: RECIPE=resnet50")
    out = bash("train_1p.sh", "DATA", "TRAIN", RECIPE="mobilenet_v2_cifar10_qat")
    assert out.returncode == 2 and "pass --restore_path=" in out.stderr
