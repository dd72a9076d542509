"""google/automl EfficientNetV2 checkpoints read as published (issue #24).

The checkpoints here are written in automl's names from tests/data/automl_parity.json.gz
(what automl's own code names and shapes, with its EMA shadows and RMSProp slots; see
tests/automl_reference.py): moving averages hold ``automl_value`` (the weights automl's
network ran with to make the reference logits), raw weights their negation, slots
zeros. So the logits match the reference only when the names map right, the dense head
is reshaped and the moving averages are taken.
"""
import json
import os

import numpy as np
import pytest

from evaluation.evaluator import Evaluator
import logger as logger_lib
from nets import automl_names, checkpoint_names
from nets.convert_checkpoint import converted
from tests import reference_eval
from tests.automl_reference import (EMA, SIZE, automl_value, fixed_input,
                                    load_batch_norm, load_reference)
from tests.cli_helpers import evaluator_config, run_module, run_python, single_error_line
from utils.checkpoints import write_tensors
from utils.tf_compat import tf

B0, S = "efficientnetv2-b0", "efficientnetv2-s"


@pytest.fixture(scope="module")
def reference():
    return load_reference()


@pytest.fixture(scope="module")
def statistics():
    return load_batch_norm()


def automl_tensors(data, head=None, slots=True, statistics=None):
    """{automl name: value} of a checkpoint as automl's training writes it; ``head``
    replaces the dense head's shapes (the 21k checkpoints), ``slots`` False leaves the
    RMSProp slots out."""
    shapes = dict((name, shape) for name, shape in data["variables"])
    shapes.update(dict((name + suffix, shape) for name, shape in head or []
                       for suffix in ("", EMA)))
    model = set(data["model_variables"])
    recorded = statistics or {}

    def value(name, shape):  # the recorded batch-norm statistics, else from the name
        return recorded[name] if name in recorded else automl_value(name, shape)
    tensors = {}
    for name, shape in shapes.items():
        if name in model:
            tensors[name] = -value(name, shape)
        elif name.endswith(EMA):
            tensors[name] = value(name[:-len(EMA)], shape)
        elif name == "global_step":
            tensors[name] = np.array(1000, np.int64)
        elif slots and not (head and "/dense/" in name):
            tensors[name] = np.zeros(shape, np.float32)
    return tensors


@pytest.fixture(scope="module")
def b0_1k(reference, statistics, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("automl_b0") / "model.ckpt")
    return write_tensors(prefix, automl_tensors(reference[B0], statistics=statistics))


@pytest.fixture(scope="module")
def b0_21k(reference, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("automl_b0_21k") / "model.ckpt")
    return write_tensors(prefix, automl_tensors(reference[B0], reference[B0]["head_21k"]))


def check_parity(logits, expected):
    scale = np.abs(expected).max()
    difference = np.abs(logits - expected).max()
    assert difference <= 1e-4 * scale, (difference, scale)
    return difference, scale


def test_the_map_names_every_automl_tensor_and_inverts(reference):
    """Every tensor automl writes (weights, EMA, slots) gets one of our names, and
    to_automl gives each back its automl name."""
    for model in (B0, S):
        names = [name for name, _ in reference[model]["variables"]]
        ours = automl_names.from_automl(names)
        assert sorted(set(names) - set(ours)) == ["global_step"]
        assert len(set(ours.values())) == len(ours)
        back = automl_names.to_automl(list(ours.values()), model)
        assert dict((ours[name], name) for name in ours) == back


@pytest.mark.parametrize("model", [B0, S])
def test_logits_equal_automls(model, reference, statistics, b0_1k, tmp_path):
    """Our network on an automl checkpoint gives automl's logits (within 1e-4 of their
    scale); the network and its classes come from the names alone."""
    from export import models
    data = reference[model]
    checkpoint = b0_1k if model == B0 else write_tensors(
        str(tmp_path / "model.ckpt"), automl_tensors(data, slots=False, statistics=statistics))
    loaded = models.load_model(checkpoint, image_size=SIZE)
    assert loaded.meta["model_name"] == automl_names.MODELS[model]
    assert loaded.num_classes == 1000 and loaded.meta["ema"] is True
    assert loaded.meta["recognised"] == (
        "checkpoint %s: google/automl %s names (read as %s); moving averages: used; "
        "head: 1000 classes" % (checkpoint, model, automl_names.MODELS[model]))
    difference, scale = check_parity(loaded.logits(fixed_input()), np.array(data["logits"]))
    print("%s parity: max |difference| %.3g, logit scale %.4g" % (model, difference, scale))
    loaded.close()


