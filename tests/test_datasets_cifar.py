"""CIFAR-10/100 as distributed -> TFRecords (datasets/cifar.py, build_tfrecords
--cifar_directory), and --dataset_dir given an image tree or a CIFAR archive
(datasets/sources.py). The batches are written by benchmarks/cifar_formats.py in each
archive's exact byte layout; records are decoded here with PIL, not our preprocessing."""
import io
import json
import os
import pickle
import threading
import time
import traceback

import numpy as np
from PIL import Image
import pytest

from benchmarks import cifar_formats
from datasets import build_tfrecords, cifar, sources
from tests.cli_helpers import run_module, run_python, single_error_line
from tests.ds_helpers import write_image_tree
from utils.errors import UserError
from utils.tf_compat import tf

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
PER_BATCH = 12


def random_images(seed, count=PER_BATCH):
    return np.random.RandomState(seed).randint(0, 256, (count, 32, 32, 3)).astype(np.uint8)


def labels_for(seed, classes, count=PER_BATCH):
    return [int(v) for v in np.random.RandomState(seed + 500).randint(0, classes, count)]


def write_cifar10(folder, binary=False, batches=(1, 2, 3, 4, 5)):
    """A CIFAR-10 copy of PER_BATCH images per batch; returns {split: (images, labels)}
    in batch order."""
    os.makedirs(folder)
    suffix = ".bin" if binary else ""
    expected = {"train": ([], []), "validation": ([], [])}
    for index, name in [(b, "data_batch_%d" % b) for b in batches] + [(9, "test_batch")]:
        images, labels = random_images(index), labels_for(index, 10)
        path = os.path.join(folder, name + suffix)
        if binary:
            cifar_formats.write_binary_batch(path, images, labels)
        else:
            cifar_formats.write_python_batch(path, images, labels)
        split = "validation" if index == 9 else "train"
        expected[split][0].append(images)
        expected[split][1].extend(labels)
    if binary:
        with open(os.path.join(folder, "batches.meta.txt"), "w") as handle:
            handle.write("\n".join(CIFAR10_NAMES) + "\n\n")
    else:
        cifar_formats.write_python2_pickle(os.path.join(folder, "batches.meta"),
                                           {"label_names": CIFAR10_NAMES})
    return {split: (np.concatenate(images), labels)
            for split, (images, labels) in expected.items()}


