"""datasets.dataset_factory: descriptors of TFRecord folders."""
import json
import os

import pytest

from datasets import dataset_factory, layout
from utils.errors import UserError


def touch_shards(folder, split, count):
    for i in range(count):
        open(os.path.join(folder, layout.shard_filename(split, i, count)), "w").close()


@pytest.fixture
def folder_dataset(tmp_path):
    folder = str(tmp_path)
    meta = {"format": "slim-tfrecord", "num_classes": 4, "labels_offset": 0,
            "splits": {"train": {"num_samples": 40, "num_shards": 2}},
            "class_names": ["a", "b", "c", "d"], "image_format": "JPEG"}
    with open(os.path.join(folder, layout.META_FILENAME), "w") as f:
        json.dump(meta, f)
    touch_shards(folder, "train", 2)
    open(os.path.join(folder, layout.TEMP_PREFIX + "train-00009-of-00010"), "w").close()
    return folder


def test_auto_picks_folder_from_metadata(folder_dataset):
    spec = dataset_factory.get_dataset("auto", folder_dataset)
    assert spec.name == "folder" and spec.num_classes == 4 and spec.splits == ("train",)
    assert spec.class_names == ["a", "b", "c", "d"] and spec.num_samples("train") == 40
    assert spec.file_pattern("train") == os.path.join(folder_dataset, "train-*-of-*")
    assert [os.path.basename(p) for p in spec.list_files("train")] == [
        "train-00000-of-00002", "train-00001-of-00002"]  # temp files are not shards
    with pytest.raises(UserError, match="validation.*has: train"):
        spec.num_samples("validation")


def test_imagenet_sizes_and_labels(tmp_path):
    folder = str(tmp_path)
    spec = dataset_factory.get_dataset("auto", folder)
    assert spec.name == "imagenet" and spec.num_classes == 1001 and spec.class_names is None
    assert spec.num_samples("train") == 1281167 and spec.num_samples("validation") == 50000
    assert spec.splits == ("train", "validation")
    layout.write_labels_file(os.path.join(folder, "labels.txt"), ["background", "tench"])
    assert dataset_factory.get_dataset("imagenet", folder).class_names == ["background", "tench"]
    with pytest.raises(UserError, match="no TFRecord shards matching validation-"):
        spec.list_files("validation")
    with pytest.raises(UserError, match="split 'test'"):
        spec.file_pattern("test")


@pytest.mark.parametrize("name, directory, fragment", [
    ("cifar", None, "known: auto, imagenet, cifar10, folder"),
    ("auto", "/nonexistent/data", "/nonexistent/data"),
    ("folder", "", "dataset_meta.json not found"),
])
def test_user_errors(tmp_path, name, directory, fragment):
    directory = str(tmp_path) if directory in (None, "") else directory
    with pytest.raises(UserError, match=fragment):
        dataset_factory.get_dataset(name, directory)


def test_corrupt_metadata(tmp_path):
    with open(os.path.join(str(tmp_path), layout.META_FILENAME), "w") as f:
        f.write("{not json")
    with pytest.raises(UserError, match="--overwrite"):
        dataset_factory.get_dataset("auto", str(tmp_path))
