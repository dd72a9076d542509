"""benchmarks/training_parity.py --quick (issue 34): our train.py against the PyTorch
reference (benchmarks/parity_reference.py in .venv-bench, installed by run_tests.sh) on
3 steps of 32 tiny images; it agrees as it is and fails on a planted semantic difference.
Our runs are made once and reused by the planted runs (the reference alone changes)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def parity(work, *extra):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.training_parity", "--quick", "--work", str(work),
         "--out", str(work.parent / "parity.json")] + list(extra),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return out.returncode, out.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Both recipes' quick rows, in one parity.json; the CIFAR-10 one's work folder."""
    folder = tmp_path_factory.mktemp("parity")
    for recipe in ("mobilenet_v2_cifar10", "mobilenet_v2"):
        code, last = parity(folder / recipe, "--recipe", recipe)
        assert code == 0, last
    with open(str(folder / "parity.json")) as handle:
        return json.load(handle)["recipes"], folder / "mobilenet_v2_cifar10"


@pytest.mark.parametrize("recipe", ["mobilenet_v2_cifar10", "mobilenet_v2"])
def test_quick_parity_agrees_step_for_step(results, recipe):
    row = results[0][recipe]
    assert row["agree"] and row["steps"] == 3 and len(row["loss_ours"]) == 3
    assert row["rel_diff_first"] <= 1e-4  # the same forward pass on the same batch
    assert row["rel_diff_learning_rate_max"] <= 1e-6
    step = row["one_step"]
    # 35 conv kernels and the head's: TF-Slim decays neither depthwise kernels nor
    # batch-norm parameters nor the head's bias
    for side in ("decay_ours", "decay_reference"):
        assert step[side]["decayed"] == 36
        assert not step[side]["decayed_but_not_expected"]
        assert not step[side]["not_decayed_but_expected"]
    assert step["bn_mean_diff_max"] <= 1e-2 and step["bn_variance_rel_diff_max"] <= 1e-2
    if recipe == "mobilenet_v2":  # warmup from 0, label smoothing 0.1, the moving average
        assert row["reference_config"]["warmup_steps"] == 1
        assert row["reference_config"]["label_smoothing"] == 0.1
        assert step["average_ours_rel_diff_max"] <= 1e-3
        assert step["average_reference_rel_diff_max"] <= 1e-3
    names = [d["name"] for d in row["differences"]]
    assert names == {"mobilenet_v2_cifar10": ["decay_every_parameter", "symmetric_padding",
                                              "bn_epsilon_1e-5"],
                     "mobilenet_v2": ["decay_every_parameter", "moving_average_without_warmup",
                                      "bn_epsilon_1e-5"]}[recipe]


@pytest.mark.parametrize("plant, says", [
    ("decay_batch_norm_gammas",
     "reference decays what our graph does not (52: MobilenetV2/Conv/BatchNorm/gamma"),
    ("bn_momentum_0.01", "the batch means in the moving averages"),
])
def test_a_planted_difference_fails(results, plant, says):
    code, last = parity(results[1], "--plant", plant)
    assert code == 1
    assert last.startswith("mobilenet_v2_cifar10: ours and the reference disagree: ")
    assert says in last
