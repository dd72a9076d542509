"""datasets.build_tfrecords: image trees -> TFRecord shards + metadata."""
import glob
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from datasets import build_tfrecords, layout
from tests.ds_helpers import class_image, write_image_tree
from utils.errors import UserError
from utils.tf_compat import tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HEIGHT = 40, 30


def read_records(pattern):
    """Every record of the matching shards as {key: python value}."""
    records = []
    for path in sorted(glob.glob(pattern)):
        for raw in tf.io.tf_record_iterator(path):
            feature = tf.train.Example.FromString(raw).features.feature
            records.append({key: (list(value.int64_list.value) or list(value.bytes_list.value)
                                  or list(value.float_list.value))[0]
                            for key, value in feature.items()})
    return records


def save(array, path, mode=None, **kwargs):
    image = Image.fromarray(array)
    image = image.convert(mode) if mode else image
    image.save(path, **kwargs)


@pytest.fixture
def mixed_tree(tmp_path):
    """3 classes x 5 images of 40x30 px; class_1 holds a PNG, a grayscale and a CMYK JPEG."""
    root = str(tmp_path / "images")
    for label in range(3):
        folder = os.path.join(root, "class_%d" % label)
        os.makedirs(folder)
        for i in range(5):
            pixels = class_image(label, i, WIDTH)[:HEIGHT]
            save(pixels, os.path.join(folder, "img_%d.jpg" % i))
    odd = os.path.join(root, "class_1")
    pixels = class_image(1, 9, WIDTH)[:HEIGHT]
    save(pixels, os.path.join(odd, "img_png.png"))
    save(pixels, os.path.join(odd, "img_gray.jpg"), mode="L")
    save(pixels, os.path.join(odd, "img_cmyk.jpg"), mode="CMYK")
    return root


def test_every_image_once_with_labels_and_sizes(mixed_tree, tmp_path):
    out = str(tmp_path / "records")
    meta = build_tfrecords.convert(train_directory=mixed_tree, output_directory=out,
                                   train_shards=3, num_threads=2)
    assert meta["num_classes"] == 3 and meta["class_names"] == ["class_0", "class_1", "class_2"]
    assert meta["splits"] == {"train": {"num_samples": 18, "num_shards": 3}}
    assert json.load(open(os.path.join(out, layout.META_FILENAME))) == meta
    assert open(os.path.join(out, "labels.txt")).read() == "0:class_0\n1:class_1\n2:class_2\n"
    assert len(glob.glob(os.path.join(out, "train-000*-of-00003"))) == 3

    records = read_records(os.path.join(out, "train-*-of-*"))
    seen = sorted((r["image/class/text"].decode(), r["image/filename"].decode())
                  for r in records)
    expected = sorted((label, name) for label in os.listdir(mixed_tree)
                      for name in os.listdir(os.path.join(mixed_tree, label)))
    assert seen == expected
    for record in records:
        text = record["image/class/text"].decode()
        assert record["image/class/label"] == int(text.split("_")[1])
        assert (record["image/height"], record["image/width"]) == (HEIGHT, WIDTH)
        assert record["image/format"] == b"JPEG" and record["image/colorspace"] == b"RGB"
        assert record["image/channels"] == 3
        image = Image.open(io.BytesIO(record["image/encoded"]))
        assert image.format == "JPEG" and image.mode == "RGB"
        assert image.size == (WIDTH, HEIGHT)
        if record["image/filename"] == b"img_0.jpg":  # plain RGB JPEGs are copied as is
            original = os.path.join(mixed_tree, text, "img_0.jpg")
            assert record["image/encoded"] == open(original, "rb").read()


def test_classes_mix_across_shards(tmp_path):
    images = str(tmp_path / "images")
    write_image_tree(images, num_classes=3, per_class=6, size=16)
    out = str(tmp_path / "records")
    build_tfrecords.convert(train_directory=images, output_directory=out, train_shards=2,
                            num_threads=1)
    for shard in sorted(glob.glob(os.path.join(out, "train-*"))):
        labels = {r["image/class/label"] for r in read_records(shard)}
        assert len(labels) > 1


def test_refuses_to_overwrite_then_replaces(tmp_path):
    images = str(tmp_path / "images")
    write_image_tree(images, num_classes=2, per_class=3, size=16)
    out = str(tmp_path / "records")
    build_tfrecords.convert(train_directory=images, output_directory=out, train_shards=4)
    with pytest.raises(UserError, match="--overwrite"):
        build_tfrecords.convert(train_directory=images, output_directory=out, train_shards=2)
    build_tfrecords.convert(train_directory=images, output_directory=out, train_shards=2,
                            overwrite=True)
    # The old 4-shard files are gone: the glob sees only the new conversion.
    assert sorted(os.listdir(out)) == ["dataset_meta.json", "labels.txt",
                                       "train-00000-of-00002", "train-00001-of-00002"]


