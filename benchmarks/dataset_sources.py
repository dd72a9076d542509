"""Images as they come, read two ways: directly from the files with tf.data, or from the
TFRecord cache --dataset_dir converts them into once (datasets/sources.py).

For each image tree, the same training input (the model's preprocessing, shuffling,
batching, prefetch, the dataloader's private pool of threads) is timed both ways,
alternating, and the one-time conversion is timed too:

  cifar   CIFAR-10's first N training images as 32x32 PNG files (as image-folder users
          keep them), the cifar preprocessing at 32 px
  photos  an ImageNet-like JPEG tree (benchmarks/make_jpeg_dataset.py: about 450x360 px),
          the inception preprocessing at 224 px

  .venv/bin/python -m benchmarks.dataset_sources --cifar=cifar-10-batches-py \\
      [--cifar_images=10000] [--photos=1000] [--out=benchmarks/DATASET_SOURCES.json]

Results go to the JSON file: images/s per way (median of the rounds, and every round's),
the conversion's seconds, files and images/s, and the machine.
"""
import argparse
import json
import os
import platform
import shutil
import tempfile
import time

from benchmarks import input_pipeline, measure


def write_cifar_tree(cifar_dir, count, root):
    """root/train/<class name>/<index>.png of the first ``count`` training images."""
    from PIL import Image
    from datasets import cifar
    data = cifar.load(cifar_dir)
    train = data.splits["train"]
    for index in range(count):
        folder = os.path.join(root, "train", data.class_names[train.labels[index]])
        if not os.path.isdir(folder):
            os.makedirs(folder)
        Image.fromarray(train.images[index]).save(os.path.join(folder, "%05d.png" % index))
    return len(data.class_names)


def write_photo_tree(count, root):
    import numpy as np
    from benchmarks import make_jpeg_dataset
    make_jpeg_dataset.write_tree(os.path.join(root, "train"), count, 10,
                                 np.random.RandomState(make_jpeg_dataset.SEED))
    return 10


def direct_rates(tf, tree, preprocessing_name, image_size, batch_size, threads, warmup,
                 batches):
    """The training input read straight from the files: list, shuffle, read, decode and
    preprocess in parallel, batch, prefetch."""
    from dataloader import preprocessing
    from datasets import build_tfrecords
    classes = sorted(os.listdir(tree))
    paths, labels = [], []
    for label, name in enumerate(classes):
        for file_name in sorted(os.listdir(os.path.join(tree, name))):
            if build_tfrecords.is_image_name(file_name):
                paths.append(os.path.join(tree, name, file_name))
                labels.append(label)
    preprocess = preprocessing.get_preprocessing(preprocessing_name)

    def load(path, label):
        return preprocess(tf.io.read_file(path), image_size, image_size, True), label

    with tf.Graph().as_default():
        data = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(
            len(paths), reshuffle_each_iteration=True).repeat()
        data = data.map(load, num_parallel_calls=threads).batch(batch_size, drop_remainder=True)
        data = data.prefetch(2).with_options(input_pipeline._private_threads(tf, threads))
        images, batch_labels = tf.data.make_one_shot_iterator(data).get_next()
        with tf.Session() as sess:
            return input_pipeline._time_batches(sess, [images[:, 0, 0, 0], batch_labels],
                                                warmup, batches, batch_size)


def measure_tree(tf, name, root, num_classes, preprocessing_name, image_size, args, threads):
    from datasets import sources
    started = time.time()
    records = sources.records_dir(root, os.path.join(root, "..", "cache"))
    conversion_s = time.time() - started
    with open(os.path.join(records, "dataset_meta.json")) as handle:
        images = json.load(handle)["splits"]["train"]["num_samples"]
    rounds = {"direct": [], "cache": []}
    for round_index in range(args.rounds):
        # Alternate which goes first, so a drifting machine favours neither.
        order = ("direct", "cache") if round_index % 2 == 0 else ("cache", "direct")
        for way in order:
            if way == "direct":
                rates = direct_rates(tf, os.path.join(root, "train"), preprocessing_name,
                                     image_size, args.batch_size, threads, args.warmup,
                                     args.batches)
            else:
                rates = input_pipeline.pipeline_rates(
                    tf, records, args.batch_size, image_size, num_classes, threads,
                    args.warmup, args.batches)
            rounds[way].append(round(measure.summarize(rates)["median"], 1))
    return {"images": images, "image_size": image_size, "preprocessing": preprocessing_name,
            "conversion_s": round(conversion_s, 1),
            "conversion_images_per_s": round(images / conversion_s, 1),
            "images_per_s": {way: {"median": sorted(values)[len(values) // 2],
                                   "rounds": values} for way, values in rounds.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", required=True, help="an unpacked CIFAR-10 archive")
    parser.add_argument("--cifar_images", type=int, default=10000)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                      "DATASET_SOURCES.json"))
    args = parser.parse_args(argv)

    import logger as logger_lib
    from dataloader import data_provider
    from utils.tf_compat import tf
    logger_lib.quiet_tensorflow()
    threads = data_provider.default_num_threads()
    work = tempfile.mkdtemp(prefix="dataset_sources_")
    results = {}
    try:
        for name, writer, preprocessing_name, size, batch in (
                ("cifar", lambda r: write_cifar_tree(args.cifar, args.cifar_images, r),
                 "cifar", 32, args.batch_size),
                ("photos", lambda r: write_photo_tree(args.photos, r), "inception", 224, 32)):
            root = os.path.join(work, name, "tree")
            num_classes = writer(root)
            results[name] = measure_tree(tf, name, root, num_classes, preprocessing_name,
                                         size, argparse.Namespace(**dict(
                                             vars(args), batch_size=batch)), threads)
            print(name, json.dumps(results[name]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["machine"] = {"cpus": os.cpu_count(), "threads": threads,
                          "python": platform.python_version(), "tensorflow": tf.VERSION,
                          "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
