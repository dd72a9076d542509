"""Converts image trees into TF-Slim-style TFRecord shards.

Input: class-per-folder trees (DIR/<class>/<image>) for train and/or validation, or
ImageNet's flat validation folder plus a ground-truth file (--imagenet_val_labels).
Output: <split>-NNNNN-of-NNNNN shards of tf.train.Example (slim keys, RGB JPEG bytes),
labels.txt and dataset_meta.json (written last).

  python -m datasets.build_tfrecords --train_directory=IMAGES/train \\
      --validation_directory=IMAGES/validation --output_directory=RECORDS
"""
import collections
import io
import json
import os
import random
import sys
import threading
import time
from concurrent import futures

from absl import app, flags
from PIL import Image

from datasets import layout
from utils.errors import UserError, exit_on_user_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95
PROGRESS_EVERY_S = 2.0

Item = collections.namedtuple("Item", "path label text")


# ----------------------------------------------------------------------------- inputs

def _is_image_name(name):
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _image_files(folder):
    return sorted(n for n in os.listdir(folder)
                  if _is_image_name(n) and os.path.isfile(os.path.join(folder, n)))


def _require_dir(path, flag):
    if not os.path.isdir(path):
        raise UserError("--%s=%s is not a directory; pass an existing image folder"
                        % (flag, path))


def _scan_class_tree(directory, flag):
    """Returns {class folder name: [image paths]} for a class-per-folder tree."""
    _require_dir(directory, flag)
    classes = sorted(n for n in os.listdir(directory)
                     if not n.startswith(".") and os.path.isdir(os.path.join(directory, n)))
    if not classes:
        raise UserError("--%s=%s has no class folders; put each class's images in its own "
                        "subfolder (%s/<class>/<image>.jpg)" % (flag, directory, directory))
    tree = collections.OrderedDict()
    for name in classes:
        folder = os.path.join(directory, name)
        tree[name] = [os.path.join(folder, f) for f in _image_files(folder)]
    if not any(tree.values()):
        raise UserError("--%s=%s has class folders but no images (%s)"
                        % (flag, directory, " ".join(IMAGE_EXTENSIONS)))
    return tree


def _read_ground_truth(truth_file):
    """Maps image file name -> synset from 'filename synset' lines, or from one synset
    per line in the order of ILSVRC2012_val_00000001.JPEG, ... (ImageNet's devkit)."""
    if not os.path.isfile(truth_file):
        raise UserError("--imagenet_val_labels=%s does not exist" % truth_file)
    with open(truth_file) as f:
        rows = [line.split() for line in f if line.strip()]
    if rows and all(len(row) == 2 for row in rows):
        return {os.path.basename(name): synset for name, synset in rows}
    if rows and all(len(row) == 1 for row in rows):
        return {"ILSVRC2012_val_%08d.JPEG" % (i + 1): row[0] for i, row in enumerate(rows)}
    raise UserError("--imagenet_val_labels=%s: expected 'filename synset' or 'synset' on "
                    "every line" % truth_file)


def _scan_flat_validation(directory, truth_file):
    """Returns {synset: [image paths]} for ImageNet's flat validation folder."""
    _require_dir(directory, "validation_directory")
    truth = _read_ground_truth(truth_file)
    tree = collections.OrderedDict()
    for name in _image_files(directory):
        synset = truth.get(name, truth.get(os.path.splitext(name)[0]))
        if synset is None:
            raise UserError("%s has no entry in --imagenet_val_labels=%s; add it or remove "
                            "the image" % (os.path.join(directory, name), truth_file))
        tree.setdefault(synset, []).append(os.path.join(directory, name))
    if not tree:
        raise UserError("--validation_directory=%s holds no images" % directory)
    return tree


def _read_class_list(labels_file):
    if not os.path.isfile(labels_file):
        raise UserError("--labels_file=%s does not exist" % labels_file)
    with open(labels_file) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise UserError("--labels_file=%s is empty; list one class name per line" % labels_file)
    if len(set(names)) != len(names):
        raise UserError("--labels_file=%s lists a class twice" % labels_file)
    return names


def _class_names(trees, labels_file):
    """The class order: --labels_file's, else the sorted union of the trees' classes."""
    found = set()
    for tree in trees.values():
        found.update(tree)
    if not labels_file:
        return sorted(found)
    names = _read_class_list(labels_file)
    unknown = sorted(found - set(names))
    if unknown:
        raise UserError("class %r has images but is not in --labels_file=%s; add it there"
                        % (unknown[0], labels_file))
    return names


def _shuffled_items(tree, class_names, seed):
    index = {name: i for i, name in enumerate(class_names)}
    items = [Item(path, index[name], name) for name, paths in tree.items() for path in paths]
    # Fixed-seed shuffle so each shard holds a mix of classes, reproducibly.
    random.Random(seed).shuffle(items)
    return items