def write_cifar100(folder, binary=False):
    """A CIFAR-100 copy; returns {split: (images, fine labels, coarse labels)}."""
    os.makedirs(folder)
    fine_names = ["fine_%02d" % i for i in range(100)]
    coarse_names = ["coarse_%02d" % i for i in range(20)]
    expected = {}
    for seed, split, name in ((1, "train", "train"), (2, "validation", "test")):
        images = random_images(seed)
        fine, coarse = labels_for(seed, 100), labels_for(seed + 50, 20)
        expected[split] = (images, fine, coarse)
        if binary:
            cifar_formats.write_binary_batch(os.path.join(folder, name + ".bin"), images,
                                             coarse, fine)
        else:
            cifar_formats.write_python_batch(os.path.join(folder, name), images, fine,
                                             label_key="fine_labels",
                                             extra={"coarse_labels": coarse})
    if binary:
        for kind, names in (("fine", fine_names), ("coarse", coarse_names)):
            with open(os.path.join(folder, kind + "_label_names.txt"), "w") as handle:
                handle.write("\n".join(names) + "\n")
    else:
        cifar_formats.write_python2_pickle(os.path.join(folder, "meta"), {
            "fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return expected, fine_names, coarse_names


def decoded_records(folder, split):
    """{image/filename: (pixels, label, text, format)} of a split's shards."""
    found = {}
    for name in sorted(os.listdir(folder)):
        if not name.startswith(split + "-"):
            continue
        for raw in tf.io.tf_record_iterator(os.path.join(folder, name)):
            feature = tf.train.Example.FromString(raw).features.feature
            png = feature["image/encoded"].bytes_list.value[0]
            found[feature["image/filename"].bytes_list.value[0].decode()] = (
                np.asarray(Image.open(io.BytesIO(png))),
                feature["image/class/label"].int64_list.value[0],
                feature["image/class/text"].bytes_list.value[0].decode(),
                feature["image/format"].bytes_list.value[0])
    return found


def assert_same_images(records, images, labels, names, prefix):
    assert len(records) == len(labels)
    for index, label in enumerate(labels):
        pixels, stored_label, text, image_format = records["%s_%05d.png" % (prefix, index)]
        assert image_format == b"PNG"
        np.testing.assert_array_equal(pixels, images[index])
        assert (stored_label, text) == (label, names[label])


@pytest.mark.parametrize("binary", [False, True], ids=["python", "binary"])
def test_cifar10_records_equal_the_batches(tmp_path, binary):
    source = str(tmp_path / ("cifar-10-batches-" + ("bin" if binary else "py")))
    expected = write_cifar10(source, binary)
    out = str(tmp_path / "records")
    # The parent folder, as the archive unpacks into it, is found too.
    meta = build_tfrecords.convert_cifar(str(tmp_path), out, train_shards=3,
                                         validation_shards=1, num_threads=1)
    assert meta["source"]["format"] == ("cifar10-binary" if binary else "cifar10-python")
    assert meta["class_names"] == CIFAR10_NAMES and meta["image_format"] == "PNG"
    assert meta["splits"] == {"train": {"num_samples": 5 * PER_BATCH, "num_shards": 3},
                              "validation": {"num_samples": PER_BATCH, "num_shards": 1}}
    with open(os.path.join(out, "labels.txt")) as handle:
        assert handle.read().splitlines()[:2] == ["0:airplane", "1:automobile"]
    records = decoded_records(out, "validation")
    assert_same_images(records, expected["validation"][0], expected["validation"][1],
                       CIFAR10_NAMES, "test_batch")
    train = decoded_records(out, "train")
    images, labels = expected["train"]
    for batch in range(5):
        part = slice(batch * PER_BATCH, (batch + 1) * PER_BATCH)
        subset = dict((k, v) for k, v in train.items()
                      if k.startswith("data_batch_%d_" % (batch + 1)))
        assert_same_images(subset, images[part], labels[part], CIFAR10_NAMES,
                           "data_batch_%d" % (batch + 1))


@pytest.mark.parametrize("binary", [False, True], ids=["python", "binary"])
@pytest.mark.parametrize("kind", ["fine", "coarse"])
def test_cifar100_fine_and_coarse_labels(tmp_path, binary, kind):
    source = str(tmp_path / "cifar-100")
    expected, fine_names, coarse_names = write_cifar100(source, binary)
    out = str(tmp_path / "records")
    meta = build_tfrecords.convert_cifar(source, out, cifar_labels=kind, train_shards=1,
                                         validation_shards=1, num_threads=1)
    names = fine_names if kind == "fine" else coarse_names
    assert meta["num_classes"] == len(names) and meta["class_names"] == names
    for split, stem in (("train", "train"), ("validation", "test")):
        images, fine, coarse = expected[split]
        assert_same_images(decoded_records(out, split), images,
                           fine if kind == "fine" else coarse, names, stem)


def test_missing_batch_is_named_and_the_rest_converted(tmp_path, capfd):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source, batches=(1, 3))
    meta = build_tfrecords.convert_cifar(source, str(tmp_path / "records"), num_threads=1)
    assert meta["splits"]["train"]["num_samples"] == 2 * PER_BATCH
    warning = capfd.readouterr().err
    assert "missing data_batch_2, data_batch_4, data_batch_5 of a full cifar10-python" \
        in warning


def test_damaged_pickle_is_one_line(tmp_path):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source)
    path = os.path.join(source, "data_batch_2")
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:len(data) // 2])
    with pytest.raises(UserError) as caught:
        cifar.load(source)
    assert str(caught.value).startswith("%s is not a cifar10-python file (" % path)
    assert str(caught.value).endswith("; unpack cifar-10-python.tar.gz again")


