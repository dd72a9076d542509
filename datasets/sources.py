"""What --dataset_dir may be: a folder of TFRecord shards, or images as they come, an
image tree (train/ and validation/ of class folders, what datasets.build_tfrecords
reads) or an unpacked CIFAR archive (datasets/cifar.py). Images are converted once, by
the converter itself, into a cache of shards that later runs reuse, so every reader (the
training input, rank sharding, record checks, the evaluator, calibration) keeps one input
path: why a cache and not direct reads is measured in benchmarks/DATASET_SOURCES.json and
summed up in the README.

A cache is <cache root>/<folder name>-<key>: the key hashes the source's file list (each
image's relative path, size and modification time) and the conversion's settings, so an
edited tree converts again and an unchanged one never does. Concurrent runs (the ranks of
one job) take a lock: one converts, the others wait and reuse its result.
"""
import collections
import errno
import fcntl
import hashlib
import json
import os
import sys
import time

from datasets import build_tfrecords, cifar, layout
from utils.errors import UserError
from utils.files import ensure_writable_dir, path_size, user_cache_dir

RECORDS, IMAGE_TREE, CIFAR = "records", "an image tree", "a CIFAR archive"
TREE_SPLITS = (("train", ("train",)), ("validation", ("validation", "val")))
# Part of every key: a change to what a conversion writes makes new caches.
CONVERSION = {"jpeg_quality": build_tfrecords.JPEG_QUALITY, "train_shards": 16,
              "validation_shards": 4, "shuffle_seed": 12345, "version": 1}


def default_cache_root():
    """$XDG_CACHE_HOME/mobile-classifiers/datasets (~/.cache when unset)."""
    return user_cache_dir("datasets")


def _tree_splits(dataset_dir):
    """{split: folder} of an image tree's split folders that hold class folders."""
    found = {}
    for split, names in TREE_SPLITS:
        for name in names:
            folder = os.path.join(dataset_dir, name)
            if os.path.isdir(folder) and any(
                    os.path.isdir(os.path.join(folder, n)) and not n.startswith(".")
                    for n in os.listdir(folder)):
                found[split] = folder
                break
    return found


def source_kind(dataset_dir):
    """RECORDS, IMAGE_TREE or CIFAR: what ``dataset_dir`` holds (RECORDS when unsure:
    the descriptors then say what is missing)."""
    names = os.listdir(dataset_dir)
    if any(layout.is_output_file(n) for n in names):
        return RECORDS
    if cifar.find(dataset_dir):
        return CIFAR
    if _tree_splits(dataset_dir):
        return IMAGE_TREE
    return RECORDS


def _file_list(kind, dataset_dir):
    """[(relative path, size, mtime)] of every source file, sorted."""
    if kind == CIFAR:
        fmt, folder = cifar.find(dataset_dir)
        paths = [os.path.join(folder, n) for n in fmt.train + fmt.test + [fmt.meta]
                 if os.path.isfile(os.path.join(folder, n))]
    else:
        paths = []
        for folder in _tree_splits(dataset_dir).values():
            for root, subfolders, files in os.walk(folder):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                paths.extend(os.path.join(root, n) for n in sorted(files)
                             if build_tfrecords.is_image_name(n))
    listing = []
    for path in paths:
        stat = os.stat(path)
        listing.append((os.path.relpath(path, dataset_dir), stat.st_size,
                        int(stat.st_mtime * 1e6)))
    return listing


def cache_key(kind, dataset_dir):
    """The hex key of the conversion of ``dataset_dir`` as it is now."""
    listing = _file_list(kind, dataset_dir)
    if not listing:
        raise UserError("%s looks like %s but holds no images; check --dataset_dir"
                        % (dataset_dir, kind))
    digest = hashlib.sha1(json.dumps([kind, CONVERSION]).encode("utf-8"))
    for row in listing:
        digest.update(json.dumps(row).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16], len(listing)


def _convert(kind, dataset_dir, output):
    settings = dict(output_directory=output, train_shards=CONVERSION["train_shards"],
                    validation_shards=CONVERSION["validation_shards"],
                    shuffle_seed=CONVERSION["shuffle_seed"], num_threads=2)
    if kind == CIFAR:
        return build_tfrecords.convert_cifar(dataset_dir, **settings)
    splits = _tree_splits(dataset_dir)
    return build_tfrecords.convert(train_directory=splits.get("train"),
                                   validation_directory=splits.get("validation"),
                                   **settings)


