"""Fine-tuning through train.py on tiny records: restore with the head excluded, frozen
backbone, resume wins over --restore_path, misfits named in one line; the shape-aware
--restore_exclude=auto, its restore table and --restore_dry_run (10 classes -> 5)."""
import os

import numpy as np
import pytest

import env as env_lib
from nets import nets_factory
from tests.cli_helpers import run_python, single_error_line
from tests.test_env_schedules import flag_values
from training import finetune
from utils.errors import UserError
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
    source = write_tiny_dataset(str(root / "src"), num_classes=10, per_class=4)
    target = write_tiny_dataset(str(root / "dst"), num_classes=5, per_class=4)
    return source, target


@pytest.fixture(scope="module")
def source_checkpoint(datasets, tmp_path_factory):
    train_dir = str(tmp_path_factory.mktemp("ft_source"))
    out = train("--dataset_dir=" + datasets[0], "--train_dir=" + train_dir,
                "--max_train_steps=3")
    assert out.returncode == 0, out.stderr[-3000:]
    return os.path.join(train_dir, "model.ckpt-3")


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("extra, fragments", [
    (["--restore_exclude=none"],
     ["cannot restore MobilenetV2/Logits/Conv2d_1c_1x1/weights: shape [1, 1, 1280, 10] in",
      "--restore_exclude=MobilenetV2/Logits/"]),
    (["--restore_path=/no/such/ckpt"], ["no checkpoint at /no/such/ckpt"]),
    (["--freeze_backbone", "--trainable_scopes=MobilenetV2/Conv/"], ["not both"]),
])
def test_misfits_get_one_line(datasets, source_checkpoint, tmp_path, extra, fragments):
    args = ["--dataset_dir=" + datasets[1], "--train_dir=" + str(tmp_path),
            "--max_train_steps=1", "--restore_path=" + source_checkpoint] + extra
    line = single_error_line(train(*args))
    for fragment in fragments:
        assert fragment in line


# ------------------------------------------------------------ --restore_exclude=auto

def auto_table(checkpoint):
    """What the warm start logs for the 10-class source fine-tuned to 5 classes."""
    return [
        "restored 260 variables from %s; skipped 2 of another shape; 0 new "
        "(--restore_exclude=auto)" % checkpoint,
        "  block                                   restored   skipped       new  excluded",
        "  MobilenetV2/Conv .. Conv_1 (19 blocks)       260         0         0         0",
        "  MobilenetV2/Logits                             0         2         0         0",
        "  total                                        260         2         0         0",
        "  skipped  MobilenetV2/Logits/Conv2d_1c_1x1/weights  checkpoint [1, 1, 1280, 10]  "
        "model [1, 1, 1280, 5]",
        "  skipped  MobilenetV2/Logits/Conv2d_1c_1x1/biases   checkpoint [10]              "
        "model [5]",
        "  not used from the checkpoint: 159 tensors (158 Momentum, 1 global_step)"]


@pytest.fixture(scope="module")
def auto_args(datasets, source_checkpoint):
    return ["--dataset_dir=" + datasets[1], "--max_train_steps=1", "--restore_exclude=auto",
            "--restore_path=" + os.path.dirname(source_checkpoint)]


@pytest.mark.slow
def test_auto_restores_backbone_bit_for_bit_and_skips_only_the_head(
        source_checkpoint, auto_args, tmp_path):
    train_dir = str(tmp_path)
    out = train("--train_dir=" + train_dir, *auto_args)
    assert out.returncode == 0, out.stderr[-3000:]
    source = tensors(source_checkpoint)
    start = tensors(os.path.join(train_dir, "model.ckpt-0"))
    assert start[HEAD + "Conv2d_1c_1x1/weights"].shape == (1, 1, 1280, 5)
    assert source[HEAD + "Conv2d_1c_1x1/weights"].shape == (1, 1, 1280, 10)
    backbone = [name for name in start if not name.startswith(HEAD)]
    assert len(backbone) == 260 and len(start) == 262
    for name in backbone:
        np.testing.assert_array_equal(start[name], source[name], err_msg=name)
    table = auto_table(source_checkpoint)
    lines = out.stdout.splitlines()
    assert lines[lines.index(table[0]):lines.index(table[0]) + len(table)] == table
    with open(os.path.join(train_dir, "train_log.log")) as log:
        logged = [line.split(" ", 2)[2] for line in log.read().splitlines()]
    assert [line for line in logged if line in table] == table  # the training log too


