"""Input-side ceilings: our training input pipeline alone, and JPEG decoding alone.

pipeline: data_provider.make_input_fn exactly as train.py makes it (train split,
  shuffling, inception crop + resize + flip, batching, prefetch, the same private thread
  pool), iterated in a tf.Session with no model. Only a tiny slice of each batch is
  fetched, so the 19 MB batch is not copied to numpy (training never does that either).
decode: tf.io.decode_jpeg on every record's JPEG bytes, whole image, no crop or resize,
  on the same number of threads; the bytes are read into memory first, so this is the
  decode cost alone, the ceiling any JPEG pipeline on these threads works under.

  .venv/bin/python -m benchmarks.input_pipeline --dataset_dir=RECORDS --batches=40
"""
import argparse
import platform
import time

from benchmarks import measure


def _time_batches(sess, fetch, warmup, batches, batch_size):
    """Images/s per batch after ``warmup`` batches (window of one batch)."""
    ends = []
    start = time.perf_counter()
    for _ in range(warmup + batches):
        sess.run(fetch)
        ends.append(time.perf_counter())
    return measure.window_rates(start, ends, batch_size, warmup, 1)


def pipeline_rates(tf, dataset_dir, batch_size, image_size, num_classes, threads, warmup,
                   batches):
    from dataloader import data_provider
    from datasets import dataset_factory
    spec = dataset_factory.get_dataset("auto", dataset_dir)
    with tf.Graph().as_default():
        input_fn = data_provider.make_input_fn(
            spec, "train", is_training=True, batch_size=batch_size, image_size=image_size,
            num_classes=num_classes, num_threads=threads)
        images, labels = tf.data.make_one_shot_iterator(input_fn()).get_next()
        fetch = [images[:, 0, 0, 0], labels]
        with tf.Session() as sess:
            return _time_batches(sess, fetch, warmup, batches, batch_size)


def _jpeg_bytes(tf, files):
    """Every record's image/encoded bytes, read once into a list."""
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    with tf.Graph().as_default():
        records = tf.data.TFRecordDataset(files).map(
            lambda r: tf.io.parse_single_example(r, features)["image/encoded"])
        encoded = tf.data.make_one_shot_iterator(records.batch(256)).get_next()
        found = []
        with tf.Session() as sess:
            while True:
                try:
                    found.extend(sess.run(encoded))
                except tf.errors.OutOfRangeError:
                    return found


def _private_threads(tf, threads):
    """tf.data options as the dataloader sets them: a private pool of ``threads``."""
    options = tf.data.Options()
    threading = getattr(options, "threading", None) or options.experimental_threading
    threading.private_threadpool_size = threads
    threading.max_intra_op_parallelism = 1
    return options


def decode_rates(tf, dataset_dir, batch_size, threads, warmup, batches):
    from datasets import dataset_factory
    spec = dataset_factory.get_dataset("auto", dataset_dir)
    jpegs = _jpeg_bytes(tf, spec.list_files("train"))

    def decode(data):
        image = tf.io.decode_jpeg(data, channels=3)
        # A strided read of the decoded pixels: needs the full decode, costs nothing.
        return tf.reduce_sum(tf.cast(image[::64, ::64, 0], tf.int32))

    with tf.Graph().as_default():
        data = tf.data.Dataset.from_tensor_slices(jpegs).repeat()
        data = data.map(decode, num_parallel_calls=threads).batch(batch_size)
        data = data.prefetch(2).with_options(_private_threads(tf, threads))
        fetch = tf.data.make_one_shot_iterator(data).get_next()
        with tf.Session() as sess:
            rates = _time_batches(sess, fetch, warmup, batches, batch_size)
    return rates, len(jpegs), sum(len(j) for j in jpegs) / 1024.0 / max(1, len(jpegs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_classes", type=int, default=1000,
                        help="the head's classes (labels are range-checked as in training)")
    parser.add_argument("--threads", type=int, default=None,
                        help="tf.data threads (default: the dataloader's, cores - 1)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args(argv)

    import logger as logger_lib
    from dataloader import data_provider
    from utils.tf_compat import tf
    logger_lib.quiet_tensorflow()
    threads = args.threads or data_provider.default_num_threads()
    pipeline = pipeline_rates(tf, args.dataset_dir, args.batch_size, args.image_size,
                              args.num_classes, threads, args.warmup, args.batches)
    decode, records, kib = decode_rates(tf, args.dataset_dir, args.batch_size, threads,
                                        args.warmup, args.batches)
    print(measure.result_line({
        "pipeline": measure.summarize(pipeline), "decode": measure.summarize(decode),
        "threads": threads, "records": records, "mean_jpeg_kib": round(kib, 1),
        "tensorflow": tf.VERSION, "python": platform.python_version()}), flush=True)


if __name__ == "__main__":
    main()
