"""Estimator input_fn over TF-Slim TFRecord shards: rank sharding, parsing,
preprocessing, batching, prefetching.

The only module that knows the records' keys. Shard files are listed when the input_fn
is made, so a missing dataset fails with one clear line before any graph is built.
"""
import os
import threading

from absl import logging

from dataloader import preprocessing
from utils.errors import (BAD_LABEL, BAD_RECORD_TAG, NOT_AN_EXAMPLE, NOT_AN_IMAGE, RECORD_OK,
                          UNDECODABLE, UserError, describe_bad_record)
from utils.tf_compat import do_not_convert, tf

READ_BUFFER_BYTES = 8 * 1024 * 1024
MAX_RECORDS_PER_SHARD = 2 ** 62  # the record index counter's bound (never reached)
MAX_SHUFFLE_BUFFER = 10000
# Batches made ahead of the model: the pipeline runs far faster than training, so two
# are enough to hide it (a fixed number: tf.data's autotuning is off, see _thread_options).
PREFETCH_BATCHES = 2
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


def _looks_like_image(encoded):
    """True when the bytes start like a JPEG, PNG, GIF or BMP (what the decoders take)."""
    def starts(prefix):
        return tf.equal(tf.strings.substr(encoded, 0, len(prefix)), prefix)
    return tf.reduce_any(tf.stack([tf.io.is_jpeg(encoded), starts(b"\x89PNG"),
                                   starts(b"GIF8"), starts(b"BM")]))


def _record_problem(encoded, raw_label, labels_offset, num_classes):
    """int32 problem code (utils.errors: RECORD_OK, BAD_LABEL, NOT_AN_IMAGE) found
    without raising, so the caller decides: fail naming the record, or skip it."""
    label = raw_label - labels_offset
    label_ok = tf.constant(True)
    if num_classes is not None:
        label_ok = tf.logical_and(label >= 0, label < num_classes)
    image_problem = tf.where(_looks_like_image(encoded), RECORD_OK, NOT_AN_IMAGE)
    return tf.where(label_ok, image_problem, BAD_LABEL)


def _bad_record_assertion(problem, file_name, index, raw_label, labels_offset, num_classes):
    """Fails the step when problem != RECORD_OK with the bad-record assertion
    utils.errors reads back (shard file, record index, what is wrong)."""
    return tf.debugging.Assert(
        tf.equal(problem, RECORD_OK),
        [BAD_RECORD_TAG, file_name, index, problem, raw_label,
         tf.constant(labels_offset, tf.int64), tf.constant(num_classes or 0, tf.int64),
         # For whoever reads TensorFlow's error without utils.errors.bad_record_in:
         "a record's label (image/class/label - labels_offset %d) must be in [0, %d) and "
         "its image/encoded a JPEG, PNG, GIF or BMP; check --labels_offset and "
         "--num_classes" % (labels_offset, num_classes or 0)],
        summarize=1)


def _parse_record(serialized, is_training, labels_offset, num_classes):
    """(encoded image, raw label, problem code, boxes or None) of one serialized record;
    the boxes only for training crops."""
    features = tf.io.parse_single_example(serialized, _FEATURES)
    raw_label = features["image/class/label"]
    encoded = features["image/encoded"]
    problem = _record_problem(encoded, raw_label, labels_offset, num_classes)
    return encoded, raw_label, problem, _bbox(features) if is_training else None


def _parse_fn(preprocess_fn, image_size, is_training, labels_offset, num_classes, files):
    """parse(file_id, index, serialized) -> (image, label); a record with a label outside
    [0, num_classes) or bytes that are no image fails the step naming its shard file
    (files[file_id]) and index. Bytes that look like an image but do not decode fail
    in the decoder, without a name (training's error handler looks for the record)."""
    def parse(file_id, index, serialized):
        names = tf.constant(files or [""])  # made in the dataset function's graph
        encoded, raw_label, problem, bbox = _parse_record(serialized, is_training,
                                                          labels_offset, num_classes)
        check = _bad_record_assertion(problem, tf.gather(names, file_id), index, raw_label,
                                      labels_offset, num_classes)
        with tf.control_dependencies([check]):
            encoded = tf.identity(encoded)
        image = preprocess_fn(encoded, image_size, image_size, is_training, bbox=bbox)
        return image, tf.cast(raw_label - labels_offset, tf.int32)
    # No data-dependent Python control flow: autograph would spend seconds of every
    # run's start converting the preprocessing for nothing.
    return do_not_convert(parse)


