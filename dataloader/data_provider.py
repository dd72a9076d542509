"""Estimator input_fn over TF-Slim TFRecord shards: rank sharding, parsing,
preprocessing, batching, prefetching.

The only module that knows the records' keys. Shard files are listed when the input_fn
is made, so a missing dataset fails with one clear line before any graph is built.
"""
import os

from absl import logging

from dataloader import preprocessing
from utils.errors import UserError
from utils.tf_compat import tf

READ_BUFFER_BYTES = 8 * 1024 * 1024
MAX_SHUFFLE_BUFFER = 10000
MAX_INTERLEAVE_CYCLE = 8
BBOX_KEYS = ("ymin", "xmin", "ymax", "xmax")  # sample_distorted_bounding_box's order

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}
_FEATURES.update({"image/object/bbox/" + key: tf.io.VarLenFeature(tf.float32)
                  for key in BBOX_KEYS})


def default_num_threads():
    """Leave a core to the model: on 2 cores tf.data's defaults slowed training ~15%."""
    return max(1, (os.cpu_count() or 2) - 1)


def _check_args(batch_size, image_size, rank, rank_size, num_classes):
    if batch_size < 1:
        raise UserError("batch size %s must be at least 1" % batch_size)
    if image_size < 1:
        raise UserError("image size %s must be at least 1" % image_size)
    if not 0 <= rank < rank_size:
        raise UserError("rank %s must be in [0, rank_size=%s)" % (rank, rank_size))
    if num_classes is not None and num_classes < 1:
        raise UserError("num_classes %s must be at least 1" % num_classes)


def files_for_rank(files, rank, rank_size):
    """Returns (this rank's files, whether records must still be sharded by rank)."""
    if rank_size == 1:
        return files, False
    if len(files) >= rank_size:
        return files[rank::rank_size], False
    logging.info("%d shard files for %d ranks: sharding by record instead of by file",
                 len(files), rank_size)
    return files, True


# ----------------------------------------------------------------------------- parsing

def _bbox(features):
    """float32 [1, N, 4] boxes (N = 0 when the record has none)."""
    coords = [tf.sparse.to_dense(features["image/object/bbox/" + key]) for key in BBOX_KEYS]
    return tf.expand_dims(tf.stack(coords, axis=1), 0)


def _label(features, labels_offset, num_classes):
    label = tf.cast(features["image/class/label"], tf.int32) - labels_offset
    if num_classes is None:
        return label
    message = ("label out of range: image/class/label - labels_offset (%d) must be in "
               "[0, %d); check --labels_offset and --num_classes" % (labels_offset, num_classes))
    checks = [tf.debugging.assert_greater_equal(label, 0, message=message),
              tf.debugging.assert_less(label, num_classes, message=message)]
    with tf.control_dependencies(checks):
        return tf.identity(label)


def _parse_fn(preprocess_fn, image_size, is_training, labels_offset, num_classes):
    def parse(serialized):
        features = tf.io.parse_single_example(serialized, _FEATURES)
        bbox = _bbox(features) if is_training else None
        image = preprocess_fn(features["image/encoded"], image_size, image_size, is_training,
                              bbox=bbox)
        return image, _label(features, labels_offset, num_classes)
    return parse


# ----------------------------------------------------------------------------- datasets

def _thread_options(num_threads):
    options = tf.data.Options()
    # TF 2.x names it options.threading; TF 1.15 only has experimental_threading.
    threading = getattr(options, "threading", None) or options.experimental_threading
    threading.private_threadpool_size = num_threads
    threading.max_intra_op_parallelism = 1
    return options


def _training_records(files, shard_records, rank, rank_size, seed, num_threads):
    if shard_records:
        # Record sharding needs the same record order on every rank: read in file order.
        records = tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER_BYTES)
        return records.shard(rank_size, rank)
    names = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
    return names.interleave(
        lambda name: tf.data.TFRecordDataset(name, buffer_size=READ_BUFFER_BYTES),
        cycle_length=min(len(files), MAX_INTERLEAVE_CYCLE), block_length=1,
        num_parallel_calls=num_threads)


