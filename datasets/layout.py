"""File names of a converted dataset folder, shared by the converter and the descriptors.

  <split>-00000-of-00008 ...   TFRecord shards (TF-Slim naming)
  labels.txt                   "0:classname" per line (TF-Slim format)
  dataset_meta.json            written last: its presence marks a complete conversion
"""
import fnmatch
import os

from utils.files import write_text

SPLITS = ("train", "validation")
META_FILENAME = "dataset_meta.json"
LABELS_FILENAME = "labels.txt"
META_FORMAT = "slim-tfrecord"
# Shards are written under this prefix and renamed when complete; the prefix keeps
# unfinished shards out of the "<split>-*-of-*" glob.
TEMP_PREFIX = ".tmp-"
# Present from the start of a conversion until dataset_meta.json is written: what the
# conversion writes (a fingerprint of its plan), so that a rerun after an interruption
# keeps the shards already complete; and a sign to readers that the folder is unfinished.
CONVERSION_MARKER = TEMP_PREFIX + "conversion.json"


def unfinished_conversion(directory):
    """True when a conversion into ``directory`` started and has not finished."""
    return (os.path.isfile(os.path.join(directory, CONVERSION_MARKER))
            and not os.path.isfile(os.path.join(directory, META_FILENAME)))


def shard_filename(split, index, num_shards):
    """TF-Slim's shard name: <split>-00003-of-00016."""
    return "%s-%05d-of-%05d" % (split, index, num_shards)


def shard_glob(split):
    """The glob matching every shard of ``split``."""
    return "%s-*-of-*" % split


def is_output_file(name):
    """True for any file a conversion writes (finished or not)."""
    if name in (META_FILENAME, LABELS_FILENAME) or name.startswith(TEMP_PREFIX):
        return True
    return any(fnmatch.fnmatchcase(name, shard_glob(split)) for split in SPLITS)


def write_labels_file(path, class_names):
    """labels.txt, written whole."""
    atomic_write_text(path, "".join("%d:%s\n" % (index, name)
                                    for index, name in enumerate(class_names)))


def read_labels_file(path):
    """Reads "index:name" lines into a list indexed by label (gaps become None)."""
    by_index = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            index, sep, name = line.partition(":")
            if not sep or not index.strip().isdigit():
                raise ValueError("line %r is not 'index:name'" % line)
            by_index[int(index)] = name
    if not by_index:
        return []
    return [by_index.get(i) for i in range(max(by_index) + 1)]


def atomic_write_text(path, text):
    """Writes whole (utils.files.write_text) via a temporary name the shard globs skip."""
    write_text(path, text, os.path.join(os.path.dirname(path),
                                        TEMP_PREFIX + os.path.basename(path)))