def _single_or(dataset, fallback):
    """The one element of ``dataset``, or ``fallback`` when making it raised an error:
    a try/except inside a tf.data function (costs a small dataset per record)."""
    recovered = _ignore_errors(dataset).concatenate(tf.data.Dataset.from_tensors(fallback))
    return tf.data.experimental.get_single_element(recovered.take(1))


def _skipping_parse_fn(preprocess_fn, image_size, is_training, labels_offset, num_classes):
    """parse(file_id, index, serialized) -> (image, label, file_id, index, problem,
    raw_label) that never raises: a bad record comes out with problem != RECORD_OK
    (and a blank image) for the caller to count and drop."""
    shape = [image_size, image_size, 3]

    def parse_and_decode(serialized):
        encoded, raw_label, problem, bbox = _parse_record(serialized, is_training,
                                                          labels_offset, num_classes)
        image = tf.cond(tf.equal(problem, RECORD_OK),
                        lambda: preprocess_fn(encoded, image_size, image_size, is_training,
                                              bbox=bbox),
                        lambda: tf.zeros(shape, tf.float32))
        image.set_shape(shape)
        return image, raw_label, problem

    def parses(serialized):
        return tf.io.parse_single_example(serialized, _FEATURES)["image/class/label"]

    def parse(file_id, index, serialized):
        one = tf.data.Dataset.from_tensors(serialized)
        image, raw_label, problem = _single_or(
            one.map(parse_and_decode),
            (tf.zeros(shape, tf.float32), tf.constant(-1, tf.int64), tf.constant(UNDECODABLE)))
        # Only for a record that raised: did it parse (so its image failed to decode)?
        unparsed = tf.constant(tf.int64.min, tf.int64)
        problem = tf.cond(
            tf.equal(problem, UNDECODABLE),
            lambda: tf.where(tf.equal(_single_or(one.map(parses), unparsed), unparsed),
                             NOT_AN_EXAMPLE, UNDECODABLE),
            lambda: problem)
        label = tf.cast(raw_label - labels_offset, tf.int32)
        return image, label, file_id, index, problem, raw_label
    return do_not_convert(parse)  # explicit tf.cond only, as _parse_fn


def _ignore_errors(dataset):
    method = getattr(dataset, "ignore_errors", None)  # TF 2.x; TF 1.15: experimental
    return method() if method is not None else dataset.apply(
        tf.data.experimental.ignore_errors())


class SkippedRecords(object):
    """--skip_corrupt_records' count: every bad record dropped (each epoch it comes
    round again), the first MAX_NAMED distinct ones logged by name."""

    MAX_NAMED = 20

    def __init__(self, logger, labels_offset=0, num_classes=0):
        self._logger = logger
        self._labels_offset, self._num_classes = labels_offset, num_classes
        self._lock = threading.Lock()
        self._seen = set()
        self.count = 0

    def add(self, path, index, problem, label=-1):
        """Counts one dropped record (index -1: a whole shard's tail); logs it the first
        time it is seen."""
        with self._lock:
            self.count += 1
            key = (path, index)
            if key in self._seen:
                return
            self._seen.add(key)
            named = len(self._seen)
        if named <= self.MAX_NAMED:
            self._logger.info("skipped %s (%d skipped so far)" % (
                describe_bad_record(path, index, problem, label, self._labels_offset,
                                    self._num_classes), self.count))
        elif named == self.MAX_NAMED + 1:
            self._logger.info("more bad records: counting them without naming each")

    def distinct(self):
        with self._lock:
            return len(self._seen)

    def keep_fn(self, files):
        """filter() predicate over parse's output: True for good records; a bad one is
        counted (a Python call, only for bad records) and dropped."""
        def note(name, index, problem, label):
            self.add(name.numpy().decode("utf-8", "replace"), int(index), int(problem),
                     int(label))
            return False

        def keep(image, label, file_id, index, problem, raw_label):
            del image, label
            ok = tf.equal(problem, RECORD_OK)
            names = tf.constant(files)

            def drop():
                kept = tf.py_function(note, [tf.gather(names, file_id), index, problem,
                                             raw_label], tf.bool)
                return tf.reshape(kept, [])
            return tf.cond(ok, lambda: ok, drop)
        return keep


