"""benchmarks/equal_budget.py and its PyTorch side (issue 34): which runs count as finished,
what resumes, how each run is labelled, and that the reference's variants build what they
say (kuangliu's network, our choices). The PyTorch parts (slow: a program each) run in
.venv-bench (installed by run_tests.sh), on 32 random images in batches of 16."""
import json
import os
import subprocess

import numpy as np
import pytest

from benchmarks import equal_budget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(content, handle)


def _eval_results(work, run, top1_by_step):
    _write(os.path.join(work, run, "eval", "eval_results.json"), {"results": [
        {"global_step": step, "top1": top1} for step, top1 in top1_by_step]})


def test_finished_runs_by_label_in_step_order_without_the_unfinished(tmp_path):
    work = str(tmp_path)
    _eval_results(work, "ours_slim_seed0", [(194, 0.4146), (97, 0.3494), (291, 0.4462)])
    _eval_results(work, "ours_slim_seed1", [(97, 0.3048)])  # cut short after one epoch
    _write(os.path.join(work, "reference_seed0.json"), {"seed": 0, "top1": [33.68, 42.27, 45.43]})
    _write(os.path.join(work, "reference_network=source_seed1.json"),
           {"seed": 1, "network": "source", "as_ours": [], "top1": [1.0, 2.0, 3.0]})
    _write(os.path.join(work, "reference_as_ours=all_seed0.json"),
           {"seed": 0, "network": "ours", "as_ours": ["init", "decay"], "top1": [5.0, 6.0]})
    assert equal_budget._finished(work, 3) == {
        "ours (--weights_init=slim)": {"0": [34.94, 41.46, 44.62]},
        "reference (PyTorch)": {"0": [33.68, 42.27, 45.43]},
        "reference (PyTorch, kuangliu's network)": {"1": [1.0, 2.0, 3.0]},
        "reference (PyTorch, our init, decay)": {},  # 2 of 3 epochs
    }


def test_a_cut_short_run_of_ours_resumes_and_a_finished_one_does_not(tmp_path, monkeypatch):
    work = str(tmp_path)
    _eval_results(work, "ours_slim_seed0", [(97, 0.3), (194, 0.4), (291, 0.45)])
    _eval_results(work, "ours_slim_seed1", [(97, 0.3)])
    commands = []
    monkeypatch.setattr(equal_budget, "_logged", lambda command, log: commands.append(command))
    for seed in (0, 1):
        equal_budget._ours("RECORDS", work, 3, seed, "slim")
    assert len(commands) == 1
    flags = commands[0][2:]
    assert "--train_dir=%s" % os.path.join(work, "ours_slim_seed1") in flags
    assert {"--seed=1", "--max_epoch=3", "--eval_every_n_epochs=1",
            "--dataset_dir=RECORDS", "--model_name=mobilenet_v2_cifar"} <= set(flags)