def _records_dataset(files, shard_records, rank, rank_size, is_training, seed, num_threads,
                     shuffle_buffer, num_epochs):
    if not is_training:
        records = tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER_BYTES)
        return records.shard(rank_size, rank) if shard_records else records
    records = _training_records(files, shard_records, rank, rank_size, seed, num_threads)
    return records.shuffle(shuffle_buffer, seed=seed).repeat(num_epochs)


def _synthetic_dataset(batch_size, image_size, num_classes, seed):
    """One random batch, made once and cached, repeated forever: input costs nothing."""
    def make(_):
        images = tf.random.uniform([batch_size, image_size, image_size, 3], -1.0, 1.0,
                                   seed=seed)
        labels = tf.random.uniform([batch_size], 0, num_classes, dtype=tf.int32, seed=seed)
        return images, labels
    return tf.data.Dataset.range(1).map(make).cache().repeat()


def sample_eval_images(dataset_spec, split, count, image_size, preprocessing_name="inception",
                       central_fraction=0.875, seed=0):
    """Up to ``count`` images of ``split`` drawn from all its shards (shuffled with
    ``seed``), preprocessed as for evaluation: float32 [n, S, S, 3]. Quantization
    calibrates on these."""
    preprocess_fn = preprocessing.get_preprocessing(
        preprocessing_name, {"central_fraction": central_fraction})
    files = dataset_spec.list_files(split)
    parse = _parse_fn(preprocess_fn, image_size, False, 0, None)
    buffer = max(1, min(MAX_SHUFFLE_BUFFER, dataset_spec.num_samples(split)))
    with tf.Graph().as_default():
        records = _training_records(files, False, 0, 1, seed, default_num_threads())
        images = records.shuffle(buffer, seed=seed).take(count).map(
            lambda record: parse(record)[0]).batch(count)
        with tf.Session() as sess:
            return sess.run(tf.data.make_one_shot_iterator(images).get_next())


def make_input_fn(dataset_spec, split, is_training, batch_size, image_size,
                  preprocessing_name="inception", preprocessing_options=None, labels_offset=0,
                  num_classes=None, rank=0, rank_size=1, shuffle_buffer=None, seed=None,
                  num_epochs=None, synthetic=False, num_threads=None):
    """Returns input_fn(params=None) -> Dataset of (float32 [B, S, S, 3], int32 [B]).

    Training: shuffled, repeated num_epochs times (None: forever), full batches only.
    Evaluation: every record of this rank's share once, in file order, last batch partial.
    """
    _check_args(batch_size, image_size, rank, rank_size, num_classes)
    num_threads = num_threads or default_num_threads()
    options = _thread_options(num_threads)

    if synthetic:
        if num_classes is None:
            if dataset_spec is None:
                raise UserError("synthetic data needs num_classes or a dataset")
            num_classes = dataset_spec.num_classes - labels_offset

        def synthetic_input_fn(params=None):
            del params
            return _synthetic_dataset(batch_size, image_size, num_classes,
                                      seed).with_options(options)
        return synthetic_input_fn

    preprocess_fn = preprocessing.get_preprocessing(preprocessing_name, preprocessing_options)
    files, shard_records = files_for_rank(dataset_spec.list_files(split), rank, rank_size)
    if shuffle_buffer is None:
        shuffle_buffer = max(1, min(MAX_SHUFFLE_BUFFER, dataset_spec.num_samples(split)))
    parse = _parse_fn(preprocess_fn, image_size, is_training, labels_offset, num_classes)

    def input_fn(params=None):
        del params  # the batch size is fixed when the input_fn is made
        records = _records_dataset(files, shard_records, rank, rank_size, is_training, seed,
                                   num_threads, shuffle_buffer, num_epochs)
        batches = records.map(parse, num_parallel_calls=num_threads).batch(
            batch_size, drop_remainder=is_training)
        return batches.prefetch(tf.data.experimental.AUTOTUNE).with_options(options)
    return input_fn
