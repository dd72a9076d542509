"""The launchers users run: bash scripts/run_1p.sh DATA [flags], run_finetune.sh."""
import os

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