def test_reference_variants_run_under_their_own_names(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(equal_budget, "_logged", lambda command, log: commands.append(command))
    equal_budget._reference("D.npz", str(tmp_path), 3, 1, "--as_ours=all --network=source")
    assert commands[0][2:] == ["D.npz", str(tmp_path / "reference_as_ours=all_network=source"
                                                     "_seed1.json"),
                               "--epochs=3", "--seed=1", "--as_ours=all", "--network=source"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    rng = np.random.RandomState(0)
    path = str(tmp_path_factory.mktemp("eqb") / "images.npz")
    np.savez(path, train_images=rng.randint(0, 256, (32, 32, 32, 3)).astype(np.uint8),
             train_labels=rng.randint(0, 10, 32),
             test_images=rng.randint(0, 256, (20, 32, 32, 3)).astype(np.uint8),
             test_labels=rng.randint(0, 10, 20))
    return path


def _reference_run(images, out, *args):
    return subprocess.run(
        [equal_budget.BENCH_PYTHON, os.path.join("benchmarks", "equal_budget_reference.py"),
         images, out, "--epochs=1", "--batch_size=16", "--threads=1"] + list(args), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


@pytest.mark.slow
@pytest.mark.parametrize("args, network, as_ours", [
    ((), "ours", []),
    (("--as_ours=all",), "ours", ["init", "inputs", "decay", "epsilon", "padding"]),
    (("--network=source", "--as_ours=init,decay"), "source", ["init", "decay"]),
])
def test_the_reference_trains_an_epoch_as_asked(images, tmp_path, args, network, as_ours):
    out = str(tmp_path / "out.json")
    run = _reference_run(images, out, *args)
    assert run.returncode == 0, run.stderr
    with open(out) as handle:
        record = json.load(handle)
    assert record["network"] == network and record["as_ours"] == as_ours
    assert record["steps_per_epoch"] == 2 and len(record["top1"]) == 1
    assert 0.0 <= record["top1"][0] <= 100.0 and np.isfinite(record["loss"][0])


@pytest.mark.slow
@pytest.mark.parametrize("args, says", [
    (("--as_ours=init,foo",), "--as_ours: no choice foo (have: all, init, inputs, decay, "
                              "epsilon, padding)"),
    (("--network=source", "--as_ours=padding"), "--as_ours=padding: TF-SAME padding is "
                                                "for --network=ours"),
])
def test_a_bad_reference_argument_is_one_line(images, tmp_path, args, says):
    run = _reference_run(images, str(tmp_path / "out.json"), *args)
    assert run.returncode == 1
    assert run.stderr.strip() == says


def _source_parameters():
    """kuangliu's MobileNetV2-CIFAR counted from its layer table by hand: every block has a
    1x1 expansion, a 3x3 depthwise and a 1x1 projection, each followed by batch norm (2
    parameters a channel), and a 1x1 conv + batch norm shortcut where a stride-1 block
    changes the width."""
    table = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1)]
    total, inputs, shortcuts = 3 * 32 * 9 + 2 * 32, 32, 0
    for expansion, outputs, repeats, stride in table:
        for repeat in range(repeats):
            hidden = inputs * expansion
            total += inputs * hidden + 2 * hidden + hidden * 9 + 2 * hidden
            total += hidden * outputs + 2 * outputs
            if (stride if repeat == 0 else 1) == 1 and inputs != outputs:
                total += inputs * outputs + 2 * outputs
                shortcuts += 1
            inputs = outputs
    return total + 320 * 1280 + 2 * 1280 + 1280 * 10 + 10, shortcuts


@pytest.mark.slow
def test_source_network_and_our_choices_in_the_reference():
    parameters, shortcuts = _source_parameters()
    assert shortcuts == 4
    script = (
        "import json, sys; sys.path.insert(0, 'benchmarks')\n"
        "import torch\n"
        "from equal_budget_reference import SourceMobileNetV2, _network, _parameter_groups, "
        "_slim_init\n"
        "source = SourceMobileNetV2(10, {'momentum': 0.1, 'epsilon': 1e-5})\n"
        "ours = _network('ours', ['init'])\n"
        "_slim_init(ours)\n"
        "decayed, other = _parameter_groups(ours, 5e-4, True)\n"
        "kernels = torch.cat([p.detach().flatten() for p in decayed['params']])\n"
        "relus = sum(isinstance(m, torch.nn.ReLU) for m in source.modules())\n"
        "print(json.dumps({'source': sum(p.numel() for p in source.parameters()),"
        " 'decayed': len(decayed['params']), 'decayed_dims': sorted(set("
        "p.dim() for p in decayed['params'])), 'other_decay': other['weight_decay'],"
        " 'other_dims': sorted(set(p.dim() for p in other['params'])),"
        " 'std': float(kernels.std()), 'max': float(kernels.abs().max()), 'relus': relus}))\n")
    run = subprocess.run([equal_budget.BENCH_PYTHON, "-c", script], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert run.returncode == 0, run.stderr
    facts = json.loads(run.stdout)
    assert facts["source"] == parameters
    assert facts["relus"] == 2  # the stem's and the last conv's; blocks call torch.relu
    # TF-Slim's regularizer: the 35 convs but no depthwise kernel, and the head's kernel
    # (the same 36 the step parity finds in our graph); no batch-norm parameter or bias
    assert facts["decayed"] == 36 and facts["other_decay"] == 0.0
    assert facts["decayed_dims"] == [2, 4] and facts["other_dims"] == [1, 4]  # 4: depthwise
    assert facts["max"] <= 0.18 and abs(facts["std"] - 0.09 * 0.880) < 0.002