def test_more_shards_than_images_writes_no_empty_shards(tmp_path):
    images = str(tmp_path / "images")
    write_image_tree(images, num_classes=2, per_class=1, size=16)
    meta = build_tfrecords.convert(validation_directory=images,
                                   output_directory=str(tmp_path / "r"), validation_shards=5)
    assert meta["splits"]["validation"] == {"num_samples": 2, "num_shards": 2}


@pytest.mark.parametrize("make, fragment", [
    (lambda root: None, "no class folders"),
    (lambda root: os.makedirs(os.path.join(root, "cat")), "no images"),
])
def test_empty_trees_are_user_errors(tmp_path, make, fragment):
    root = str(tmp_path / "images")
    os.makedirs(root)
    make(root)
    with pytest.raises(UserError, match=fragment) as err:
        build_tfrecords.convert(train_directory=root, output_directory=str(tmp_path / "out"))
    assert root in str(err.value)


def test_unreadable_image_is_named_and_leaves_no_complete_output(tmp_path):
    images = str(tmp_path / "images")
    write_image_tree(images, num_classes=2, per_class=2, size=16)
    bad = os.path.join(images, "class_1", "broken.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8 this is not a jpeg")
    out = str(tmp_path / "records")
    with pytest.raises(UserError, match="broken.jpg"):
        build_tfrecords.convert(train_directory=images, output_directory=out, train_shards=1)
    assert os.listdir(out) == []  # no shard, no temp file, no metadata


def test_labels_file_sets_the_order(tmp_path):
    images = str(tmp_path / "images")
    write_image_tree(images, num_classes=2, per_class=1, size=16)
    labels = tmp_path / "classes.txt"
    labels.write_text("class_1\nclass_0\nclass_9\n")
    meta = build_tfrecords.convert(train_directory=images, output_directory=str(tmp_path / "r"),
                                   labels_file=str(labels))
    assert meta["class_names"] == ["class_1", "class_0", "class_9"]
    by_text = {r["image/class/text"]: r["image/class/label"]
               for r in read_records(str(tmp_path / "r" / "train-*"))}
    assert by_text == {b"class_1": 0, b"class_0": 1}
    labels.write_text("class_0\n")
    with pytest.raises(UserError, match="class_1"):
        build_tfrecords.convert(train_directory=images, output_directory=str(tmp_path / "r2"),
                                labels_file=str(labels))


@pytest.mark.parametrize("truth_lines", [
    ["ILSVRC2012_val_00000001.JPEG n02", "ILSVRC2012_val_00000002.JPEG n01",
     "ILSVRC2012_val_00000003.JPEG n02"],
    ["n02", "n01", "n02"],  # the devkit's one-synset-per-line order
])
def test_imagenet_flat_validation_layout(tmp_path, truth_lines):
    train = str(tmp_path / "train")
    for synset in ("n01", "n02"):
        os.makedirs(os.path.join(train, synset))
        save(class_image(0, 0, 16), os.path.join(train, synset, "a.JPEG"))
    flat = str(tmp_path / "val")
    os.makedirs(flat)
    for i in range(3):
        save(class_image(i, 1, 16), os.path.join(flat, "ILSVRC2012_val_%08d.JPEG" % (i + 1)))
    truth = tmp_path / "truth.txt"
    truth.write_text("\n".join(truth_lines) + "\n")
    out = str(tmp_path / "records")
    meta = build_tfrecords.convert(train_directory=train, validation_directory=flat,
                                   output_directory=out, imagenet_val_labels=str(truth))
    assert meta["splits"]["validation"]["num_samples"] == 3
    labels = {r["image/filename"]: r["image/class/label"]
              for r in read_records(os.path.join(out, "validation-*"))}
    assert labels == {b"ILSVRC2012_val_00000001.JPEG": 1, b"ILSVRC2012_val_00000002.JPEG": 0,
                      b"ILSVRC2012_val_00000003.JPEG": 1}


def test_cli_bad_directory_exits_2_with_one_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    result = subprocess.run(
        [sys.executable, "-m", "datasets.build_tfrecords", "--train_directory=" + missing,
         "--output_directory=" + str(tmp_path / "out")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and missing in lines[0] and lines[0].startswith("error:")


def test_rgb_values_survive_reencoding(mixed_tree, tmp_path):
    out = str(tmp_path / "records")
    build_tfrecords.convert(train_directory=mixed_tree, output_directory=out, train_shards=1)
    record = [r for r in read_records(os.path.join(out, "train-*"))
              if r["image/filename"] == b"img_png.png"][0]
    decoded = np.asarray(Image.open(io.BytesIO(record["image/encoded"])), np.float32)
    original = class_image(1, 9, WIDTH)[:HEIGHT].astype(np.float32)
    # JPEG blurs the noise; the colours must stay (no channel swap, no gray).
    assert np.abs(decoded.mean(axis=(0, 1)) - original.mean(axis=(0, 1))).max() < 4.0
