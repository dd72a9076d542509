"""Pre-flight checks (training/preflight.py): each mistake of issue #10 caught in one line before
any graph: shards missing or empty, record counts against the metadata, a rank table
that disagrees with the environment, iterations_per_loop not dividing the step counts on
npu, a one-device LR on many devices, a checkpoint in train_dir that would win over
--restore_path (and the legitimate resume of a fine-tune not flagged). Three train.py
runs: a clean --preflight, one with a problem, one stale train_dir."""
import json
import os
import shutil

import pytest

import env as env_lib
from rank_tables import table as rank_table
from tests.cli_helpers import ROOT, run_python, single_error_line
from tests.conftest import STUB
from tests.test_devices_npu import two_device_rank_table
from tests.test_env_schedules import flag_values, tf_config
from training import loop, preflight, recipes
from utils.tf_compat import tf

MODEL_FLAGS = ["--model_name=mobilenet_v2_035", "--train_image_size=32", "--batch_size=4",
               "--bn_decay=0.9"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 training records in 2 shards, 6 validation records in 2."""
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("preflight_ds")), num_classes=3,
                              per_class=4, train_shards=2, validation_shards=2)


def make_env(dataset_dir, environ=None, **overrides):
    values = dict(dataset_dir=dataset_dir, model_name="mobilenet_v2_035", train_image_size=32,
                  batch_size=4, max_train_steps=6, train_dir="/nonexistent/train_dir")
    values.update(overrides)
    return env_lib.load_env(flag_values(**values), environ or {})


def result(env, name, environ=None, full=False):
    """(status, detail) of one named check."""
    results = {r.name: r for r in preflight.run_checks(env, environ or {}, full)}
    return results[name].status, results[name].detail


def broken_copy(dataset, tmp_path):
    copy = str(tmp_path / "records")
    shutil.copytree(dataset, copy)
    return copy


def fake_checkpoint(directory, step, shapes=None):
    """A checkpoint holding global_step = step (and zeros of ``shapes``, {name: shape}),
    saved as training saves it."""
    os.makedirs(str(directory), exist_ok=True)
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        for name, shape in (shapes or {}).items():
            tf.get_variable(name, shape, initializer=tf.zeros_initializer())
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(tf.assign(global_step, step))
            return tf.train.Saver().save(session, os.path.join(str(directory), "model.ckpt"),
                                         global_step=step)


# ----------------------------------------------------------------------------- dataset

def test_a_complete_dataset_passes_both_modes(dataset):
    env = make_env(dataset)
    assert result(env, "dataset") == (
        "ok", "train 2 shards, validation 2 shards, all present and non-empty "
              "(record counts: --preflight)")
    assert result(env, "dataset", full=True) == (
        "ok", "train 12 records in 2 shards, validation 6 records in 2 shards "
              "= dataset_meta.json")


FOLDER_FIX = ("copy the shards again or convert again (python -m datasets.build_tfrecords "
              "... --overwrite); the split sizes in dataset_meta.json must match the records")


def test_missing_and_empty_shards(dataset, tmp_path):
    records = broken_copy(dataset, tmp_path)
    os.remove(os.path.join(records, "train-00001-of-00002"))
    open(os.path.join(records, "validation-00000-of-00002"), "w").close()
    assert result(make_env(records), "dataset") == (
        "problem", "1 of the 2 train shards missing (train-00001-of-00002); "
                   "validation-00000-of-00002 empty (0 bytes) in %s; %s" % (records, FOLDER_FIX))


def test_record_counts_against_the_metadata(dataset, tmp_path):
    records = broken_copy(dataset, tmp_path)
    meta_path = os.path.join(records, "dataset_meta.json")
    with open(meta_path) as handle:
        meta = json.load(handle)
    meta["splits"]["train"]["num_samples"] = 14
    with open(meta_path, "w") as handle:
        json.dump(meta, handle)
    env = make_env(records)
    assert result(env, "dataset")[0] == "ok"  # the cheap check reads no records
    assert result(env, "dataset", full=True) == (
        "problem", "the train shards hold 12 records but dataset_meta.json says 14 in %s; %s"
                   % (records, FOLDER_FIX))
    shard = os.path.join(records, "validation-00001-of-00002")
    with open(shard, "r+b") as handle:
        handle.truncate(os.path.getsize(shard) - 10)
    status, detail = result(env, "dataset", full=True)
    assert status == "problem" and detail.startswith(
        "the train shards hold 12 records but dataset_meta.json says 14; "
        "validation-00001-of-00002: record 2 needs ")
    assert "(cut short) in %s" % records in detail


# ----------------------------------------------------------------------------- rank table

def test_rank_table_against_the_environment(npu_bridge, dataset, tmp_path):
    table = two_device_rank_table(str(tmp_path / "2p.json"))
    env = make_env(dataset, device="npu", iterations_per_loop=3)
    ok = {"RANK_SIZE": "2", "RANK_ID": "1", "DEVICE_ID": "1", "RANK_TABLE_FILE": table,
          "ASCEND_VISIBLE_DEVICES": "0-3"}
    assert result(env, "rank table", ok) == (
        "ok", "%s (legacy layout): 2 devices on 1 server (10.0.0.1), ranks 0-1; rank 1 is "
              "device 1 of 10.0.0.1" % table)
    assert result(env, "rank table", dict(ok, RANK_SIZE="4", RANK_ID="0")) == (
        "problem", "RANK_SIZE=4 but rank table %s lists 2 devices; set RANK_SIZE=2 or use a "
                   "table with 4 devices" % table)
    assert result(env, "rank table", dict(ok, DEVICE_ID="3")) == (
        "problem", "DEVICE_ID=3 but %s makes rank 1 device 1 of server 10.0.0.1; set "
                   "DEVICE_ID=1 (python -m devices.launch sets it from the table)" % table)
    assert result(env, "rank table", dict(ok, ASCEND_VISIBLE_DEVICES="1,2")) == (
        "problem", "%s puts devices 0,1 on server 10.0.0.1 but ASCEND_VISIBLE_DEVICES=1,2 "
                   "hides 0; make them visible or list only visible devices in the table"
                   % table)
    assert result(env, "rank table", {"RANK_SIZE": "2", "RANK_ID": "0"}) == (
        "problem", "RANK_SIZE=2 on npu needs RANK_TABLE_FILE (the HCCL rank table); start "
                   "with scripts/run_8p.sh, which sets it per process")
    # On cpu HCCL never reads the table: the same mismatch is only a warning.
    status, detail = result(make_env(dataset, device="cpu"), "rank table",
                            dict(ok, RANK_SIZE="1", RANK_ID="0"))
    assert status == "warning" and detail.endswith(
        "(RANK_TABLE_FILE is set, but cpu runs do not use it)")
    # The vendor's POD_NAME would replace RANK_ID as the rank's identity in the table.
    status, detail = result(env, "rank table", dict(ok, POD_NAME="job-7f9c-1"))
    assert status == "problem" and detail.startswith("POD_NAME=job-7f9c-1 is set: with "
                                                     "RANK_TABLE_FILE tf_adapter gives HCCL")


def test_devices_per_server_and_hccs_rings():
    def one_server(device_ids):
        return rank_table.parse(rank_table.to_json(
            [rank_table.Rank(i, "10.0.0.1", d, "192.168.1.%d" % (i + 1))
             for i, d in enumerate(device_ids)], "1.0"))
    assert rank_table.topology_faults(one_server([0, 1, 2])) == [
        "server 10.0.0.1 has 3 devices (0, 1, 2) but HCCL takes 1, 2, 4 or 8 devices per "
        "server; list 1, 2, 4 or 8 of them (make the table with python -m "
        "rank_tables.generate --device_ids)"]
    assert rank_table.topology_faults(one_server([2, 3, 4, 5])) == [
        "server 10.0.0.1's devices 2, 3, 4, 5 span both HCCS rings (0-3 and 4-7); 4 devices "
        "of a server must lie in one ring, e.g. 0,1,2,3"]
    for fine in ([5], [4, 5], [4, 5, 6, 7], list(range(8)), [8, 9, 10]):
        assert rank_table.topology_faults(one_server(fine)) == [], fine


def test_every_server_lists_the_same_number_of_devices():
    def servers(device_ids_per_server):
        ranks = []
        for index, device_ids in enumerate(device_ids_per_server):
            for device_id in device_ids:
                ranks.append(rank_table.Rank(len(ranks), "10.0.0.%d" % (index + 1), device_id,
                                             "192.168.%d.%d" % (index + 1, device_id + 1)))
        return rank_table.parse(rank_table.to_json(ranks, "1.0"))
    assert rank_table.topology_faults(servers([range(8), range(4)])) == [
        "the servers list different numbers of devices (10.0.0.1: 8, 10.0.0.2: 4) but HCCL "
        "needs the same number on every server; list as many on each (make the table with "
        "python -m rank_tables.generate)"]
    assert rank_table.topology_faults(servers([range(4), range(4), range(4)])) == []


# ----------------------------------------------------------------------------- device loop

def test_iterations_per_loop_divides_the_step_counts(npu_bridge, dataset):
    # 12 images / batch 4: 3 steps per epoch.
    env = make_env(dataset, device="npu", max_train_steps=5, iterations_per_loop=2,
                   save_checkpoints_steps=3)
    assert result(env, "iterations_per_loop") == (
        "problem", "--iterations_per_loop=2 does not divide max_train_steps and "
                   "save_checkpoints_steps (max_train_steps 5, save_checkpoints_steps 3): on "
                   "npu one session.run runs 2 steps, so stops and saves fall only on its "
                   "multiples; use --iterations_per_loop=1 or step counts that are "
                   "multiples of 2")
    env = make_env(dataset, device="npu", max_train_steps=12, iterations_per_loop=6,
                   save_checkpoints_steps=6, eval_every_n_epochs=1.0)
    assert result(env, "iterations_per_loop") == (
        "problem", "--iterations_per_loop=6 does not divide the eval interval "
                   "(--eval_every_n_epochs) (max_train_steps 12, save_checkpoints_steps 6, "
                   "the eval interval (--eval_every_n_epochs) 3): on npu one session.run runs "
                   "6 steps, so stops and saves fall only on its multiples; use "
                   "--iterations_per_loop=3 or step counts that are multiples of 6")
    env = make_env(dataset, device="npu", max_train_steps=6, iterations_per_loop=3)
    assert result(env, "iterations_per_loop") == (
        "ok", "3 divides max_train_steps 6, save_checkpoints_steps 3")


def test_iterations_per_loop_is_not_applicable_off_npu(dataset):
    assert result(make_env(dataset, max_train_steps=5), "iterations_per_loop") == (
        "ok", "n/a (cpu): --iterations_per_loop=10 groups steps only on npu")


# ----------------------------------------------------------------------------- batch and LR

def recipe_env(**fields):
    values = dict(model_name="mobilenet_v2", optimizer_name="momentum",
                  restore_checkpoint=None, batch_size=256, num_replicas=8,
                  global_batch=2048, learning_rate=0.1)
    values.update(fields)
    return env_lib.Env(**values)


def test_one_device_lr_on_eight_devices_is_a_warning():
    assert preflight.check_batch_and_lr(recipe_env(), {}, False) == (
        "warning", "lr 0.1 for global batch 2048 (256 x 8 devices) is 0.0125 per 256; the "
                   "mobilenet_v2 recipe scales 0.1 per 256 linearly with the global batch: "
                   "--learning_rate=0.8 (0.1 is near a one-device LR)")
    assert preflight.check_batch_and_lr(recipe_env(learning_rate=0.8), {}, False) == (
        "ok", "global batch 2048 = 256 x 8 devices; lr 0.8 = 0.1 per 256 images "
              "(mobilenet_v2 recipe: 0.1 per 256)")
    # Half way or more (on a log scale) to the scaled LR: a choice, not a slip.
    assert preflight.check_batch_and_lr(recipe_env(learning_rate=0.3), {}, False)[0] == "ok"
    assert preflight.check_batch_and_lr(
        recipe_env(num_replicas=1, global_batch=256), {}, False)[0] == "ok"
    # No recipe fine-tunes MobileNetV2 or trains it with Adam: shown, not judged.
    for fields in (dict(restore_checkpoint="/ckpt/model.ckpt-1"), dict(optimizer_name="adam")):
        status, detail = preflight.check_batch_and_lr(recipe_env(**fields), {}, False)
        assert (status, detail.endswith("(no recipe to compare with)")) == ("ok", True)


def test_lr_warning_on_a_real_eight_worker_env(dataset):
    env = make_env(dataset, batch_size=1, learning_rate=0.0004,
                   environ={"TF_CONFIG": tf_config(0, workers=8)})
    assert result(env, "batch and lr", {"TF_CONFIG": tf_config(0, workers=8)}) == (
        "warning", "lr 0.0004 for global batch 8 (1 x 8 devices) is 0.0128 per 256; the "
                   "mobilenet_v2 recipe scales 0.1 per 256 linearly with the global batch: "
                   "--learning_rate=0.003125 (0.0004 is near a one-device LR)")


# Each recipe's peak LR per 256 images, written here from its source (not read from
# recipes/): TF-Slim 0.1 (MobileNetV2); the MnasNet paper 0.016; the MobileNetV3 paper
# 0.00625; automl's fine-tune 0.0005; kuangliu/pytorch-cifar 0.1 at batch 128 = 0.2;
# the QAT fine-tune a twentieth of that, 0.01.
RECIPE_RATES = {
    "mobilenet_v2": 0.1, "mnasnet_a1": 0.016, "mnasnet_b1": 0.016,
    "mobilenet_v3_large": 0.00625, "mobilenet_v3_small": 0.00625,
    "efficientnet_v2_s_finetune": 0.0005, "mobilenet_v2_cifar10": 0.2,
    "mobilenet_v3_small_cifar10": 0.2, "mobilenet_v2_cifar10_qat": 0.01,
}


@pytest.mark.parametrize("name", sorted(RECIPE_RATES))
def test_each_recipe_judges_its_own_runs_by_its_own_rate(name):
    recipe = recipes.load(name)
    env = recipe_env(model_name=recipe.flags["model_name"],
                     optimizer_name=recipe.flags["optimizer"],
                     restore_checkpoint="/ckpt/model.ckpt-1"
                     if recipe.requires_restore_path else None,
                     learning_rate=RECIPE_RATES[name] * 8)
    status, detail = preflight.check_batch_and_lr(env, {}, False)
    assert status == "ok" and detail.endswith(
        "(%s recipe: %g per 256)" % (name, RECIPE_RATES[name])), detail


@pytest.mark.parametrize("model_name, optimizer, fine_tune, recipe", [
    ("mobilenet_v2_140", "momentum", False, "mobilenet_v2"),  # the longest prefix
    ("mobilenet_v2_cifar", "momentum", False, "mobilenet_v2_cifar10"),
    ("mobilenet_v3_large_075", "rmsprop", False, "mobilenet_v3_large"),
    ("efficientnet_v2_s", "rmsprop", True, "efficientnet_v2_s_finetune"),
    ("efficientnet_v2_b0", "rmsprop", True, None),  # no recipe for B0: shown, not judged
    ("mobilenet_v2", "momentum", True, None),  # the QAT fine-tune is the CIFAR variant's
    ("mobilenet_v2", "adam", False, None),
])
def test_a_variant_follows_its_family_recipe(model_name, optimizer, fine_tune, recipe):
    found = recipes.matching(model_name, optimizer, fine_tune)
    assert (found.name if found else None) == recipe


def test_every_recipe_is_tested():
    assert recipes.names() == sorted(RECIPE_RATES)


# ----------------------------------------------------------------------------- train_dir

def test_stale_train_dir_against_restore_path(dataset, tmp_path):
    source = fake_checkpoint(tmp_path / "source", 3)
    other = fake_checkpoint(tmp_path / "other", 9)
    train_dir = str(tmp_path / "train")
    env = make_env(dataset, train_dir=train_dir, restore_path=source)
    assert result(env, "train_dir") == (
        "ok", "%s holds no checkpoint: starts from --restore_path %s" % (train_dir, source))
    fake_checkpoint(train_dir, 7)
    fixes = ("use a fresh --train_dir, or delete %s's checkpoints to start from "
             "--restore_path, or drop --restore_path to resume" % train_dir)

    def with_record(**start):
        spec = env.model_spec()
        spec.pop("restore_path")
        spec.update(start)
        with open(os.path.join(train_dir, "model_spec.json"), "w") as handle:
            json.dump(spec, handle)
        return result(env, "train_dir")

    assert with_record() == (
        "problem", "--restore_path=%s would be ignored: %s already holds model.ckpt-7 (step 7), "
                   "which the run resumes from, and that training keeps no record of where it "
                   "started; %s" % (source, train_dir, fixes))
    assert with_record(restore_path=None) == (
        "problem", "--restore_path=%s would be ignored: %s already holds model.ckpt-7 (step 7), "
                   "which the run resumes from, and that training started from scratch; %s"
                   % (source, train_dir, fixes))
    assert with_record(restore_path=other)[1].endswith(
        "and that training started from %s; %s" % (other, fixes))
    # The interrupted fine-tune, run again with its own command: a legitimate resume.
    assert with_record(restore_path=source) == (
        "ok", "resumes from %s/model.ckpt-7 (step 7) of the fine-tune from %s"
              % (train_dir, source))
    assert result(make_env(dataset, train_dir=train_dir), "train_dir") == (
        "ok", "resumes from %s/model.ckpt-7 (step 7)" % train_dir)


# A layer's weights and, trained quantization-aware, their range (per tensor: one
# value; per channel: one per output channel), as contrib.quantize names them.
LAYER = "MobilenetV2/Conv/weights"
TRAINED = {"float": {LAYER: [3, 3, 3, 8]},
           "per tensor": {LAYER: [3, 3, 3, 8], "MobilenetV2/Conv/weights_quant/min": [],
                          "MobilenetV2/Conv/weights_quant/max": []},
           "per channel": {LAYER: [3, 3, 3, 8], "MobilenetV2/Conv/weights_quant/min": [8],
                           "MobilenetV2/Conv/weights_quant/max": [8]}}
ASKED = {"float": {}, "per tensor": {"quantize_delay": 0},
         "per channel": {"quantize_delay": 0, "quantize_per_channel": True}}


@pytest.mark.parametrize("trained", sorted(TRAINED))
def test_resuming_with_other_quantization_is_a_problem(dataset, tmp_path, trained):
    """A train_dir's checkpoint resumes only into the quantization it was trained with:
    otherwise its ranges would be missing or reshaped in the graph (TensorFlow stops with
    a line naming no cause) or dropped without a word."""
    train_dir = str(tmp_path / "train")
    fake_checkpoint(train_dir, 5, TRAINED[trained])
    checkpoint = os.path.join(train_dir, "model.ckpt-5")
    flags = {"float": "without --quantize_delay",
             "per tensor": "with --quantize_delay and without --quantize_per_channel",
             "per channel": "with --quantize_delay and --quantize_per_channel"}
    words = {"float": "float", "per tensor": "quantization-aware, per-tensor weight ranges",
             "per channel": "quantization-aware, per-channel weight ranges"}
    for asked, overrides in ASKED.items():
        got = result(make_env(dataset, train_dir=train_dir, **overrides), "train_dir")
        if asked == trained:
            assert got == ("ok", "resumes from %s (step 5)" % checkpoint)
            continue
        assert got == ("problem", "model.ckpt-5 (step 5) in %s was trained %s, and this "
                       "run's flags ask for %s: resume it %s, or start from it in a fresh "
                       "--train_dir with --restore_path=%s" % (
                           train_dir, words[trained], words[asked], flags[trained],
                           checkpoint))


def test_a_per_tensor_run_resumed_per_channel_stops_in_one_line(dataset, tmp_path):
    """train.py itself: one line naming the cause and the fixes, nothing trained."""
    train_dir = str(tmp_path / "train")
    fake_checkpoint(train_dir, 5, TRAINED["per tensor"])
    out = run_python("train.py", "--dataset_dir=" + dataset, "--train_dir=" + train_dir,
                     "--max_train_steps=6", "--quantize_delay=0", "--quantize_per_channel",
                     *MODEL_FLAGS)
    assert single_error_line(out).startswith(
        "error: model.ckpt-5 (step 5) in %s was trained quantization-aware, per-tensor "
        "weight ranges, and this run's flags ask for quantization-aware, per-channel weight "
        "ranges: resume it with --quantize_delay and without --quantize_per_channel" % train_dir)
    assert "step:" not in out.stdout
    assert tf.train.latest_checkpoint(train_dir).endswith("model.ckpt-5")


def test_a_resumed_run_keeps_the_recorded_start(dataset, tmp_path):
    source = fake_checkpoint(tmp_path / "source", 3)
    train_dir = str(tmp_path / "train")
    first = make_env(dataset, train_dir=train_dir, restore_path=source)
    assert first.model_spec()["restore_path"] == os.path.abspath(source)
    assert make_env(dataset, train_dir=train_dir).model_spec()["restore_path"] is None
    # What train() writes: a fresh train_dir records this run's start ...
    assert loop.resumed_spec(first.train_dir) is None
    fake_checkpoint(train_dir, 5)
    with open(os.path.join(train_dir, "model_spec.json"), "w") as handle:
        json.dump(first.model_spec(), handle)
    # ... a resumed one keeps the first run's, whatever its own --restore_path,
    other = fake_checkpoint(tmp_path / "other", 9)
    resumed = make_env(dataset, train_dir=train_dir, restore_path=other)
    spec = resumed.model_spec(loop.resumed_spec(resumed.train_dir))
    assert spec["restore_path"] == os.path.abspath(source)
    # ... and never invents one the first run did not write.
    assert "restore_path" not in resumed.model_spec({"model_name": "mobilenet_v2_035"})


# ----------------------------------------------------------------------------- train.py

@pytest.mark.slow
def test_preflight_command_prints_the_table_and_creates_nothing(dataset, tmp_path):
    train_dir = str(tmp_path / "never_created")
    out = run_python("train.py", "--dataset_dir=" + dataset, "--train_dir=" + train_dir,
                     "--max_train_steps=6", "--preflight", *MODEL_FLAGS)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "preflight check      status   detail",
        "dataset              ok       train 12 records in 2 shards, validation 6 records "
        "in 2 shards = dataset_meta.json",
        "rank table           ok       n/a (cpu, 1 rank, no RANK_TABLE_FILE)",
        "iterations_per_loop  ok       n/a (cpu): --iterations_per_loop=10 groups steps "
        "only on npu",
        "batch and lr         ok       global batch 4 = 4 x 1 device; lr 0.1 = 6.4 per 256 "
        "images (mobilenet_v2 recipe: 0.1 per 256)",
        "train_dir            ok       %s holds no checkpoint: starts from scratch" % train_dir,
        "preflight: 0 problems, 0 warnings"]
    assert not os.path.exists(train_dir)


@pytest.mark.slow
def test_preflight_command_on_npu_exits_2_on_a_problem(dataset, tmp_path):
    train_dir = str(tmp_path / "never_created")
    out = run_python("train.py", "--dataset_dir=" + dataset, "--train_dir=" + train_dir,
                     "--device=npu", "--max_train_steps=5", "--iterations_per_loop=2",
                     "--save_checkpoints_steps=3", "--preflight", *MODEL_FLAGS,
                     env={"PYTHONPATH": STUB + os.pathsep + ROOT})
    line = single_error_line(out)
    assert line.startswith("error: --iterations_per_loop=2 does not divide max_train_steps "
                           "and save_checkpoints_steps (max_train_steps 5, "
                           "save_checkpoints_steps 3)")
    assert ("iterations_per_loop  problem  --iterations_per_loop=2 does not divide"
            in out.stdout)
    assert out.stdout.splitlines()[-1] == "preflight: 1 problem, 0 warnings"
    assert not os.path.exists(train_dir)


@pytest.mark.slow
def test_training_stops_before_the_graph_on_a_stale_train_dir(dataset, tmp_path):
    source = fake_checkpoint(tmp_path / "source", 3)
    train_dir = str(tmp_path / "train")
    fake_checkpoint(train_dir, 7)
    before = sorted(os.listdir(train_dir))
    out = run_python("train.py", "--dataset_dir=" + dataset, "--train_dir=" + train_dir,
                     "--max_train_steps=6", "--restore_path=" + source, *MODEL_FLAGS)
    assert single_error_line(out) == (
        "error: --restore_path=%s would be ignored: %s already holds model.ckpt-7 (step 7), "
        "which the run resumes from, and that training keeps no record of where it "
        "started; use a fresh --train_dir, or delete %s's checkpoints to start from "
        "--restore_path, or drop --restore_path to resume" % (source, train_dir, train_dir))
    # Nothing trained or recorded: only the log, whose table shows every check.
    assert sorted(os.listdir(train_dir)) == sorted(before + ["train_log.log"])
    with open(os.path.join(train_dir, "train_log.log")) as handle:
        log = handle.read()
    for row in ("dataset              ok       train 2 shards, validation 2 shards",
                "batch and lr         ok       global batch 4 = 4 x 1 device",
                "train_dir            problem  --restore_path=%s would be ignored" % source):
        assert row in log
    assert "step:" not in out.stdout
