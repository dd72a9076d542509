"""Tiny, deterministic image trees and TFRecord datasets for tests."""
import os

import numpy as np
from PIL import Image

from datasets import build_tfrecords

# One distinct colour per class (cycled), so a model can learn the classes quickly.
_CLASS_COLORS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40),
                 (200, 50, 210), (40, 210, 210), (130, 130, 130), (250, 140, 30)]


def class_image(label, index, size):
    """A size x size RGB array: the class colour plus seeded noise and a stripe."""
    rng = np.random.RandomState(1000 * label + index)
    base = np.array(_CLASS_COLORS[label % len(_CLASS_COLORS)], np.float32)
    pixels = base + rng.normal(0.0, 20.0, (size, size, 3))
    pixels[(label * 5) % size:(label * 5) % size + 3, :, :] = 255.0 - base
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_image_tree(root, num_classes, per_class, size, start_index=0):
    """Writes root/class_<k>/img_<i>.jpg; returns the number of images written."""
    for label in range(num_classes):
        folder = os.path.join(root, "class_%d" % label)
        os.makedirs(folder, exist_ok=True)
        for i in range(start_index, start_index + per_class):
            Image.fromarray(class_image(label, i, size)).save(
                os.path.join(folder, "img_%03d.jpg" % i), quality=90)
    return num_classes * per_class


def write_tiny_dataset(tmp_dir, num_classes=3, per_class=4, size=32, split_counts=None,
                       train_shards=2, validation_shards=2):
    """Writes an image tree under tmp_dir/images and converts it; returns the records
    folder (tmp_dir/records). split_counts: images per class per split, default
    {"train": per_class, "validation": max(1, per_class // 2)}."""
    if split_counts is None:
        split_counts = {"train": per_class, "validation": max(1, per_class // 2)}
    trees = {}
    start = 0
    for split in ("train", "validation"):
        if split_counts.get(split):
            trees[split] = os.path.join(tmp_dir, "images", split)
            # Distinct indices per split: validation images differ from training ones.
            write_image_tree(trees[split], num_classes, split_counts[split], size, start)
            start += split_counts[split]
    records = os.path.join(tmp_dir, "records")
    build_tfrecords.convert(
        train_directory=trees.get("train"), validation_directory=trees.get("validation"),
        output_directory=records, train_shards=train_shards,
        validation_shards=validation_shards, num_threads=1)
    return records
