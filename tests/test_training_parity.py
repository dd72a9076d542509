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
         "--out", str(work / "parity.json")] + list(extra),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return out.returncode, out.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    code, last = parity(work)
    assert code == 0, last
    return work


def test_quick_parity_agrees_step_for_step(work):
    with open(str(work / "parity.json")) as handle:
        row = json.load(handle)["recipes"]["mobilenet_v2_cifar10"]
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
    names = [d["name"] for d in row["differences"]]
    assert names == ["decay_every_parameter", "symmetric_padding", "bn_epsilon_1e-5"]


@pytest.mark.parametrize("plant, says", [
    ("decay_batch_norm_gammas",
     "reference decays what our graph does not (52: MobilenetV2/Conv/BatchNorm/gamma"),
    ("bn_momentum_0.01", "the batch means in the moving averages"),
])
def test_a_planted_difference_fails(work, plant, says):
    code, last = parity(work, "--plant", plant)
    assert code == 1
    assert last.startswith("mobilenet_v2_cifar10: ours and the reference disagree: ")
    assert says in last