class _Lock(object):
    """An exclusive flock on ``path`` (released when the process dies)."""

    def __init__(self, path, waiting_line, say):
        self.path, self.waiting_line, self.say = path, waiting_line, say

    def __enter__(self):
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self.say(self.waiting_line)
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *unused):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def print_line(line):
    """The default ``say``: a "dataset:" line on stdout."""
    sys.stdout.write("dataset: %s\n" % line)
    sys.stdout.flush()


# What an image tree or CIFAR archive would become, found without converting it:
# ``kind`` (IMAGE_TREE or CIFAR), the ``cache`` folder it would be converted into, its
# ``class_names`` and {split: image count} as the conversion would write them.
Preview = collections.namedtuple("Preview", "source kind cache class_names split_sizes")


def _cache_of(kind, dataset_dir, cache_root):
    """(cache folder, source file count) of ``dataset_dir`` as it is now."""
    key, count = cache_key(kind, dataset_dir)
    name = "%s-%s" % (os.path.basename(os.path.normpath(os.path.abspath(dataset_dir))), key)
    return os.path.join(cache_root or default_cache_root(), name), count


def preview(dataset_dir, cache_root=None):
    """The Preview of an image tree or CIFAR archive with no complete cache, else None
    (shards, or a cache ready to read): what pre-flight reports instead of converting.
    Reads the source (CIFAR's batches are loaded to count them), writes nothing."""
    kind = source_kind(dataset_dir)
    if kind == RECORDS:
        return None
    cache, _ = _cache_of(kind, dataset_dir, cache_root)
    if os.path.isfile(os.path.join(cache, layout.META_FILENAME)):
        return None
    if kind == CIFAR:
        data = cifar.load(dataset_dir)
        names = data.class_names
        sizes = collections.OrderedDict((split, len(part.labels))
                                        for split, part in data.splits.items())
    else:
        splits = _tree_splits(dataset_dir)
        names, sizes = build_tfrecords.tree_contents(splits.get("train"),
                                                     splits.get("validation"))
    return Preview(dataset_dir, kind, cache, names, sizes)


def records_dir(dataset_dir, cache_root=None, say=print_line):
    """The folder of TFRecord shards for ``dataset_dir``: itself when it holds shards,
    else its cache, converted first when there is none for its current files;
    ``say(line)`` hears what is read or converted."""
    kind = source_kind(dataset_dir)
    if kind == RECORDS:
        return dataset_dir
    started = time.time()
    cache, count = _cache_of(kind, dataset_dir, cache_root)
    root, name = os.path.split(cache)
    meta = os.path.join(cache, layout.META_FILENAME)
    if os.path.isfile(meta):
        say("%s is %s (%d files checked in %.1f s); reading its TFRecord cache %s"
            % (dataset_dir, kind, count, time.time() - started, cache))
        return cache
    ensure_writable_dir(root, "dataset_cache_dir")
    with _Lock(os.path.join(root, "." + name + ".lock"),
               "another process is converting %s into %s; waiting for it" % (dataset_dir,
                                                                              cache), say):
        if not os.path.isfile(meta):  # else the process we waited for made it
            say("%s is %s of %d files; converting it once into TFRecords at %s "
                "(later runs reuse them)" % (dataset_dir, kind, count, cache))
            _convert(kind, dataset_dir, cache)
            say("converted in %.0f s" % (time.time() - started))
            _mention_older_caches(root, name, say)
    return cache


def _mention_older_caches(root, name, say):
    """Names the caches of earlier states of the same folder: kept (a run may still
    read them), but they take room."""
    stem = name.rsplit("-", 1)[0] + "-"
    older = sorted(n for n in os.listdir(root)
                   if n.startswith(stem) and n != name and len(n) == len(name)
                   and os.path.isdir(os.path.join(root, n)))
    if older:
        size = sum(path_size(os.path.join(root, n)) for n in older) / 2.0 ** 20
        say("%d older cache(s) of this folder remain in %s (%s, %.0f MB); remove them "
            "when no run reads them" % (len(older), root, ", ".join(older), size))