# ----------------------------------------------------------------------------- datasets

def _thread_options(num_threads):
    options = tf.data.Options()
    # TF 2.x names it options.threading; TF 1.15 only has experimental_threading.
    threading = getattr(options, "threading", None) or options.experimental_threading
    threading.private_threadpool_size = num_threads
    threading.max_intra_op_parallelism = 1
    # Thread counts and buffers are fixed here, so autotuning has nothing to tune, yet its
    # background work cost MobileNetV2 training from JPEG records ~10% on 2 cores
    # (benchmarks: 10.7-12.2 img/s with it, 12.4-13.2 without, 12.2-13.4 synthetic).
    autotune = getattr(options, "autotune", None)  # TF 1.15: experimental_optimization
    if autotune is not None:
        autotune.enabled = False
    else:
        options.experimental_optimization.autotune = False
    return options


def _shard_records(file_id, path, skip_corrupt):
    """One shard's records tagged (file_id, index in the shard, serialized record). With
    skip_corrupt a record cut short or failing its checksum ends the shard there
    instead of the run (what is lost is counted by the shards' header scan)."""
    records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)
    if skip_corrupt:
        records = _ignore_errors(records)
    return tf.data.Dataset.zip((tf.data.Dataset.from_tensors(file_id).repeat(),
                                tf.data.Dataset.range(MAX_RECORDS_PER_SHARD), records))


def _files_with_ids(files):
    return tf.data.Dataset.from_tensor_slices((list(range(len(files))), files))


def _training_records(files, shard_records, rank, rank_size, seed, num_threads,
                      skip_corrupt=False):
    def read(file_id, path):
        return _shard_records(file_id, path, skip_corrupt)
    if shard_records:
        # Record sharding needs the same record order on every rank: read in file order.
        return _files_with_ids(files).flat_map(read).shard(rank_size, rank)
    names = _files_with_ids(files).shuffle(len(files), seed=seed)
    cycle = min(len(files), MAX_INTERLEAVE_CYCLE)
    # tf.data refuses more parallel reads than open files (more threads than shards).
    return names.interleave(read, cycle_length=cycle, block_length=1,
                            num_parallel_calls=min(num_threads, cycle))


def _records_dataset(files, shard_records, rank, rank_size, is_training, seed, num_threads,
                     shuffle_buffer, num_epochs, skip_corrupt=False):
    if not is_training:
        records = _files_with_ids(files).flat_map(
            lambda file_id, path: _shard_records(file_id, path, skip_corrupt))
        return records.shard(rank_size, rank) if shard_records else records
    records = _training_records(files, shard_records, rank, rank_size, seed, num_threads,
                                skip_corrupt)
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
    buffer = max(1, min(MAX_SHUFFLE_BUFFER, dataset_spec.num_samples(split)))
    with tf.Graph().as_default():
        parse = _parse_fn(preprocess_fn, image_size, False, 0, None, files)
        records = _training_records(files, False, 0, 1, seed, default_num_threads())
        images = records.shuffle(buffer, seed=seed).take(count).map(
            lambda file_id, index, record: parse(file_id, index, record)[0]).batch(count)
        with tf.Session() as sess:
            return sess.run(tf.data.make_one_shot_iterator(images).get_next())


