"""Converts image trees into TF-Slim-style TFRecord shards.

Input: class-per-folder trees (DIR/<class>/<image>) for train and/or validation, or
ImageNet's flat validation folder plus a ground-truth file (--imagenet_val_labels), or
an unpacked CIFAR-10 / CIFAR-100 archive (--cifar_directory, datasets/cifar.py).
Output: <split>-NNNNN-of-NNNNN shards of tf.train.Example (slim keys; RGB JPEG bytes, or
lossless PNG for CIFAR's pixel arrays), labels.txt and dataset_meta.json (written last).

Interrupted (killed, a full disk, a broken image), a conversion leaves only complete
shards (each is written under a .tmp- name and renamed when done) and a .tmp-conversion.json
saying what it was writing; readers refuse the folder until dataset_meta.json exists.
Running the same command again keeps the complete shards and writes the rest.

  python -m datasets.build_tfrecords --train_directory=IMAGES/train \\
      --validation_directory=IMAGES/validation --output_directory=RECORDS
  python -m datasets.build_tfrecords --cifar_directory=cifar-10-batches-py \\
      --output_directory=RECORDS
"""
import collections
from concurrent import futures
import hashlib
import io
import json
import os
import random
import sys
import threading
import time

from absl import flags
from PIL import Image

from dataloader import record_check
from datasets import cifar, layout
from utils.errors import UserError, exit_on_user_error, run_main
from utils.files import ensure_writable_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95
PROGRESS_EVERY_S = 2.0

# path: the image file, or for pixels given as an array (CIFAR) "<folder>#<split>-<index>";
# pixels: None, or uint8 [H, W, 3]; name: the record's image/filename.
Item = collections.namedtuple("Item", "path label text pixels name")


def file_item(path, label, text):
    """An Item for the image file at ``path`` (read when it is written)."""
    return Item(path, label, text, None, os.path.basename(path))


# ----------------------------------------------------------------------------- inputs

def is_image_name(name):
    """True for a file name the converter reads as an image (IMAGE_EXTENSIONS)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _image_files(folder):
    return sorted(n for n in os.listdir(folder)
                  if is_image_name(n) and os.path.isfile(os.path.join(folder, n)))


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
    items = [file_item(path, index[name], name) for name, paths in tree.items()
             for path in paths]
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


def encode_png(pixels):
    """Lossless PNG bytes of a uint8 [H, W, 3] array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def encode_item(item):
    """(encoded bytes, format, height, width) of an item: files as RGB JPEG, arrays as
    PNG, so a decoded record equals the source pixels."""
    if item.pixels is None:
        jpeg, height, width = encode_rgb_jpeg(item.path)
        return jpeg, b"JPEG", height, width
    return encode_png(item.pixels), b"PNG", item.pixels.shape[0], item.pixels.shape[1]


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


def _example(item):
    encoded, image_format, height, width = encode_item(item)
    tf = _tf()
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes(encoded),
        "image/format": _bytes(image_format),
        "image/class/label": _int64(item.label),
        "image/class/text": _bytes(item.text),
        "image/height": _int64(height),
        "image/width": _int64(width),
        "image/colorspace": _bytes(b"RGB"),
        "image/channels": _int64(3),
        "image/filename": _bytes(item.name),
    }))


# ----------------------------------------------------------------------------- writing

