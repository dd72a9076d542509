"""dataloader: preprocessing and the Estimator input_fn over tiny TFRecord sets."""
import glob
import io
import os

import numpy as np
from PIL import Image
import pytest

from dataloader import data_provider, preprocessing
from datasets import dataset_factory
from tests.ds_helpers import class_image, write_tiny_dataset
from utils.errors import UserError
from utils.tf_compat import tf

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 classes: train 3 x 5 images in 2 shards, validation 3 x 3 in 2 shards."""
    root = str(tmp_path_factory.mktemp("pipeline_ds"))
    records = write_tiny_dataset(root, num_classes=NUM_CLASSES, per_class=5, size=32,
                                 split_counts={"train": 5, "validation": 3})
    return dataset_factory.get_dataset("auto", records)


def encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def run_all(dataset_fn, max_batches=50):
    """Builds dataset_fn() in a fresh graph; returns its batches (until the end)."""
    batches = []
    with tf.Graph().as_default():
        images, labels = tf.data.make_one_shot_iterator(dataset_fn()).get_next()
        with tf.Session() as sess:
            for _ in range(max_batches):
                try:
                    batches.append(sess.run([images, labels]))
                except tf.errors.OutOfRangeError:
                    break
    return batches


def record_labels(spec, split):
    labels = []
    for path in spec.list_files(split):
        for raw in tf.io.tf_record_iterator(path):
            example = tf.train.Example.FromString(raw)
            labels.append(example.features.feature["image/class/label"].int64_list.value[0])
    return labels


def write_records(folder, examples, split="train"):
    """One shard of hand-made records; returns a DatasetSpec over it."""
    os.makedirs(folder, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, "%s-00000-of-00001" % split)) as writer:
        for features in examples:
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=features)).SerializeToString())
    return dataset_factory.DatasetSpec("folder", folder, NUM_CLASSES, {split: len(examples)})


def example(encoded, label, bbox=None):
    features = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    for key, value in zip(("ymin", "xmin", "ymax", "xmax"), bbox or ()):
        features["image/object/bbox/" + key] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[value]))
    return features


# ----------------------------------------------------------------------------- preprocessing

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_preprocessing_shapes_and_range(fmt):
    encoded = encode(class_image(0, 0, 48)[:40], fmt)
    with tf.Graph().as_default():
        data = tf.constant(encoded)
        pixels = tf.constant(class_image(1, 0, 48))
        bbox = tf.constant([[[0.1, 0.1, 0.9, 0.6]]], tf.float32)
        outputs = [preprocessing.preprocess_for_train(data, 24, 24),
                   preprocessing.preprocess_for_train(data, 24, 24, bbox=bbox, random_flip=False),
                   preprocessing.preprocess_for_train(pixels, 24, 24),
                   preprocessing.preprocess_for_eval(data, 24, 24),
                   preprocessing.preprocess_for_eval(pixels, 24, 24, central_fraction=0.5)]
        with tf.Session() as sess:
            values = sess.run(outputs)
    for tensor, value in zip(outputs, values):
        assert tensor.shape.as_list() == [24, 24, 3] and tensor.dtype == tf.float32
        assert value.shape == (24, 24, 3)
        assert -1.0 <= value.min() and value.max() <= 1.0 and value.std() > 0.01


def test_eval_central_crop_matches_uint8_path():
    array = class_image(2, 3, 40)
    with tf.Graph().as_default():
        from_png = preprocessing.preprocess_for_eval(tf.constant(encode(array, "PNG")), 16, 16)
        from_pixels = preprocessing.preprocess_for_eval(tf.constant(array), 16, 16)
        with tf.Session() as sess:
            a, b = sess.run([from_png, from_pixels])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_preprocessing_names_and_options():
    for name in ("inception", "mobilenet_v2", "mobilenet", None):
        assert callable(preprocessing.get_preprocessing(name))
    with pytest.raises(UserError, match="inception"):
        preprocessing.get_preprocessing("vgg")
    with pytest.raises(UserError, match="min_crop_area"):
        preprocessing.get_preprocessing("inception", {"min_crop_area": 0.0})
    with pytest.raises(UserError, match="known"):
        preprocessing.get_preprocessing("inception", {"colour_jitter": 1})
    config = preprocessing.make_config({"random_flip": False, "central_fraction": None})
    assert config.random_flip is False and config.central_fraction == 0.875


# ----------------------------------------------------------------------------- input_fn

def test_eval_yields_every_record_once_with_partial_batch(dataset):
    input_fn = data_provider.make_input_fn(dataset, "validation", is_training=False,
                                           batch_size=4, image_size=32,
                                           num_classes=NUM_CLASSES)
    batches = run_all(input_fn)
    assert [len(labels) for _, labels in batches] == [4, 4, 1]
    labels = np.concatenate([labels for _, labels in batches])
    assert labels.dtype == np.int32
    assert labels.tolist() == record_labels(dataset, "validation")  # in file order
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for images, _ in batches:
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
        assert images.min() >= -1.0 and images.max() <= 1.0


def test_train_batches_are_static_and_repeat(dataset):
    input_fn = data_provider.make_input_fn(dataset, "train", is_training=True, batch_size=4,
                                           image_size=24, num_classes=NUM_CLASSES, seed=3,
                                           preprocessing_options={"min_crop_area": 0.5})
    data = input_fn(params={})
    images_shape, labels_shape = tf.data.get_output_shapes(data)
    assert images_shape.as_list() == [4, 24, 24, 3] and labels_shape.as_list() == [4]
    batches = run_all(input_fn, max_batches=6)  # 24 images > 15 records: it repeats
    assert len(batches) == 6
    assert all(0 <= labels.min() and labels.max() < NUM_CLASSES for _, labels in batches)
    assert all(images.min() >= -1.0 and images.max() <= 1.0 for images, _ in batches)


def test_num_epochs_bounds_training(dataset):
    input_fn = data_provider.make_input_fn(dataset, "train", is_training=True, batch_size=4,
                                           image_size=16, num_epochs=1)
    assert len(run_all(input_fn)) == 15 // 4  # remainder dropped


def test_labels_offset(dataset):
    input_fn = data_provider.make_input_fn(dataset, "validation", is_training=False,
                                           batch_size=16, image_size=16, labels_offset=1)
    (_, labels), = run_all(input_fn)
    assert labels.tolist() == [l - 1 for l in record_labels(dataset, "validation")]


@pytest.mark.parametrize("offset, num_classes", [(0, 2), (1, 3)])
def test_out_of_range_label_is_a_clear_error(dataset, offset, num_classes):
    input_fn = data_provider.make_input_fn(dataset, "validation", is_training=False,
                                           batch_size=16, image_size=16,
                                           labels_offset=offset, num_classes=num_classes)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label") as err:
        run_all(input_fn)
    assert "[0, %d)" % num_classes in err.value.message


def test_png_bytes_labelled_jpeg_and_bboxes_decode(tmp_path):
    png = encode(class_image(0, 0, 40), "PNG")
    jpeg = encode(class_image(1, 0, 40), "JPEG")
    spec = write_records(str(tmp_path / "odd"), [
        example(png, 0), example(jpeg, 1, bbox=(0.2, 0.1, 0.8, 0.5)),
        example(png, 2, bbox=(0.0, 0.0, 0.5, 0.5))])
    for is_training in (True, False):
        input_fn = data_provider.make_input_fn(spec, "train", is_training=is_training,
                                               batch_size=3, image_size=20, num_epochs=1,
                                               num_classes=NUM_CLASSES)
        (images, labels), = run_all(input_fn)
        assert images.shape == (3, 20, 20, 3) and sorted(labels.tolist()) == [0, 1, 2]


def test_rank_file_sharding_is_disjoint_and_complete():
    files = ["f%d" % i for i in range(5)]
    shares = [data_provider.files_for_rank(files, rank, 2) for rank in range(2)]
    assert [shard for _, shard in shares] == [False, False]
    assert not set(shares[0][0]) & set(shares[1][0])
    assert sorted(shares[0][0] + shares[1][0]) == files
    assert data_provider.files_for_rank(files, 1, 8) == (files, True)


@pytest.mark.parametrize("rank_size", [2, 3])  # 2: by file (2 shards); 3: by record
def test_ranks_see_disjoint_data_covering_all(dataset, rank_size):
    seen = []
    for rank in range(rank_size):
        input_fn = data_provider.make_input_fn(dataset, "validation", is_training=False,
                                               batch_size=16, image_size=16, rank=rank,
                                               rank_size=rank_size)
        seen.append(np.concatenate([images.reshape(len(images), -1)
                                    for images, _ in run_all(input_fn)]))
    everything = np.concatenate(seen)
    assert len(everything) == dataset.num_samples("validation")
    assert len(np.unique(everything, axis=0)) == len(everything)  # no image twice


def test_synthetic_data(dataset):
    input_fn = data_provider.make_input_fn(None, "train", is_training=True, batch_size=2,
                                           image_size=16, num_classes=5, synthetic=True,
                                           num_threads=1)
    data = input_fn()
    assert [s.as_list() for s in tf.data.get_output_shapes(data)] == [[2, 16, 16, 3], [2]]
    batches = run_all(input_fn, max_batches=3)
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[0][0], batches[2][0])  # one constant batch
    assert batches[0][1].dtype == np.int32 and batches[0][1].max() < 5
    spec_fn = data_provider.make_input_fn(dataset, "train", True, 2, 16, synthetic=True)
    assert tf.data.get_output_types(spec_fn()) == (tf.float32, tf.int32)


@pytest.mark.filterwarnings("ignore::UserWarning")  # options() in graph mode
def test_threading_options_applied(dataset):
    input_fn = data_provider.make_input_fn(dataset, "train", is_training=True, batch_size=2,
                                           image_size=16, num_threads=1)
    with tf.Graph().as_default():
        options = input_fn().options()
    threading = getattr(options, "threading", None) or options.experimental_threading
    assert threading.private_threadpool_size == 1
    assert threading.max_intra_op_parallelism == 1


def test_more_threads_than_shards(dataset):
    """--data_threads=4 over 2 training shards: tf.data refuses more parallel interleave
    calls than open files, so the reads use 2; every record still arrives once an
    epoch."""
    input_fn = data_provider.make_input_fn(dataset, "train", is_training=True, batch_size=5,
                                           image_size=16, num_epochs=1, num_threads=4)
    labels = np.concatenate([batch_labels for _, batch_labels in run_all(input_fn)])
    assert sorted(labels.tolist()) == sorted(record_labels(dataset, "train"))


def test_missing_shards_fail_when_input_fn_is_made(tmp_path):
    folder = str(tmp_path / "empty")
    os.makedirs(folder)
    spec = dataset_factory.get_dataset("imagenet", folder)
    with pytest.raises(UserError, match="no TFRecord shards matching train-"):
        data_provider.make_input_fn(spec, "train", True, 2, 16)
    assert not glob.glob(os.path.join(folder, "*"))