@pytest.mark.slow
def test_converter_round_trip_is_bit_identical(b0_1k, tmp_path):
    """automl -> ours -> automl -> ours: the two checkpoints in our names hold the same
    tensors bit for bit, and automl's names come back as they were."""
    ours = converted(b0_1k, to_automl=False)
    assert ours["EfficientNetV2/Logits/Conv2d_1c_1x1/weights"].shape == (1, 1, 1280, 1000)
    first = write_tensors(str(tmp_path / "ours"), ours)
    out = run_module("nets.convert_checkpoint", "--to=automl",
                     "--model_name=efficientnet_v2_b0", first, str(tmp_path / "automl"))
    assert out.returncode == 0, out.stderr[-2000:]
    back = tf.train.load_checkpoint(str(tmp_path / "automl"))
    original = tf.train.load_checkpoint(b0_1k)
    assert back.get_variable_to_shape_map() == original.get_variable_to_shape_map()
    again = converted(str(tmp_path / "automl"), to_automl=False)
    assert sorted(again) == sorted(ours)
    for name, value in ours.items():
        assert again[name].dtype == value.dtype and again[name].tobytes() == value.tobytes()


@pytest.mark.slow
def test_export_without_flags_matches_automls_logits(reference, b0_1k, tmp_path):
    output = str(tmp_path / "b0.pb")
    out = run_python("export_model.py", "--checkpoint_path=" + b0_1k, "--format=frozen_pb",
                     "--image_size=%d" % SIZE, "--output=" + output)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == ("checkpoint %s: google/automl %s names (read as efficientnet_v2_b0); "
                        "moving averages: used; head: 1000 classes" % (b0_1k, B0))
    assert "exported efficientnet_v2_b0 frozen_pb (step 1000, moving averages)" in lines[1]
    from export import models
    exported = models.load_model(output)
    check_parity(exported.logits(fixed_input()), np.array(reference[B0]["logits"]))
    exported.close()


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """Records as ImageNet's: label 0 is the background, the 3 classes are 1..3."""
    from datasets import build_tfrecords
    from tests.ds_helpers import write_image_tree
    root = tmp_path_factory.mktemp("imagenet_like")
    tree = str(root / "validation")
    write_image_tree(tree, 3, 2, 48)
    labels = str(root / "labels.txt")
    with open(labels, "w") as stream:
        stream.write("background\nclass_0\nclass_1\nclass_2\n")
    build_tfrecords.convert(validation_directory=tree, output_directory=str(root / "records"),
                            validation_shards=1, num_threads=1, labels_file=labels)
    return str(root / "records")