# ----------------------------------------------------------------------------- images

def _read_image(path):
    """Returns (file bytes, decoded PIL image, (width, height)); a file PIL cannot
    decode is a UserError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        image = Image.open(io.BytesIO(data))
        size = image.size
        if image.format == "JPEG" and image.mode == "RGB":
            # Only the stream's validity matters here: decode at reduced scale.
            image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        image.load()
    except Exception as err:  # PIL raises many types for broken files
        raise UserError("cannot read image %s (%s); fix or remove the file"
                        % (path, str(err) or type(err).__name__))
    return data, image, size


def encode_rgb_jpeg(path):
    """Returns (RGB JPEG bytes, height, width). RGB JPEGs pass through unchanged; PNG,
    grayscale, CMYK and other inputs are converted to RGB and re-encoded."""
    data, image, (width, height) = _read_image(path)
    if image.format == "JPEG" and image.mode == "RGB":
        return data, height, width
    try:
        rgb = image.convert("RGB")
    except Exception as err:
        raise UserError("cannot convert image %s to RGB (%s); fix or remove the file"
                        % (path, err))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), rgb.height, rgb.width


def _tf():
    # Imported on first use, so input mistakes are reported before TensorFlow's slow,
    # noisy import.
    from utils.tf_compat import tf
    return tf


def _int64(value):
    tf = _tf()
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _bytes(value):
    if not isinstance(value, bytes):
        value = value.encode("utf-8")
    tf = _tf()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _example(item, jpeg, height, width):
    tf = _tf()
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes(jpeg),
        "image/format": _bytes(b"JPEG"),
        "image/class/label": _int64(item.label),
        "image/class/text": _bytes(item.text),
        "image/height": _int64(height),
        "image/width": _int64(width),
        "image/colorspace": _bytes(b"RGB"),
        "image/channels": _int64(3),
        "image/filename": _bytes(os.path.basename(item.path)),
    }))


# ----------------------------------------------------------------------------- writing

class Progress(object):
    """Thread-safe counter printing 'images done / total, images/sec' every few seconds."""

    def __init__(self, split, total, stream=None):
        self.split, self.total = split, total
        self.stream = stream or sys.stdout
        self.done = 0
        self.start = self.last_print = time.time()
        self.lock = threading.Lock()

    def advance(self):
        with self.lock:
            self.done += 1
            now = time.time()
            if self.done == self.total or now - self.last_print >= PROGRESS_EVERY_S:
                self.last_print = now
                rate = self.done / max(now - self.start, 1e-6)
                self.stream.write("[%s] %d/%d images, %.1f images/sec\n"
                                  % (self.split, self.done, self.total, rate))
                self.stream.flush()


def _write_shard(path, items, progress, stop):
    """Writes items to path via a temporary name; renames only when complete."""
    tf = _tf()
    temp = os.path.join(os.path.dirname(path), layout.TEMP_PREFIX + os.path.basename(path))
    try:
        with tf.io.TFRecordWriter(temp) as writer:
            for item in items:
                if stop.is_set():
                    return
                jpeg, height, width = encode_rgb_jpeg(item.path)
                writer.write(_example(item, jpeg, height, width).SerializeToString())
                progress.advance()
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _write_split(split, items, num_shards, output_directory, num_threads):
    """Writes the split's shards in parallel; returns the number of shards written."""
    # No empty shards: a rank that reads only an empty shard would have nothing to train on.
    num_shards = min(num_shards, len(items))
    bounds = [len(items) * i // num_shards for i in range(num_shards + 1)]
    _tf()  # import before the clock starts, so images/sec is the conversion's speed
    progress = Progress(split, len(items))
    stop = threading.Event()
    with futures.ThreadPoolExecutor(max_workers=num_threads) as pool:
        jobs = [pool.submit(_write_shard,
                            os.path.join(output_directory,
                                         layout.shard_filename(split, i, num_shards)),
                            items[bounds[i]:bounds[i + 1]], progress, stop)
                for i in range(num_shards)]
        try:
            for job in futures.as_completed(jobs):
                job.result()
        except BaseException:
            stop.set()  # the other shards stop at their next image
            raise
    return num_shards


def _prepare_output(output_directory, overwrite):
    """Creates the folder; refuses (or with overwrite, clears) earlier conversion files."""
    if not os.path.isdir(output_directory):
        os.makedirs(output_directory)
        return
    existing = sorted(n for n in os.listdir(output_directory) if layout.is_output_file(n))
    if existing and not overwrite:
        raise UserError("--output_directory=%s already holds a conversion (%s, %d files); "
                        "pass --overwrite to replace it or choose another folder"
                        % (output_directory, existing[0], len(existing)))
    # The metadata goes first, so an interrupted rewrite never looks complete.
    existing.sort(key=lambda n: n != layout.META_FILENAME)
    for name in existing:
        os.remove(os.path.join(output_directory, name))


def _check_counts(train_shards, validation_shards, num_threads):
    for flag, value in (("train_shards", train_shards),
                        ("validation_shards", validation_shards),
                        ("num_threads", num_threads)):
        if value < 1:
            raise UserError("--%s=%s must be at least 1" % (flag, value))


def _scan_inputs(train_directory, validation_directory, imagenet_val_labels):
    trees = collections.OrderedDict()
    if train_directory:
        trees["train"] = _scan_class_tree(train_directory, "train_directory")
    if validation_directory and imagenet_val_labels:
        trees["validation"] = _scan_flat_validation(validation_directory, imagenet_val_labels)
    elif validation_directory:
        trees["validation"] = _scan_class_tree(validation_directory, "validation_directory")
    elif imagenet_val_labels:
        raise UserError("--imagenet_val_labels needs --validation_directory (the flat "
                        "folder of validation images)")
    return trees


def convert(train_directory=None, validation_directory=None, output_directory=None,
            train_shards=8, validation_shards=2, num_threads=2, overwrite=False,
            labels_file=None, imagenet_val_labels=None, shuffle_seed=12345):
    """Converts the given image trees; returns the metadata written to dataset_meta.json."""
    if not train_directory and not validation_directory:
        raise UserError("pass --train_directory and/or --validation_directory")
    if not output_directory:
        raise UserError("--output_directory is required")
    _check_counts(train_shards, validation_shards, num_threads)
    trees = _scan_inputs(train_directory, validation_directory, imagenet_val_labels)
    class_names = _class_names(trees, labels_file)
    _prepare_output(output_directory, overwrite)

    requested = {"train": train_shards, "validation": validation_shards}
    splits = collections.OrderedDict()
    for split, tree in trees.items():
        items = _shuffled_items(tree, class_names, shuffle_seed)
        shards = _write_split(split, items, requested[split], output_directory, num_threads)
        splits[split] = {"num_samples": len(items), "num_shards": shards}

    metadata = collections.OrderedDict([
        ("format", layout.META_FORMAT), ("num_classes", len(class_names)),
        ("labels_offset", 0), ("splits", splits), ("class_names", class_names),
        ("image_format", "JPEG")])
    layout.write_labels_file(os.path.join(output_directory, layout.LABELS_FILENAME),
                             class_names)
    layout.atomic_write_text(os.path.join(output_directory, layout.META_FILENAME),
                             json.dumps(metadata, indent=2) + "\n")
    return metadata


# ----------------------------------------------------------------------------- CLI

def define_flags():
    flags.DEFINE_string("train_directory", None, "Class-per-folder tree of training images.")
    flags.DEFINE_string("validation_directory", None,
                        "Class-per-folder tree of validation images (or ImageNet's flat "
                        "validation folder with --imagenet_val_labels).")
    flags.DEFINE_string("output_directory", None, "Folder for the shards and metadata.")
    flags.DEFINE_integer("train_shards", 8, "Number of training shards.")
    flags.DEFINE_integer("validation_shards", 2, "Number of validation shards.")
    flags.DEFINE_integer("num_threads", 2, "Shards written in parallel.")
    flags.DEFINE_string("labels_file", None,
                        "Class folder names in label order, one per line "
                        "(default: sorted folder names).")
    flags.DEFINE_string("imagenet_val_labels", None,
                        "Ground truth for a flat validation folder: 'filename synset' per "
                        "line, or one synset per line in ILSVRC2012_val_NNNNNNNN order.")
    flags.DEFINE_boolean("overwrite", False,
                         "Replace an earlier conversion in --output_directory.")
    flags.DEFINE_integer("shuffle_seed", 12345, "Seed of the shuffle before sharding.")


def main(argv):
    if len(argv) > 1:
        raise UserError("unexpected arguments %s; every option is a --flag" % " ".join(argv[1:]))
    f = flags.FLAGS
    metadata = convert(
        train_directory=f.train_directory, validation_directory=f.validation_directory,
        output_directory=f.output_directory, train_shards=f.train_shards,
        validation_shards=f.validation_shards, num_threads=f.num_threads,
        overwrite=f.overwrite, labels_file=f.labels_file,
        imagenet_val_labels=f.imagenet_val_labels, shuffle_seed=f.shuffle_seed)
    counts = ", ".join("%s %d images in %d shards" % (split, s["num_samples"], s["num_shards"])
                       for split, s in metadata["splits"].items())
    print("wrote %s (%d classes) to %s" % (counts, metadata["num_classes"], f.output_directory))


if __name__ == "__main__":
    define_flags()
    app.run(exit_on_user_error(main))
