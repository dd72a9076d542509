"""The launchers users run: bash scripts/run_1p.sh DATA [flags], run_finetune.sh."""
import os

import pytest

import env as env_lib
from tests.cli_helpers import ROOT, run_bash as bash
from tests.flag_helpers import cifar10_facts, imagenet_facts, parse_train_flags
from training import recipes
from utils.errors import UserError


@pytest.mark.slow
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


@pytest.mark.parametrize("script, ranks, extra", [
    ("train_1p.sh", "1", ["--num_gpus=1"]), ("train_8p.sh", "8", []),
])
@pytest.mark.parametrize("recipe", ["", "mnasnet_a1", "mobilenet_v2_cifar10_qat"])
def test_the_scripts_pass_the_recipe_flagfile_then_the_callers_flags(script, ranks, extra,
                                                                     recipe):
    given = ("--restore_path=FLOAT",) if recipe.endswith("_qat") else ()
    out = bash(script, "DATA", "TRAIN", *(given + ("--seed=1",)),
               RECIPE=recipe, RANK_SIZE=ranks, RECIPE_DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    flagfile = os.path.join(ROOT, "recipes", (recipe or "mobilenet_v2") + ".flags")
    assert out.stdout.split()[2:] == (
        ["--flagfile=" + flagfile, "--dataset_dir=DATA", "--train_dir=TRAIN", "--device=auto"]
        + extra + list(given) + ["--seed=1"])


@pytest.mark.parametrize("given, both", [
    ({}, "0"), ({"DEVICE_ID": "3"}, "3"), ({"ASCEND_DEVICE_ID": "5"}, "5"),
    ({"DEVICE_ID": "2", "ASCEND_DEVICE_ID": "2"}, "2")])
def test_train_1p_names_its_device_in_both_variables(given, both):
    """tf_adapter trains on ASCEND_DEVICE_ID, DEVICE_ID only without it: the one-device
    script sets both to the device given in either (train.py refuses two that differ)."""
    environ = dict(given, RECIPE_DRY_RUN="1")
    for name in ("DEVICE_ID", "ASCEND_DEVICE_ID"):
        environ.setdefault(name, "")  # as unset: ${NAME:-...}
    out = bash("train_1p.sh", "DATA", "TRAIN", **environ)
    assert out.returncode == 0, out.stderr
    assert out.stderr.split()[-2:] == ["DEVICE_ID=" + both, "ASCEND_DEVICE_ID=" + both]


def test_unknown_recipe_and_a_fine_tune_without_its_start():
    out = bash("train_1p.sh", "DATA", "TRAIN", RECIPE="resnet50")
    assert out.returncode == 2 and out.stderr.startswith("error: RECIPE=resnet50")
    assert "mobilenet_v2_cifar10_qat" in out.stderr  # the recipes are listed
    out = bash("train_1p.sh", "DATA", "TRAIN", RECIPE="mobilenet_v2_cifar10_qat")
    assert out.returncode == 2 and out.stderr.strip() == (
        "error: RECIPE=mobilenet_v2_cifar10_qat fine-tunes a checkpoint: pass "
        "--restore_path=the train_dir of a RECIPE=mobilenet_v2_cifar10 run")


# The settings each recipe must reach at the global batch of ``ranks`` devices, written
# from the recipes' sources (the linear scaling rule: rate per 256 x global batch / 256).
@pytest.mark.parametrize("recipe, ranks, facts, expected", [
    ("mobilenet_v2", 1, imagenet_facts(), dict(
        model_name="mobilenet_v2", batch_size=256, global_batch=256, learning_rate=0.1,
        max_train_steps=300 * (1281167 // 256), moving_average_decay=0.9999)),
    ("mobilenet_v2", 8, imagenet_facts(), dict(global_batch=2048, learning_rate=0.8)),
    ("mnasnet_a1", 8, imagenet_facts(), dict(
        model_name="mnasnet_a1", batch_size=128, learning_rate=0.064, opt_epsilon=0.001,
        weight_decay=0.00001, max_train_steps=350 * (1281167 // 1024))),
    ("mobilenet_v3_large", 8, imagenet_facts(), dict(learning_rate=0.025)),
    ("efficientnet_v2_s_finetune", 1, imagenet_facts(restore_checkpoint="/c/m.ckpt-1"),
     dict(model_name="efficientnet_v2_s", image_size=384, batch_size=64,
          learning_rate=0.000125, drop_path_rate=0.2, clip_gradient_norm=5.0)),
    # 50,000 images at 1,024 a step: 48 whole steps an epoch, batch norm frozen at 10.
    ("mobilenet_v2_cifar10_qat", 8, cifar10_facts("/c/m.ckpt-9"), dict(
        model_name="mobilenet_v2_cifar", learning_rate=0.04, steps_per_epoch=48,
        max_train_steps=15 * 48, restore_exclude=())),
])
def test_each_recipe_derives_its_settings(recipe, ranks, facts, expected):
    f = parse_train_flags("--flagfile=" + recipes.path_of(recipe), "--dataset_dir=D")
    env = env_lib.Env.from_flags(f, facts, {"RANK_SIZE": str(ranks), "RANK_ID": "0"})
    for name, value in expected.items():
        assert getattr(env, name) == pytest.approx(value) if isinstance(value, float) \
            else getattr(env, name) == value, name
    if recipe.endswith("_qat"):
        assert env.quantization.quant_delay == 0 and env.quantization.freeze_bn_delay == 480


def test_the_command_line_replaces_the_recipes_length_and_rate():
    f = parse_train_flags("--flagfile=" + recipes.path_of("mobilenet_v2"),
                          "--dataset_dir=D", "--max_train_steps=5", "--learning_rate=0.3",
                          "--warmup_epochs=0")
    env = env_lib.Env.from_flags(f, imagenet_facts(), {})
    assert (env.max_train_steps, env.learning_rate) == (5, 0.3)
    # Both units on the command line stay a mistake.
    f = parse_train_flags("--dataset_dir=D", "--max_epoch=1", "--max_train_steps=5")
    with pytest.raises(UserError, match="give exactly one of --max_epoch and "
                                        "--max_train_steps"):
        env_lib.Env.from_flags(f, imagenet_facts(), {})