@pytest.mark.slow
def test_evaluator_finds_network_classes_and_label_offset(reference, statistics,
                                                          imagenet_like, tmp_path):
    """On ImageNet's 1001 labels (background 0) a 1000-class automl head evaluates with
    offset 1, with automl's own evaluation preprocessing when asked. The head's bias picks
    output 0 whatever the image, and output 0 is class_0 (record label 1) only with the
    offset: top-1 is class_0's share of the records with it, 0 without."""
    tensors = automl_tensors(reference[B0], statistics=statistics)
    bias = np.zeros([1000], np.float32)
    bias[0] = 1000.0  # output 0 wins by far: automl's reference logits are within +-1
    for name in ("head/dense/bias", "head/dense/bias" + EMA):
        tensors["%s/%s" % (B0, name)] = bias
    checkpoint = write_tensors(str(tmp_path / "picks_0" / "model.ckpt"), tensors)
    config = evaluator_config(checkpoint_path=checkpoint, dataset_dir=imagenet_like,
                              dataset_name="imagenet", preprocessing_name="automl_legacy")
    assert (config.model_name, config.num_classes, config.labels_offset, config.image_size,
            config.preprocessing_name) == ("efficientnet_v2_b0", 1000, 1, 224, "automl_legacy")
    out = run_python("eval_image_classifier_mobilenet.py", "--checkpoint_path=" + checkpoint,
                     "--dataset_dir=" + imagenet_like, "--dataset_name=imagenet",
                     "--eval_image_size=64", "--batch_size=6",
                     "--preprocessing_name=automl_legacy", "--eval_dir=" + str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == ("checkpoint %s: google/automl %s names (read as efficientnet_v2_b0); "
                        "moving averages: used; head: 1000 classes" % (checkpoint, B0))
    assert lines[1].startswith("evaluating efficientnet_v2_b0 (1000 classes) on 50000 ")
    with open(os.path.join(str(tmp_path), "eval_results.json")) as stream:
        result = json.load(stream)["results"][0]
    assert result["images"] == 6 and result["ema"] is True and result["global_step"] == 1000
    _, labels = reference_eval.read_split(imagenet_like)
    assert sorted(labels) == [1, 1, 2, 2, 3, 3]  # background 0 is in no record
    assert result["top1"] == pytest.approx(np.mean(labels == 1))

    without = evaluator_config(checkpoint_path=checkpoint, dataset_dir=imagenet_like,
                               dataset_name="imagenet", preprocessing_name="automl_legacy",
                               eval_image_size=64, batch_size=6, labels_offset=0,
                               eval_dir=str(tmp_path / "without"))
    assert without.labels_offset == 0 and without.num_classes == 1000
    with Evaluator(without, logger_lib.get_logger()) as evaluator:
        assert evaluator.evaluate(checkpoint)["top1"] == 0.0


@pytest.mark.parametrize("name, size, top, left, normalise", [
    # side = int(size / (size + 32) * shorter side) = size: the resize keeps pixels
    ("automl", 64, 28, 16, lambda x: (x - 128.0) / 128.0),  # offset (H - side) // 2
    ("automl_legacy", 64, 29, 16,  # offset (H - side + 1) // 2, ImageNet mean / std
     lambda x: (x - np.array([0.485, 0.456, 0.406]) * 255) / (np.array([0.229, 0.224,
                                                                           0.225]) * 255)),
])
def test_automl_evaluation_crops_and_normalises_as_automl(name, size, top, left, normalise):
    from dataloader import preprocessing
    rows, cols = np.meshgrid(np.arange(121), np.arange(96), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)
    with tf.Graph().as_default(), tf.Session() as sess:
        out = sess.run(preprocessing.get_preprocessing(name)(
            tf.constant(image), size, size, False))
    np.testing.assert_allclose(out, normalise(image[top:top + size, left:left + size]
                                              .astype(np.float64)), atol=1e-5)


@pytest.mark.slow
def test_fine_tune_from_21k_leaves_the_head_out_and_starts_from_ema(b0_21k, tmp_path):
    from tests.ds_helpers import write_tiny_dataset
    data = write_tiny_dataset(str(tmp_path / "data"), num_classes=5, per_class=2)
    train_dir = str(tmp_path / "train")
    out = run_python("train.py", "--model_name=efficientnet_v2_b0", "--train_image_size=32",
                     "--batch_size=2", "--max_train_steps=1", "--learning_rate=0.001",
                     "--dataset_dir=" + data, "--train_dir=" + train_dir,
                     "--restore_path=" + b0_21k)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    note = [i for i, line in enumerate(lines) if "google/automl" in line]
    assert note and lines[note[0]].endswith(
        "checkpoint %s: google/automl %s names (read as efficientnet_v2_b0); moving "
        "averages: used; head: 21843 classes" % (b0_21k, B0))
    table = "\n".join(lines[note[0] + 1:])
    assert "restored 359 variables from %s; excluded 2 (EfficientNetV2/Logits/)" % b0_21k \
        in table
    assert ("excluded EfficientNetV2/Logits/Conv2d_1c_1x1/weights  checkpoint "
            "[1, 1, 1280, 21843]  model [1, 1, 1280, 5]") in table
    start = tf.train.load_checkpoint(os.path.join(train_dir, "model.ckpt-0"))
    for automl, ours in (("stem/conv2d/kernel", "Conv/weights"),
                         ("blocks_20/se/conv2d_1/bias",
                          "expanded_conv_20/squeeze_excite/Conv_1/biases")):
        want = automl_value("%s/%s" % (B0, automl), start.get_variable_to_shape_map()[
            "EfficientNetV2/" + ours])
        np.testing.assert_array_equal(start.get_tensor("EfficientNetV2/" + ours), want)


@pytest.mark.slow
def test_another_architecture_fails_in_one_line(tmp_path):
    medium = write_tensors(str(tmp_path / "m"), {
        "efficientnetv2-m/stem/conv2d/kernel": np.zeros([3, 3, 3, 24], np.float32)})
    error = single_error_line(run_python("export_model.py", "--checkpoint_path=" + medium,
                                         "--output=" + str(tmp_path / "out")))
    assert error == ("error: %s holds google/automl's efficientnetv2-m (by its variable "
                     "names), which this project does not build; it builds "
                     "efficientnetv2-s (--model_name=efficientnet_v2_s), efficientnetv2-b0 "
                     "(--model_name=efficientnet_v2_b0)" % medium)
    # B0's names with too few blocks: the network's variable it lacks, named.
    short = write_tensors(str(tmp_path / "short"), {
        "efficientnetv2-b0/stem/conv2d/kernel": np.zeros([3, 3, 3, 32], np.float32),
        "efficientnetv2-b0/head/dense/bias": np.zeros([1000], np.float32)})
    error = single_error_line(run_python("export_model.py", "--checkpoint_path=" + short,
                                         "--output=" + str(tmp_path / "out")))
    assert error == ("error: checkpoint %s has no variable EfficientNetV2/Conv/BatchNorm/"
                     "beta; check --model_name=EfficientNetV2" % short)
    assert checkpoint_names.read(short).model_name == "efficientnet_v2_b0"