class _Plant(object):
    """What a hostile pickle would run on loading: creating a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_foreign_pickle_runs_nothing(tmp_path):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source)
    planted = str(tmp_path / "planted")
    with open(os.path.join(source, "test_batch"), "wb") as handle:
        pickle.dump({"data": _Plant(planted)}, handle, protocol=2)
    with pytest.raises(UserError, match="names io.open, which a CIFAR batch does "
                                        "not hold"):
        cifar.load(source)
    assert not os.path.exists(planted)


def test_short_binary_record_is_one_line(tmp_path):
    source = str(tmp_path / "cifar-10-batches-bin")
    write_cifar10(source, binary=True)
    path = os.path.join(source, "data_batch_4.bin")
    with open(path, "rb+") as handle:
        handle.truncate(PER_BATCH * 3073 - 100)
    out = run_module("datasets.build_tfrecords", "--cifar_directory=" + source,
                     "--output_directory=" + str(tmp_path / "records"))
    assert single_error_line(out) == (
        "error: %s is truncated or not a cifar10-binary batch: %d bytes is not a whole "
        "number of 3073-byte records; unpack cifar-10-binary.tar.gz again"
        % (path, PER_BATCH * 3073 - 100))
    assert not os.path.exists(str(tmp_path / "records" / "dataset_meta.json"))


# ----------------------------------------------------------------------------- caches

def test_cache_converts_once_and_again_after_an_edit(tmp_path, capfd):
    tree = str(tmp_path / "flowers")
    write_image_tree(os.path.join(tree, "train"), 2, 3, 32)
    write_image_tree(os.path.join(tree, "val"), 2, 1, 32, start_index=3)
    root = str(tmp_path / "cache")
    first = sources.records_dir(tree, root)
    assert "converting it once" in capfd.readouterr().out
    meta_time = os.path.getmtime(os.path.join(first, "dataset_meta.json"))
    assert sources.records_dir(tree, root) == first
    assert "reading its TFRecord cache" in capfd.readouterr().out
    assert os.path.getmtime(os.path.join(first, "dataset_meta.json")) == meta_time
    assert os.path.basename(first).startswith("flowers-")
    write_image_tree(os.path.join(tree, "train"), 3, 1, 32, start_index=7)  # a new class
    second = sources.records_dir(tree, root)
    out = capfd.readouterr().out
    assert second != first and "converting it once" in out
    assert "1 older cache(s) of this folder remain in %s (%s, " % (
        root, os.path.basename(first)) in out
    with open(os.path.join(second, "dataset_meta.json")) as handle:
        assert json.load(handle)["splits"]["train"]["num_samples"] == 2 * 3 + 3


@pytest.mark.slow
def test_an_interrupted_cache_conversion_is_finished_by_the_next_run(tmp_path, capfd,
                                                                   monkeypatch):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source)
    root = str(tmp_path / "cache")
    real_write_split = build_tfrecords._write_split

    def killed_after_train(split, *args, **kwargs):
        if split == "validation":
            raise KeyboardInterrupt  # the run is stopped after the train shards
        return real_write_split(split, *args, **kwargs)

    monkeypatch.setattr(build_tfrecords, "_write_split", killed_after_train)
    with pytest.raises(KeyboardInterrupt):
        sources.records_dir(source, root)
    monkeypatch.setattr(build_tfrecords, "_write_split", real_write_split)
    cache = sources.records_dir(source, root)
    out = capfd.readouterr().out
    assert "resuming the unfinished conversion in %s: 16 of 20 shards are complete" % cache \
        in out
    assert len(decoded_records(cache, "validation")) == PER_BATCH


def test_an_unwritable_cache_folder_is_one_line(tmp_path):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source, batches=(1,))
    blocker = str(tmp_path / "a_file")
    open(blocker, "w").close()
    with pytest.raises(UserError, match=r"^cannot write to %s \(.*\); pass a writable "
                                        r"--dataset_cache_dir$" % blocker):
        sources.records_dir(source, blocker)


def test_a_waiting_run_reuses_the_conversion_it_waited_for(tmp_path, capfd):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source, batches=(1,))
    root = str(tmp_path / "cache")
    key, _ = sources.cache_key(sources.CIFAR, source)
    os.makedirs(root)
    lock = sources._Lock(os.path.join(root, ".cifar-10-batches-py-%s.lock" % key), "",
                         sources.print_line)
    results, errors = [], []

    def wait_and_read():
        try:
            results.append(sources.records_dir(source, root))
        except Exception:  # a thread's exception is otherwise only printed, not failed on
            errors.append(traceback.format_exc())

    with lock:  # another rank converting
        waiter = threading.Thread(target=wait_and_read)
        waiter.start()
        out, deadline = "", time.time() + 60
        while "waiting for it" not in out and waiter.is_alive() and time.time() < deadline:
            time.sleep(0.01)
            out += capfd.readouterr().out
        assert "waiting for it" in out, (out, errors)
        assert waiter.is_alive() and not results  # it said so, and our lock holds it
        build_tfrecords.convert_cifar(source, os.path.join(
            root, "cifar-10-batches-py-" + key), num_threads=1)
    waiter.join(60)
    assert not errors, "\n".join(errors)
    assert not waiter.is_alive()
    assert results == [os.path.join(root, "cifar-10-batches-py-" + key)]
    assert "converting" not in capfd.readouterr().out


@pytest.mark.slow
def test_train_and_evaluate_from_a_cifar_archive_and_an_image_tree(tmp_path):
    source = str(tmp_path / "cifar-10-batches-py")
    write_cifar10(source, batches=(1,))
    tree = str(tmp_path / "tree")
    write_image_tree(os.path.join(tree, "train"), 3, 4, 32)
    write_image_tree(os.path.join(tree, "validation"), 3, 1, 32, start_index=4)
    cache = str(tmp_path / "cache")
    for name, data in (("cifar", source), ("tree", tree)):
        train_dir = str(tmp_path / ("train_" + name))
        out = run_python("train.py", "--dataset_dir=" + data, "--train_dir=" + train_dir,
                         "--dataset_cache_dir=" + cache, "--model_name=mobilenet_v2_cifar",
                         "--batch_size=4", "--max_train_steps=2", "--bn_decay=0.9",
                         env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert out.returncode == 0, out.stderr[-3000:]
        assert "converting it once into TFRecords" in out.stdout
        # The log starts before the dataset opens, so the conversion is in it too.
        with open(os.path.join(train_dir, "train_log.log")) as handle:
            assert "converting it once into TFRecords" in handle.read()
        assert os.path.isfile(os.path.join(train_dir, "model.ckpt-2.index"))
    out = run_python("eval_image_classifier_mobilenet.py", "--checkpoint_path=" +
                     str(tmp_path / "train_cifar"), "--dataset_dir=" + source,
                     "--dataset_cache_dir=" + cache, "--batch_size=5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reading its TFRecord cache" in out.stdout
    assert "images=%d " % PER_BATCH in out.stdout


def test_tf_slim_cifar10_records_are_read_as_they_are(tmp_path):
    """TF-Slim's download_and_convert_cifar10.py output: one file per split, PNG bytes,
    labels.txt; found by --dataset_name=auto and read by the input pipeline."""
    from dataloader import data_provider
    from datasets import dataset_factory
    folder = str(tmp_path / "slim_cifar10")
    os.makedirs(folder)
    images, labels = random_images(3, 6), labels_for(3, 10, 6)
    for name, count in (("cifar10_train.tfrecord", 6), ("cifar10_test.tfrecord", 6)):
        with tf.io.TFRecordWriter(os.path.join(folder, name)) as writer:
            for index in range(count):
                feature = {"image/encoded": build_tfrecords._bytes(
                               build_tfrecords.encode_png(images[index])),
                           "image/format": build_tfrecords._bytes(b"png"),
                           "image/class/label": build_tfrecords._int64(labels[index]),
                           "image/height": build_tfrecords._int64(32),
                           "image/width": build_tfrecords._int64(32)}
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature=feature)).SerializeToString())
    with open(os.path.join(folder, "labels.txt"), "w") as handle:
        handle.write("".join("%d:%s\n" % (i, n) for i, n in enumerate(CIFAR10_NAMES)))
    spec = dataset_factory.get_dataset("auto", folder)
    assert (spec.name, spec.num_classes, spec.num_samples("validation")) == ("cifar10", 10,
                                                                            10000)
    assert spec.class_names == CIFAR10_NAMES
    assert spec.list_files("validation") == [os.path.join(folder, "cifar10_test.tfrecord")]
    with tf.Graph().as_default():
        batch = tf.data.make_one_shot_iterator(data_provider.make_input_fn(
            spec, "validation", False, 6, 32, "cifar", num_classes=10)()).get_next()
        with tf.Session() as sess:
            pixels, read_labels = sess.run(batch)
    assert list(read_labels) == labels
    np.testing.assert_allclose((pixels + 1.0) * 127.5, images, atol=1e-3)