class Progress(object):
    """Thread-safe counter printing 'images done / total, images/sec' every few seconds."""

    def __init__(self, split, total, stream=None, done=0):
        self.split, self.total = split, total
        self.stream = stream or sys.stdout
        self.done = self.already = done  # already: written by an earlier, interrupted run
        self.start = self.last_print = time.time()
        self.lock = threading.Lock()

    def advance(self):
        with self.lock:
            self.done += 1
            now = time.time()
            if self.done == self.total or now - self.last_print >= PROGRESS_EVERY_S:
                self.last_print = now
                rate = (self.done - self.already) / max(now - self.start, 1e-6)
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
                writer.write(_example(item).SerializeToString())
                progress.advance()
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _shard_plan(split, items, num_shards):
    """[(shard file name, its items)] of a split."""
    # No empty shards: a rank that reads only an empty shard would have nothing to train on.
    num_shards = min(num_shards, len(items))
    bounds = [len(items) * i // num_shards for i in range(num_shards + 1)]
    return [(layout.shard_filename(split, i, num_shards), items[bounds[i]:bounds[i + 1]])
            for i in range(num_shards)]


def _write_split(split, shards, output_directory, num_threads, done=frozenset()):
    """Writes the split's shards in parallel, but those named in ``done`` (already
    complete: a resumed conversion)."""
    _tf()  # import before the clock starts, so images/sec is the conversion's speed
    progress = Progress(split, sum(len(items) for _, items in shards),
                        done=sum(len(items) for name, items in shards if name in done))
    stop = threading.Event()
    with futures.ThreadPoolExecutor(max_workers=num_threads) as pool:
        jobs = [pool.submit(_write_shard, os.path.join(output_directory, name), items,
                            progress, stop)
                for name, items in shards if name not in done]
        try:
            for job in futures.as_completed(jobs):
                job.result()
        except BaseException:
            stop.set()  # the other shards stop at their next image
            raise


def _plan_fingerprint(plan, class_names):
    """What a conversion writes, as one hash: every shard's name and its images (path
    and label, in order). Equal fingerprints mean equal shards, images unchanged."""
    digest = hashlib.sha1(json.dumps([JPEG_QUALITY, class_names]).encode("utf-8"))
    for name, items in plan:
        digest.update(("\n%s\n" % name).encode("utf-8"))
        for item in items:
            digest.update(("%s\t%d\n" % (os.path.abspath(item.path), item.label))
                          .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _resumable_shards(output_directory, existing, fingerprint, plan):
    """The complete shards of an unfinished conversion of the same plan (a set of
    names), or None when the folder holds something else."""
    if layout.META_FILENAME in existing or layout.CONVERSION_MARKER not in existing:
        return None
    try:
        with open(os.path.join(output_directory, layout.CONVERSION_MARKER)) as handle:
            if json.load(handle).get("fingerprint") != fingerprint:
                return None
    except (IOError, OSError, ValueError, AttributeError):
        return None
    kept = set()
    for name, items in plan:
        path = os.path.join(output_directory, name)
        # Renamed into place only once complete; its record count confirms it.
        if name in existing and record_check.scan_shard(path) == (len(items), None):
            kept.add(name)
    return kept


def _prepare_output(output_directory, overwrite, fingerprint=None, plan=()):
    """Creates the folder; refuses (or with overwrite, clears) earlier conversion files.
    An unfinished conversion of the same plan (same images, labels, shards) is resumed:
    its complete shards stay and their names are returned; everything else goes."""
    ensure_writable_dir(output_directory, "output_directory")
    existing = sorted(n for n in os.listdir(output_directory) if layout.is_output_file(n))
    kept = set()
    if existing and not overwrite:
        kept = _resumable_shards(output_directory, existing, fingerprint, plan)
        if kept is None:
            what = ("an unfinished conversion of other images, labels or shard counts"
                    if layout.CONVERSION_MARKER in existing
                    and layout.META_FILENAME not in existing
                    else "a conversion (%s, %d files)" % (existing[0], len(existing)))
            raise UserError("--output_directory=%s already holds %s; pass --overwrite to "
                            "replace it or choose another folder"
                            % (output_directory, what))
        print("resuming the unfinished conversion in %s: %d of %d shards are complete and "
              "kept, the other shards are written now"
              % (output_directory, len(kept), len(plan)))
        sys.stdout.flush()
    # The metadata goes first, so an interrupted rewrite never looks complete.
    existing.sort(key=lambda n: n != layout.META_FILENAME)
    for name in existing:
        if name not in kept:
            os.remove(os.path.join(output_directory, name))
    return kept


def _complete_shards(output_directory):
    return [n for n in os.listdir(output_directory)
            if layout.is_output_file(n) and not n.startswith(layout.TEMP_PREFIX)
            and n not in (layout.META_FILENAME, layout.LABELS_FILENAME)]


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


def tree_contents(train_directory=None, validation_directory=None):
    """(class names, {split: image count}) that ``convert`` would write for these image
    trees, found by listing them only (pre-flight's view; nothing is read or written)."""
    trees = _scan_inputs(train_directory, validation_directory, None)
    return _class_names(trees, None), collections.OrderedDict(
        (split, sum(len(paths) for paths in tree.values())) for split, tree in trees.items())


def convert(train_directory=None, validation_directory=None, output_directory=None,
            train_shards=8, validation_shards=2, num_threads=2, overwrite=False,
            labels_file=None, imagenet_val_labels=None, shuffle_seed=12345):
    """Converts the given image trees; returns the metadata written to dataset_meta.json."""
    if not train_directory and not validation_directory:
        raise UserError("pass --train_directory and/or --validation_directory")
    _check_output(output_directory, train_shards, validation_shards, num_threads)
    trees = _scan_inputs(train_directory, validation_directory, imagenet_val_labels)
    class_names = _class_names(trees, labels_file)
    splits = collections.OrderedDict(
        (split, _shuffled_items(tree, class_names, shuffle_seed))
        for split, tree in trees.items())
    return _convert_splits(splits, class_names, output_directory, train_shards,
                           validation_shards, num_threads, overwrite,
                           {"image_format": "JPEG"})


def convert_cifar(cifar_directory, output_directory=None, cifar_labels="fine",
                  train_shards=8, validation_shards=2, num_threads=2, overwrite=False,
                  shuffle_seed=12345):
    """Converts an unpacked CIFAR-10 / CIFAR-100 archive (datasets.cifar) into PNG
    records; returns the metadata written to dataset_meta.json."""
    _check_output(output_directory, train_shards, validation_shards, num_threads)
    if cifar_labels not in cifar.LABEL_KINDS:
        raise UserError("--cifar_labels=%s: choose %s" % (cifar_labels,
                                                          " or ".join(cifar.LABEL_KINDS)))
    data = cifar.load(cifar_directory, cifar_labels, warn=_warn)
    splits = collections.OrderedDict()
    for split, part in data.splits.items():
        items = [Item("%s#%s-%d" % (data.folder, split, i), label, data.class_names[label],
                      part.images[i], part.names[i])
                 for i, label in enumerate(part.labels)]
        random.Random(shuffle_seed).shuffle(items)
        splits[split] = items
    # The batches' sizes and times stand for their content in the resume fingerprint.
    sources = [(path, os.path.getsize(path), os.path.getmtime(path))
               for part in data.splits.values() for path in part.sources]
    return _convert_splits(splits, data.class_names, output_directory, train_shards,
                           validation_shards, num_threads, overwrite,
                           {"image_format": "PNG",
                            "source": {"format": data.format.name, "folder": data.folder,
                                       "labels": cifar_labels}},
                           extra_fingerprint=sources)


def _warn(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _check_output(output_directory, train_shards, validation_shards, num_threads):
    if not output_directory:
        raise UserError("--output_directory is required")
    _check_counts(train_shards, validation_shards, num_threads)


def _convert_splits(splits, class_names, output_directory, train_shards, validation_shards,
                    num_threads, overwrite, meta_fields, extra_fingerprint=()):
    """Writes {split: shuffled items} as shards, then labels.txt and dataset_meta.json
    (with ``meta_fields``); resumes an interrupted conversion of the same plan."""
    requested = {"train": train_shards, "validation": validation_shards}
    plans = collections.OrderedDict(
        (split, _shard_plan(split, items, requested[split])) for split, items in splits.items())
    everything = [shard for shards in plans.values() for shard in shards]
    fingerprint = _plan_fingerprint(everything, [class_names, list(extra_fingerprint)])
    done = _prepare_output(output_directory, overwrite, fingerprint, everything)
    marker = os.path.join(output_directory, layout.CONVERSION_MARKER)
    layout.atomic_write_text(marker, json.dumps({"fingerprint": fingerprint}) + "\n")

    written = collections.OrderedDict()
    try:
        for split, shards in plans.items():
            _write_split(split, shards, output_directory, num_threads, done)
            written[split] = {"num_samples": sum(len(items) for _, items in shards),
                              "num_shards": len(shards)}
    except BaseException:
        if not _complete_shards(output_directory):
            os.remove(marker)  # nothing to resume: leave the folder as it was
        raise

    metadata = collections.OrderedDict([
        ("format", layout.META_FORMAT), ("num_classes", len(class_names)),
        ("labels_offset", 0), ("splits", written), ("class_names", class_names)])
    metadata.update(meta_fields)
    layout.write_labels_file(os.path.join(output_directory, layout.LABELS_FILENAME),
                             class_names)
    layout.atomic_write_text(os.path.join(output_directory, layout.META_FILENAME),
                             json.dumps(metadata, indent=2) + "\n")
    os.remove(marker)
    return metadata


# ----------------------------------------------------------------------------- CLI

def define_flags():
    """The converter's flags (python -m datasets.build_tfrecords)."""
    flags.DEFINE_string("train_directory", None, "Class-per-folder tree of training images.")
    flags.DEFINE_string("validation_directory", None,
                        "Class-per-folder tree of validation images (or ImageNet's flat "
                        "validation folder with --imagenet_val_labels).")
    flags.DEFINE_string("cifar_directory", None,
                        "An unpacked CIFAR-10 or CIFAR-100 archive (python or binary "
                        "version), instead of image trees: its training batches become "
                        "train, its test batch validation.")
    flags.DEFINE_enum("cifar_labels", "fine", cifar.LABEL_KINDS,
                      "CIFAR-100's labels: fine (100 classes) or coarse (20 superclasses).")
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
                         "Replace an earlier conversion in --output_directory. (An "
                         "interrupted one of the same images is resumed without it.)")
    flags.DEFINE_integer("shuffle_seed", 12345, "Seed of the shuffle before sharding.")


def main(argv):
    """Converts the image trees or CIFAR archive the flags name."""
    if len(argv) > 1:
        raise UserError("unexpected arguments %s; every option is a --flag" % " ".join(argv[1:]))
    f = flags.FLAGS
    shared = dict(output_directory=f.output_directory, train_shards=f.train_shards,
                  validation_shards=f.validation_shards, num_threads=f.num_threads,
                  overwrite=f.overwrite, shuffle_seed=f.shuffle_seed)
    if f.cifar_directory:
        if f.train_directory or f.validation_directory or f.labels_file:
            raise UserError("--cifar_directory takes the place of --train_directory, "
                            "--validation_directory and --labels_file; pass one or the other")
        metadata = convert_cifar(f.cifar_directory, cifar_labels=f.cifar_labels, **shared)
    else:
        metadata = convert(
            train_directory=f.train_directory, validation_directory=f.validation_directory,
            labels_file=f.labels_file, imagenet_val_labels=f.imagenet_val_labels, **shared)
    counts = ", ".join("%s %d images in %d shards" % (split, s["num_samples"], s["num_shards"])
                       for split, s in metadata["splits"].items())
    print("wrote %s (%d classes) to %s" % (counts, metadata["num_classes"], f.output_directory))


if __name__ == "__main__":
    define_flags()
    run_main(exit_on_user_error(main))