def find_bad_record(files, image_size, preprocessing_name="inception", labels_offset=0,
                    num_classes=None, num_threads=None):
    """(path, index, problem, stored label) of the first record of ``files`` (in file
    order) that does not parse, holds no decodable image or has a label outside
    [0, num_classes); None when all are good. Decodes every record up to the bad one,
    so it takes as long as reading that much of the data once."""
    preprocess_fn = preprocessing.get_preprocessing(preprocessing_name)
    parse = _skipping_parse_fn(preprocess_fn, image_size, False, labels_offset, num_classes)
    num_threads = num_threads or default_num_threads()
    with tf.Graph().as_default():
        records = _records_dataset(files, False, 0, 1, False, None, num_threads, 1, 1,
                                   skip_corrupt=True)
        bad = records.map(parse, num_parallel_calls=num_threads).filter(
            lambda image, label, file_id, index, problem, raw_label:
            tf.not_equal(problem, RECORD_OK)).take(1)
        found = tf.data.make_one_shot_iterator(bad).get_next()
        with tf.Session() as sess:
            try:
                _, _, file_id, index, problem, raw_label = sess.run(found)
            except tf.errors.OutOfRangeError:
                return None
    return files[int(file_id)], int(index), int(problem), int(raw_label)


def pad_to_batch(batch_size):
    """A map() function over (images, labels) batches that pads each to ``batch_size``
    with blank images (zeros) of label 0 and adds float32 [batch_size] weights, 1 for
    the batch's own images and 0 for the padding, which comes last. Every shape is then
    static, so a device compiles the graph for one batch shape only."""
    def pad(images, labels):
        count = tf.shape(labels)[0]
        missing = batch_size - count
        image_shape = images.shape.as_list()[1:]
        images = tf.pad(images, [[0, missing]] + [[0, 0]] * len(image_shape))
        labels = tf.pad(labels, [[0, missing]])
        weights = tf.sequence_mask(count, batch_size, dtype=tf.float32)
        images.set_shape([batch_size] + image_shape)
        labels.set_shape([batch_size])
        weights.set_shape([batch_size])
        return images, labels, weights
    return pad


def make_input_fn(dataset_spec, split, is_training, batch_size, image_size,
                  preprocessing_name="inception", preprocessing_options=None, labels_offset=0,
                  num_classes=None, rank=0, rank_size=1, shuffle_buffer=None, seed=None,
                  num_epochs=None, synthetic=False, num_threads=None, skipped=None,
                  pad_final_batch=False):
    """Returns input_fn(params=None) -> Dataset of (float32 [B, S, S, 3], int32 [B]).

    Training: shuffled, repeated num_epochs times (None: forever), full batches only.
    Evaluation: every record of this rank's share once, in file order, last batch partial;
    with ``pad_final_batch`` that batch is padded to B instead and each element gains
    float32 [B] weights, 0 for the padding (pad_to_batch): every batch then has the
    static shape [B, ...], and a weighted sum still counts each image once.
    A bad record (label outside [0, num_classes), bytes that are no image) fails the run
    naming its shard and index; with ``skipped`` (a SkippedRecords) bad records, and
    records that do not parse or decode, are dropped and counted there instead, and a
    shard cut short ends at its last complete record.
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

    preprocess_fn = preprocessing.get_preprocessing(
        preprocessing_name, dict(preprocessing_options or {}, seed=seed))
    files, shard_records = files_for_rank(dataset_spec.list_files(split), rank, rank_size)
    if shuffle_buffer is None:
        shuffle_buffer = max(1, min(MAX_SHUFFLE_BUFFER, dataset_spec.num_samples(split)))
    if skipped is None:
        parse = _parse_fn(preprocess_fn, image_size, is_training, labels_offset, num_classes,
                          files)
    else:
        parse = _skipping_parse_fn(preprocess_fn, image_size, is_training, labels_offset,
                                   num_classes)

    def input_fn(params=None):
        del params  # the batch size is fixed when the input_fn is made
        records = _records_dataset(files, shard_records, rank, rank_size, is_training, seed,
                                   num_threads, shuffle_buffer, num_epochs,
                                   skip_corrupt=skipped is not None)
        examples = records.map(parse, num_parallel_calls=num_threads)
        if skipped is not None:
            examples = examples.filter(skipped.keep_fn(files)).map(
                lambda image, label, file_id, index, problem, raw_label: (image, label))
        batches = examples.batch(batch_size, drop_remainder=is_training)
        if pad_final_batch and not is_training:
            batches = batches.map(pad_to_batch(batch_size))
        return batches.prefetch(PREFETCH_BATCHES).with_options(options)
    return input_fn
