"""Crashes, pre-emption, corrupt data and divergence, with real processes and files:
kill -9 at random moments (one aimed at a checkpoint being written), SIGTERM, a watching
evaluator beside it all, bad records in three forms, NaN, an interrupted conversion."""
import json
import os
import random
import re
import shutil
import signal
import threading
import time

import numpy as np
import pytest

from dataloader import data_provider, record_check
from datasets import build_tfrecords, dataset_factory
from tests.cli_helpers import run_module, run_python, single_error_line
from utils import checkpoints, errors
from utils.tf_compat import tf

MODEL = "--model_name=mobilenet_v2_035"
STEP_LINE = re.compile(r"^step:(\d+) .* lr:(\S+) ", re.M)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("rel_ds")), num_classes=3,
                              per_class=8, size=32)


def train_args(dataset_dir, train_dir, *extra):
    return ["--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir, MODEL,
            "--train_image_size=32", "--batch_size=4", "--learning_rate=0.01",
            "--bn_decay=0.9", "--seed=5"] + list(extra)


# ----------------------------------------------------------------------------- helpers

class Background(object):
    """A command line started with run_python(background=True); its output gathered by
    threads as it comes, so the test can wait for a line."""

    def __init__(self, script, *args):
        self.process = run_python(script, *args, background=True)
        self.stdout, self.stderr = [], []
        self._threads = [threading.Thread(target=self._pump, args=(stream, lines))
                         for stream, lines in ((self.process.stdout, self.stdout),
                                               (self.process.stderr, self.stderr))]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @staticmethod
    def _pump(stream, lines):
        for line in stream:
            lines.append(line)

    def wait_for(self, pattern, timeout=120):
        """The first match of ``pattern`` in stdout; fails when the process ends first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            match = re.search(pattern, "".join(self.stdout), re.M)
            if match:
                return match
            assert self.process.poll() is None, self.output()
            time.sleep(0.02)
        raise AssertionError("no %r in %ds: %s" % (pattern, timeout, self.output()))

    def finish(self, timeout=300):
        self.process.wait(timeout)
        for thread in self._threads:
            thread.join(10)
        return self.process.returncode

    def output(self):
        return "".join(self.stdout)[-3000:] + "".join(self.stderr)[-3000:]


def listed_checkpoints(train_dir):
    state = tf.train.get_checkpoint_state(train_dir)
    return list(state.all_model_checkpoint_paths) if state else []


def assert_restores(prefix):
    """Every tensor of the checkpoint reads back; global_step is the one in its name;
    the weights are finite."""
    reader = tf.train.load_checkpoint(prefix)
    names = reader.get_variable_to_shape_map()
    values = {name: reader.get_tensor(name) for name in names}
    assert int(values["global_step"]) == int(prefix.rsplit("-", 1)[1]), prefix
    for name, value in values.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), (prefix, name)
    return int(values["global_step"])


def polynomial_lr(step, peak, final_step):
    return peak * (1.0 - min(step, final_step) / float(final_step))


# ----------------------------------------------------------------------------- kill -9

FINAL_STEP = 120
KILLS = 3
PEAK_LR = 0.002
# Why this run clips gradients: without it, this tiny setup (MobileNetV2-0.35 at 32 px,
# batch 4, so the last blocks' batch norm sees 4 values per channel) failed once in this
# test with "loss became nan at step 45". Reproduced without any kill at LR 0.005 (1 run
# of 4: NaN at step 43): single steps make gradients of 1e4-1e6 (the Momentum slots at
# steps 30, 35, 40: 7e2, 3e4, 1.5e6), the weights grow by orders of magnitude while the
# loss stays near 2 (batch norm hides their scale), the weight-decay term read 94, 662,
# then 5e29 at steps 40-42, and the next step overflowed to NaN. At 0.002 the decay
# term went from 0.045 to 9.6 by step 40 in one run (the first conv's weights 250 times
# their initial size), to 1.0 in another. Chance decides because the training crops are
# not seeded by --seed (dataloader/preprocessing.py calls
# tf.compat.v1.image.sample_distorted_bounding_box without a seed, and that op ignores
# the graph-level one): every run and every resumed run draws other crops. Resuming
# itself changes nothing (one run resumed from steps 20, 40, 60, 80: no spike).
# --clip_gradient_norm=1 bounds every step instead: with momentum 0.9 the weights move
# at most 10 x LR x 1 per step in global norm, 0.02 at the peak and 2.4 over all 120
# steps, far from any overflow whatever the crops (9 runs of 120 steps at LR 0.002,
# 0.005 and 0.01: none diverged, the decay term stayed at its initial 0.045).
CLIP = "--clip_gradient_norm=1"
SAVE_AIMS = 5  # kills aimed at a save before the test gives up on landing one


def save_cut_short(train_dir):
    """What shows that a kill landed while a checkpoint was being written: the Saver's
    model.ckpt-N_temp folder still there, or a checkpoint newer than the newest one the
    state file lists (written, not yet recorded). None when every save had finished."""
    names = os.listdir(train_dir)
    for name in names:
        if re.match(r"^model\.ckpt-\d+_temp$", name):
            return "%s left behind" % name
    listed = [int(p.rsplit("-", 1)[1]) for p in listed_checkpoints(train_dir)]
    written = [int(m.group(1)) for m in map(re.compile(r"^model\.ckpt-(\d+)\.").match, names)
               if m]
    newer = [step for step in written if step > max(listed or [-1])]
    if newer:
        return "model.ckpt-%d written but not in the state file" % max(newer)
    return None


@pytest.mark.slow
def test_training_survives_kill_9_and_sigterm_beside_a_watching_evaluator(dataset_dir,
                                                                          tmp_path):
    """Three kill -9 (the second while a checkpoint is being written: shown by what the
    save left behind, and repeated until one lands so), one SIGTERM, then a run to the
    end; every listed checkpoint restores after each, the step and the LR schedule carry
    on, and an evaluator watching throughout reads each checkpoint once."""
    train_dir = str(tmp_path / "train")
    args = train_args(dataset_dir, train_dir, "--max_train_steps=%d" % FINAL_STEP,
                      "--save_checkpoints_steps=5", "--keep_checkpoint_max=3",
                      "--log_every_n_steps=5", "--learning_rate_decay_type=polynomial",
                      "--learning_rate=%g" % PEAK_LR, CLIP)
    watcher = Background("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + train_dir,
                         "--dataset_dir=" + dataset_dir, MODEL, "--eval_image_size=32",
                         "--batch_size=6", "--watch", "--watch_interval=1",
                         "--watch_timeout=600", "--final_step=%d" % FINAL_STEP)
    rng = random.Random(9)
    outputs, resumed_from, aimed = [], [], []

    def start_run():
        run = Background("train.py", *args)
        begun = run.wait_for(r"^(rank 0 resumes from \S+ at step (\d+)|step:\d+ )").group(2)
        resumed_from.append(int(begun) if begun else 0)
        return run, int(run.wait_for(r"^step:(\d+) ").group(1))

    def stopped(run):
        """The checks after each stop: every listed checkpoint restores."""
        outputs.append("".join(run.stdout))
        listed = listed_checkpoints(train_dir)
        assert listed, run.output()
        steps = [assert_restores(prefix) for prefix in listed]
        assert steps == sorted(steps) and steps[-1] < FINAL_STEP, run.output()

    for attempt in range(KILLS + 1):
        if attempt == 1:
            # Aimed at a save: kill when the Saver's temporary folder shows up; a kill
            # that comes after the save finished does not count, and another run tries.
            for _ in range(SAVE_AIMS):
                run, _ = start_run()
                deadline = time.time() + 30
                while time.time() < deadline and not any(
                        name.endswith("_temp") for name in os.listdir(train_dir)):
                    time.sleep(0.002)
                os.kill(run.process.pid, signal.SIGKILL)
                assert run.finish() == -signal.SIGKILL, run.output()
                aimed.append(save_cut_short(train_dir))
                stopped(run)
                if aimed[-1]:
                    break
            assert aimed[-1], "none of %d kills landed during a save" % SAVE_AIMS
            continue
        run, first_logged = start_run()
        # Within the next few logged steps: a delay in seconds would let a fast machine
        # (the tiny model runs ~100 steps/s) finish the run before the kill.
        run.wait_for(r"^step:%d " % (first_logged + 5 * rng.randint(0, 2)))
        if attempt < KILLS:
            os.kill(run.process.pid, signal.SIGKILL)
            assert run.finish() == -signal.SIGKILL, run.output()
        else:
            os.kill(run.process.pid, signal.SIGTERM)
            assert run.finish() == 128 + signal.SIGTERM, run.output()
            ended = re.search(r"^stopped by SIGTERM at step (\d+); checkpoint (\S+) written",
                              "".join(run.stdout), re.M)
            assert ended, run.output()
            assert listed_checkpoints(train_dir)[-1] == ended.group(2)
            assert ended.group(2).endswith("model.ckpt-" + ended.group(1))
        stopped(run)

    final = run_python("train.py", *args)
    assert final.returncode == 0, final.stderr[-3000:]
    outputs.append(final.stdout)
    resumed_from.append(int(re.search(r"^rank 0 resumes from \S+ at step (\d+)", final.stdout,
                                      re.M).group(1)))
    assert "training done: step %d " % FINAL_STEP in final.stdout
    assert [assert_restores(p) for p in listed_checkpoints(train_dir)][-1] == FINAL_STEP
    # Nothing half-written is left: every checkpoint file restores, no temporary folder.
    leftovers = [n for n in os.listdir(train_dir) if "_temp" in n or ".tmp" in n]
    assert leftovers == []
    for name in os.listdir(train_dir):
        if name.endswith(".index"):
            assert_restores(os.path.join(train_dir, name[:-len(".index")]))
    # The global step carries on and the LR follows the schedule in every run (a step's
    # line shows the LR the step trained with, computed from the step before it).
    assert resumed_from[0] == 0 and resumed_from == sorted(resumed_from)
    assert resumed_from[-1] > 0
    for start, output in zip(resumed_from, outputs):
        lines = [(int(s), float(lr)) for s, lr in STEP_LINE.findall(output)]
        assert lines and lines[0][0] > start, output[-2000:]
        for step, lr in lines:
            assert lr == pytest.approx(polynomial_lr(step - 1, PEAK_LR, FINAL_STEP),
                                       rel=1e-4, abs=1e-9), (step, lr)
    assert lines[-1][0] == FINAL_STEP

    assert watcher.finish(timeout=300) == 0, watcher.output()
    assert "Traceback" not in "".join(watcher.stderr), watcher.output()
    records = json.load(open(os.path.join(train_dir, "eval", "eval_results.json")))["results"]
    evaluated = [r["checkpoint"] for r in records]
    assert len(evaluated) == len(set(evaluated)), evaluated  # none twice
    assert records[-1]["global_step"] == FINAL_STEP


# ----------------------------------------------------------------------------- repair

def _save_tiny_checkpoints(directory, steps):
    with tf.Graph().as_default():
        step = tf.train.get_or_create_global_step()
        tf.Variable(np.arange(4, dtype=np.float32), name="w")
        saver = tf.train.Saver(max_to_keep=10, save_relative_paths=True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for value in steps:
                sess.run(step.assign(value))
                saver.save(sess, os.path.join(directory, "model.ckpt"), global_step=value)


def test_repair_after_a_save_cut_short(tmp_path):
    """What a kill during a save leaves (a half-written newer checkpoint, the Saver's
    temporary folder and files, a listed checkpoint made unreadable) is cleared from the
    training directory: temporary files removed, checkpoint files moved to
    damaged_checkpoints/ (never deleted), and the state file keeps only checkpoints
    that restore."""
    directory = str(tmp_path)
    _save_tiny_checkpoints(directory, [3, 6, 9])
    # Kill during the save of step 12: data renamed into place, index half-written.
    shutil.copy(os.path.join(directory, "model.ckpt-9.data-00000-of-00001"),
                os.path.join(directory, "model.ckpt-12.data-00000-of-00001"))
    with open(os.path.join(directory, "model.ckpt-12.index"), "wb") as handle:
        handle.write(open(os.path.join(directory, "model.ckpt-9.index"), "rb").read()[:40])
    os.makedirs(os.path.join(directory, "model.ckpt-15_temp"))
    open(os.path.join(directory, "checkpoint.tmp" + "ab" * 16), "w").close()
    assert checkpoints.repair_checkpoints(directory) != []
    kept = ["model.ckpt-%d.%s" % (s, ext) for s in (3, 6, 9)
            for ext in ("index", "data-00000-of-00001", "meta")]
    assert sorted(os.listdir(directory)) == sorted(
        ["checkpoint", checkpoints.DAMAGED_DIR] + kept)
    assert sorted(os.listdir(os.path.join(directory, checkpoints.DAMAGED_DIR))) == [
        "model.ckpt-12.data-00000-of-00001", "model.ckpt-12.index"]
    assert checkpoints.repair_checkpoints(directory) == []  # nothing more to do
    # A listed checkpoint that no longer restores is moved aside, out of the state file.
    with open(os.path.join(directory, "model.ckpt-9.index"), "r+b") as handle:
        handle.truncate(30)
    lines = checkpoints.repair_checkpoints(directory)
    assert any("model.ckpt-9 is damaged" in line and "resuming from model.ckpt-6" in line
               for line in lines), lines
    assert tf.train.latest_checkpoint(directory).endswith("model.ckpt-6")
    assert [os.path.basename(p) for p in listed_checkpoints(directory)] == [
        "model.ckpt-3", "model.ckpt-6"]
    # None left that restores: one clear error, nothing moved behind the user's back.
    for step in (3, 6):
        os.remove(os.path.join(directory, "model.ckpt-%d.data-00000-of-00001" % step))
    with pytest.raises(errors.UserError, match="no intact checkpoint in "):
        checkpoints.repair_checkpoints(directory)
    assert os.path.exists(os.path.join(directory, "model.ckpt-6.index"))


# ----------------------------------------------------------------------------- NaN

@pytest.mark.slow
def test_nan_stops_with_one_line_and_the_newest_checkpoint_is_finite(dataset_dir, tmp_path):
    train_dir = str(tmp_path / "train")
    out = run_python("train.py", *train_args(dataset_dir, train_dir, "--max_train_steps=40",
                                             "--save_checkpoints_steps=1",
                                             "--learning_rate=1e10", "--log_every_n_steps=1"))
    line = single_error_line(out)
    assert re.search(r"(loss|weights) became (nan|inf|NaN or Inf)", line), line
    assert "training diverged" in line and "--learning_rate" in line
    newest = tf.train.latest_checkpoint(train_dir)
    assert "newest checkpoint, %s " % newest in line
    for prefix in listed_checkpoints(train_dir):
        assert_restores(prefix)  # finite weights only


# ----------------------------------------------------------------------------- bad records

def _rewrite_record(path, index, change):
    records = list(tf.io.tf_record_iterator(path))
    example = tf.train.Example.FromString(records[index])
    change(example.features.feature)
    records[index] = example.SerializeToString()
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def _garbage_image(feature):
    feature["image/encoded"].bytes_list.value[0] = b"\x00 not an image " * 20


def _broken_jpeg(feature):  # starts like a JPEG, does not decode
    feature["image/encoded"].bytes_list.value[0] = (
        feature["image/encoded"].bytes_list.value[0][:200])


def _label_7(feature):
    feature["image/class/label"].int64_list.value[0] = 7


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) - 100)


@pytest.fixture(scope="module")
def corrupt_dataset(tmp_path_factory):
    """4 training shards: a garbage image in shard 1 (record 2), a label of 7 for 3
    classes in shard 2 (record 1), shard 3 cut short 100 bytes before its end."""
    from tests.ds_helpers import write_tiny_dataset
    records = write_tiny_dataset(str(tmp_path_factory.mktemp("rel_bad")), num_classes=3,
                                 per_class=8, size=32, train_shards=4)
    shard = os.path.join(records, "train-%05d-of-00004")
    _rewrite_record(shard % 1, 2, _garbage_image)
    _rewrite_record(shard % 2, 1, _label_7)
    _truncate(shard % 3)
    return records


def _copy_with(source, tmp_path, change):
    """The dataset at ``source`` with one thing changed in train shard 0."""
    target = str(tmp_path / "records")
    shutil.copytree(source, target)
    change(os.path.join(target, "train-00000-of-00002"))
    return target


def _first_error(records):
    """Reads the training input once, as training does; the error it stops with."""
    spec = dataset_factory.get_dataset("auto", records)
    input_fn = data_provider.make_input_fn(spec, "train", True, 4, 32, num_classes=3,
                                           num_epochs=1, seed=1)
    with tf.Graph().as_default():
        batch = tf.data.make_one_shot_iterator(input_fn()).get_next()
        with tf.Session() as sess:
            with pytest.raises(tf.errors.OpError) as err:
                while True:
                    sess.run(batch)
    return err.value


@pytest.mark.parametrize("change, problem, named_by_assertion", [
    (lambda path: _rewrite_record(path, 3, _garbage_image), errors.NOT_AN_IMAGE, True),
    (lambda path: _rewrite_record(path, 3, _label_7), errors.BAD_LABEL, True),
    (lambda path: _rewrite_record(path, 3, _broken_jpeg), errors.UNDECODABLE, False),
    (_truncate, errors.CUT_SHORT, False),
], ids=["garbage_image", "label_out_of_range", "broken_jpeg", "truncated_shard"])
def test_each_bad_record_is_found_by_shard_and_index(dataset_dir, tmp_path, change, problem,
                                                     named_by_assertion):
    """In-process, per kind: the pipeline's own assertion names the shard and record, or
    (a decoder's or the reader's error, which name neither) the search training runs
    then does."""
    records = _copy_with(dataset_dir, tmp_path, change)
    shard = os.path.join(records, "train-00000-of-00002")
    err = _first_error(records)
    described = errors.bad_record_in(err)
    if named_by_assertion:
        words = {errors.NOT_AN_IMAGE: "image/encoded is not a JPEG, PNG, GIF or BMP image",
                 errors.BAD_LABEL: "label 7 (image/class/label 7 - --labels_offset 0) is "
                                   "outside [0, 3)"}[problem]
        assert described == "bad record in %s: record 3 (counting from 0): %s" % (
            shard, words), described
        return
    assert described is None
    files = dataset_factory.get_dataset("auto", records).list_files("train")
    if problem == errors.CUT_SHORT:
        assert isinstance(err, tf.errors.DataLossError)
        (path, count, what), = record_check.cut_short_shards(files)
        assert path == shard and count == 11 and "cut short" in what
    else:
        found = data_provider.find_bad_record(files, 32, num_classes=3)
        assert found[:3] == (shard, 3, problem)


@pytest.mark.slow
def test_bad_record_by_default_stops_with_one_line_naming_it(corrupt_dataset, tmp_path):
    out = run_python("train.py", *train_args(corrupt_dataset, str(tmp_path / "train"),
                                             "--max_train_steps=12"))
    line = single_error_line(out)
    assert re.match(r"error: bad record in %s/train-0000[123]-of-00004: record \d+ "
                    r"\(counting from 0\): " % re.escape(corrupt_dataset), line), line
    assert "--skip_corrupt_records" in line


@pytest.mark.slow
def test_skip_corrupt_records_trains_on_and_counts(corrupt_dataset, tmp_path):
    """Two epochs' steps: each bad record is skipped (and counted) each time it comes
    round, and named once."""
    train_dir = str(tmp_path / "train")
    out = run_python("train.py", *train_args(corrupt_dataset, train_dir, "--max_epoch=2",
                                             "--skip_corrupt_records", "--log_every_n_steps=4",
                                             "--save_checkpoints_secs=1"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert tf.train.latest_checkpoint(train_dir).endswith("model.ckpt-12")  # time-based saves
    skipped = re.findall(r"^skipped bad record in (\S+): record (\d+) \(counting from 0\): "
                         r"(.*) \((\d+) skipped so far\)$", out.stdout, re.M)
    shard = corrupt_dataset + "/train-%05d-of-00004"
    named = sorted((path, int(index)) for path, index, _, _ in skipped)
    assert named == [(shard % 1, 2), (shard % 2, 1), (shard % 3, 5)], out.stdout
    reasons = " ".join(what for _, _, what, _ in skipped)
    for fragment in ("not a JPEG", "label 7", "cut short"):
        assert fragment in reasons
    # Each epoch skips the bad records again (12 steps of 4 reach into a third epoch of the
    # 21 good ones); the shard cut short is counted once, when found at the start.
    total = re.search(r"^skipped (\d+) bad records in all \(3 different ones", out.stdout, re.M)
    assert total and int(total.group(1)) >= 1 + 2 * 2, out.stdout
    result = json.load(open(os.path.join(train_dir, "train_result.json")))
    assert result["skipped_records"] == int(total.group(1))
    assert (result["start_step"], result["final_step"]) == (0, 12)


# ----------------------------------------------------------------------------- converter

def _linked_image_tree(root, per_class, size=256):
    """Noise PNGs (slow to convert: decode + JPEG re-encode), one file per class,
    hard-linked per_class times (instant to make)."""
    from PIL import Image
    for label in range(2):
        folder = os.path.join(root, "class_%d" % label)
        os.makedirs(folder)
        first = os.path.join(folder, "img_0000.png")
        noise = np.random.RandomState(label).randint(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(noise).save(first)
        for i in range(1, per_class):
            os.link(first, os.path.join(folder, "img_%04d.png" % i))


@pytest.mark.slow
def test_converter_killed_midway_leaves_only_complete_shards_and_reruns_to_the_end(
        tmp_path):
    images, out = str(tmp_path / "images"), str(tmp_path / "records")
    _linked_image_tree(images, per_class=400)
    args = ["--train_directory=" + images, "--output_directory=" + out, "--train_shards=16",
            "--num_threads=1"]
    converter = run_module("datasets.build_tfrecords", *args, background=True)
    deadline = time.time() + 120
    while time.time() < deadline and converter.poll() is None and not (
            os.path.isdir(out) and any(n.startswith("train-") for n in os.listdir(out))):
        time.sleep(0.01)
    converter.kill()  # SIGKILL
    assert converter.wait(60) == -signal.SIGKILL, "the conversion finished before the kill"

    names = os.listdir(out)
    complete = sorted(n for n in names if n.startswith("train-"))
    assert complete and len(complete) < 16 and "dataset_meta.json" not in names
    for name in complete:  # every shard under its final name is whole: 50 images each
        assert record_check.scan_shard(os.path.join(out, name)) == (50, None)
        assert sum(1 for _ in tf.io.tf_record_iterator(os.path.join(out, name))) == 50
    with pytest.raises(errors.UserError, match="did not finish"):
        dataset_factory.get_dataset("auto", out)

    rerun = run_module("datasets.build_tfrecords", *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(r"resuming the unfinished conversion in \S+: %d of 16 shards are "
                     r"complete and kept" % len(complete), rerun.stdout), rerun.stdout
    assert "wrote train 800 images in 16 shards" in rerun.stdout
    assert not any(n.startswith(".tmp-") for n in os.listdir(out))
    # Byte for byte what an uninterrupted conversion writes.
    reference = str(tmp_path / "reference")
    build_tfrecords.convert(train_directory=images, output_directory=reference,
                            train_shards=16, num_threads=2)
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))
    for name in os.listdir(reference):
        with open(os.path.join(out, name), "rb") as a, \
                open(os.path.join(reference, name), "rb") as b:
            assert a.read() == b.read(), name
    assert dataset_factory.get_dataset("auto", out).num_samples("train") == 800


def test_ranks_creating_one_train_dir_at_once_all_succeed(tmp_path):
    """Every rank of a multi-process run checks --train_dir at the same moment; a shared
    probe file name let one rank delete another's probe (a flaky 'No such file or
    directory' on CI), and a check-then-makedirs let two create it ('File exists').
    An exception in a thread does not fail pytest by itself: each thread records
    whatever it raised (a UserError or anything else) and that it finished."""
    from utils.files import ensure_writable_dir
    raised, finished = [], []

    def rank(path):
        try:
            for _ in range(100):
                ensure_writable_dir(path)
        except BaseException as err:  # noqa: B902, every exception is reported below
            raised.append("%s: %s" % (type(err).__name__, err))
        else:
            finished.append(path)

    for trial in range(3):
        path = str(tmp_path / str(trial) / "train")
        threads = [threading.Thread(target=rank, args=(path,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert raised == []
        assert os.listdir(path) == []  # no probe left behind
    assert len(finished) == 3 * 8