@pytest.mark.slow
def test_dry_run_prints_the_table_and_writes_nothing(source_checkpoint, auto_args, tmp_path):
    train_dir = str(tmp_path / "never_created")
    out = train("--train_dir=" + train_dir, "--restore_dry_run", *auto_args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == auto_table(source_checkpoint) + [
        "dry run: nothing trained or written; drop --restore_dry_run to train"]
    assert not os.path.exists(train_dir)


# In-process: the plan and its table on graphs built with nets_factory.

class Lines(object):
    """A logger keeping the lines it is given."""

    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(line)


def model_variables(model_name, num_classes, extra_layer=False):
    """The model's variables (names, shapes) in a graph of their own."""
    with tf.Graph().as_default():
        nets_factory.get_network_fn(model_name, num_classes)(tf.zeros([1, 32, 32, 3]))
        if extra_layer:
            tf.get_variable("MobilenetV2/Extra/weights", [1, 1, 8, 8])
        return tf.global_variables()


def test_auto_starts_new_layers_afresh_and_lists_them(source_checkpoint):
    variables = model_variables("mobilenet_v2_035", 10, extra_layer=True)
    plan = finetune.plan_restore(source_checkpoint, variables, finetune.AUTO, False,
                                 ("MobilenetV2/Logits",))
    assert plan.missing == ["MobilenetV2/Extra/weights"] and not plan.skipped
    assert finetune.report(plan)[1:] == [
        "  block                                   restored   skipped       new  excluded",
        "  MobilenetV2/Conv .. Logits (20 blocks)       262         0         0         0",
        "  MobilenetV2/Extra                              0         0         1         0",
        "  total                                        262         0         1         0",
        "  new      MobilenetV2/Extra/weights  model [1, 1, 8, 8]",
        "  not used from the checkpoint: 159 tensors (158 Momentum, 1 global_step)"]
    # Explicit scopes keep --ignore_missing_vars: absent variables fail without it.
    with pytest.raises(UserError, match="lacks 1 of the model's variables .first: "
                                        "MobilenetV2/Extra/weights.; check --model_name"):
        finetune.plan_restore(source_checkpoint, variables, (HEAD,), False)
    plan = finetune.plan_restore(source_checkpoint, variables, (HEAD,), True)
    assert finetune.report(plan)[0].endswith(
        "; excluded 2 (MobilenetV2/Logits/); 1 missing (initialised afresh; first: "
        "MobilenetV2/Extra/weights)")
    assert finetune.report(plan)[3] == (
        "  MobilenetV2/Logits                             0         0         0         2")


@pytest.mark.slow
def test_auto_refuses_a_checkpoint_of_another_depth(source_checkpoint):
    """A 0.5 MobileNetV2 takes 73 of the 0.35 checkpoint's 260 backbone tensors by name
    and shape (channel counts rounded to 8 coincide): 'whatever fits' alone would start
    from a patchwork of the two networks."""
    variables = model_variables("mobilenet_v2_050", 5)
    with pytest.raises(UserError) as err:
        finetune.plan_restore(source_checkpoint, variables, finetune.AUTO, False,
                              ("MobilenetV2/Logits",))
    assert str(err.value).startswith(
        "--restore_exclude=auto: 187 of the model's 260 backbone variables do not fit %s "
        "(187 of another shape, 0 absent; first: MobilenetV2/expanded_conv_1/project/"
        "weights, shape [1, 1, 48, 8] in the checkpoint but [1, 1, 48, 16] in the model): "
        "it holds another network; check --model_name" % source_checkpoint)


@pytest.mark.slow
def test_auto_limit_is_a_tenth_of_the_backbone(source_checkpoint):
    """26 of 260 backbone variables may be new; 27 mean another network."""
    shapes = tf.train.load_checkpoint(source_checkpoint).get_variable_to_shape_map()
    names = sorted(n for n in shapes if n.startswith("MobilenetV2/")
                   and not n.endswith("/Momentum") and not n.startswith(HEAD))
    for renamed, fails in ((26, False), (27, True)):
        with tf.Graph().as_default():
            variables = [tf.get_variable(("New/" if i < renamed else "") + name,
                                         shapes[name]) for i, name in enumerate(names)]
            if fails:
                with pytest.raises(UserError, match="27 of the model's 260 backbone"):
                    finetune.plan_restore(source_checkpoint, variables, finetune.AUTO, False)
            else:
                plan = finetune.plan_restore(source_checkpoint, variables, finetune.AUTO,
                                             False)
                assert (len(plan.restored), len(plan.missing)) == (234, 26)


@pytest.mark.slow
def test_dry_run_in_process_says_when_train_dir_would_resume(datasets, source_checkpoint):
    def env(**overrides):
        values = dict(dataset_dir=datasets[1], model_name="mobilenet_v2_035",
                      train_image_size=32, batch_size=4, max_train_steps=1, device="cpu",
                      restore_dry_run=True)
        values.update(overrides)
        return env_lib.load_env(flag_values(**values), environ={})

    with pytest.raises(UserError, match="^--restore_dry_run shows the warm start from "
                                        "--restore_path; give --restore_path=CHECKPOINT"):
        env()
    logger = Lines()
    finetune.restore_dry_run(env(restore_path=source_checkpoint,
                                 train_dir=os.path.dirname(source_checkpoint)), logger)
    assert logger.lines[0].endswith("; excluded 2 (MobilenetV2/Logits/); 0 missing")
    assert logger.lines[-2:] == [
        "note: %s holds a checkpoint; training would resume from it and not apply "
        "--restore_path" % os.path.dirname(source_checkpoint),
        "dry run: nothing trained or written; drop --restore_dry_run to train"]
    with pytest.raises(UserError, match="^cannot restore MobilenetV2/Logits/Conv2d_1c_1x1/"
                                        "weights: shape .1, 1, 1280, 10. in"):
        finetune.restore_dry_run(env(restore_path=source_checkpoint,
                                     restore_exclude="none"), Lines())
