"""Dataset descriptors: what a folder of TFRecord shards holds (classes, split sizes,
shard files). Nothing here builds a graph.

  imagenet  TF-Slim's ImageNet records: 1001 classes (0 = background, labels 1..1000)
  cifar10   TF-Slim's CIFAR-10 records (download_and_convert_cifar10.py):
            cifar10_train.tfrecord and cifar10_test.tfrecord (our validation split)
  folder    records written by datasets.build_tfrecords (sizes from dataset_meta.json)
  auto      folder when dataset_meta.json is present, cifar10 when TF-Slim's CIFAR-10
            files are, else imagenet

--dataset_dir may also be an image tree or an unpacked CIFAR archive: with auto or
folder, datasets/sources.py converts it once into a cache of shards read from then on.
"""
import glob
import json
import os

from datasets import layout, sources
from utils.errors import UserError

IMAGENET_NUM_CLASSES = 1001
IMAGENET_SPLIT_SIZES = {"train": 1281167, "validation": 50000}
DATASET_NAMES = ("auto", "imagenet", "cifar10", "folder")
# TF-Slim's CIFAR-10 files, one per split.
SLIM_CIFAR10_FILES = {"train": "cifar10_train.tfrecord", "validation": "cifar10_test.tfrecord"}
SLIM_CIFAR10_SIZES = {"train": 50000, "validation": 10000}


class DatasetSpec(object):
    """A dataset folder: its class count as stored in the records, class names (or
    None), and per split the sample count and shard files."""

    def __init__(self, name, dataset_dir, num_classes, split_sizes, class_names=None,
                 patterns=None):
        self.name = name
        self._patterns = patterns or {}  # split -> file glob, default the shards'

        self.dataset_dir = dataset_dir
        self.num_classes = num_classes
        self.class_names = class_names
        self._split_sizes = dict(split_sizes)
        self.splits = tuple(s for s in layout.SPLITS if s in self._split_sizes)

    def _check_split(self, split):
        if split not in self._split_sizes:
            raise UserError("split %r is not in the %s dataset at %s; it has: %s"
                            % (split, self.name, self.dataset_dir, ", ".join(self.splits)))

    def num_samples(self, split):
        self._check_split(split)
        return self._split_sizes[split]

    def file_pattern(self, split):
        self._check_split(split)
        return os.path.join(self.dataset_dir,
                            self._patterns.get(split) or layout.shard_glob(split))

    def list_files(self, split):
        pattern = self.file_pattern(split)
        files = sorted(glob.glob(pattern))
        if not files:
            raise UserError("no TFRecord shards matching %s in %s; pass a folder of "
                            "shards, an image tree (train/ and validation/ of class "
                            "folders) or an unpacked CIFAR archive as --dataset_dir"
                            % (os.path.basename(pattern), self.dataset_dir))
        return files

    def __repr__(self):
        return "DatasetSpec(%s, %s, num_classes=%d, splits=%s)" % (
            self.name, self.dataset_dir, self.num_classes, self._split_sizes)


def _slim_class_names(dataset_dir):
    """TF-Slim's labels.txt of the folder, or None."""
    labels_path = os.path.join(dataset_dir, layout.LABELS_FILENAME)
    if not os.path.isfile(labels_path):
        return None
    try:
        return layout.read_labels_file(labels_path)
    except ValueError as err:
        raise UserError("%s: %s; fix it or remove it" % (labels_path, err))


def _imagenet(dataset_dir):
    return DatasetSpec("imagenet", dataset_dir, IMAGENET_NUM_CLASSES, IMAGENET_SPLIT_SIZES,
                       _slim_class_names(dataset_dir))


def _cifar10(dataset_dir):
    # TF-Slim writes whole splits; a folder holding only one has only that split.
    sizes = dict((split, size) for split, size in SLIM_CIFAR10_SIZES.items()
                 if os.path.isfile(os.path.join(dataset_dir, SLIM_CIFAR10_FILES[split])))
    return DatasetSpec("cifar10", dataset_dir, 10, sizes or SLIM_CIFAR10_SIZES,
                       _slim_class_names(dataset_dir), patterns=SLIM_CIFAR10_FILES)


def _read_meta(path):
    try:
        with open(path) as f:
            meta = json.load(f)
        sizes = {split: int(info["num_samples"]) for split, info in meta["splits"].items()}
        num_classes = int(meta["num_classes"])
        class_names = meta.get("class_names")
    except (IOError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError("%s is unreadable (%s: %s); convert the images again with python -m "
                        "datasets.build_tfrecords --overwrite" % (path, type(err).__name__, err))
    if meta.get("format") != layout.META_FORMAT:
        raise UserError("%s has format %r, expected %r" % (path, meta.get("format"),
                                                           layout.META_FORMAT))
    unknown = sorted(set(sizes) - set(layout.SPLITS))
    if unknown:
        raise UserError("%s names split %r; known splits: %s"
                        % (path, unknown[0], ", ".join(layout.SPLITS)))
    return num_classes, sizes, class_names


def _folder(dataset_dir):
    path = os.path.join(dataset_dir, layout.META_FILENAME)
    if not os.path.isfile(path):
        raise UserError("%s not found; --dataset_name=folder needs a folder written by "
                        "python -m datasets.build_tfrecords" % path)
    num_classes, sizes, class_names = _read_meta(path)
    return DatasetSpec("folder", dataset_dir, num_classes, sizes, class_names)


_BUILDERS = {"imagenet": _imagenet, "cifar10": _cifar10, "folder": _folder}


class UnconvertedDataset(DatasetSpec):
    """An image tree or CIFAR archive not yet converted (sources.Preview): its classes and
    split sizes as the conversion would write them, but no shards to read."""

    def __init__(self, preview):
        DatasetSpec.__init__(self, "folder", preview.source, len(preview.class_names),
                             preview.split_sizes, preview.class_names)
        self.preview = preview

    def list_files(self, split):
        self._check_split(split)
        raise UserError("%s is %s not converted yet (into %s); run without --preflight / "
                        "--restore_dry_run to convert it" % (
                            self.dataset_dir, self.preview.kind, self.preview.cache))

    def describe_conversion(self):
        """The line saying what a run would convert."""
        p = self.preview
        return ("%s is %s of %d classes (%s); a run converts it once into %s "
                "(not converted: nothing is written now)" % (
                    p.source, p.kind, len(p.class_names),
                    ", ".join("%s %d images" % item for item in p.split_sizes.items()),
                    p.cache))


def get_dataset(name, dataset_dir, cache_dir=None, convert=True, say=sources.print_line):
    """Returns the DatasetSpec of dataset_dir; name is one of DATASET_NAMES. An image
    tree or a CIFAR archive is read from its TFRecord cache (datasets/sources.py, under
    ``cache_dir`` when given), converted first when needed (``say(line)`` hears of it);
    with ``convert=False`` an UnconvertedDataset describes it instead and nothing is
    written."""
    if name not in DATASET_NAMES:
        raise UserError("unknown dataset name %r; known: %s" % (name, ", ".join(DATASET_NAMES)))
    if not dataset_dir or not os.path.isdir(dataset_dir):
        raise UserError("dataset dir %s %s; pass --dataset_dir=<folder of TFRecord shards>"
                        % (dataset_dir, "is a file, not a folder"
                           if dataset_dir and os.path.exists(dataset_dir) else "does not exist"))
    if name in ("auto", "folder") and not convert:
        preview = sources.preview(dataset_dir, cache_dir)
        if preview is not None:
            return UnconvertedDataset(preview)
    if name in ("auto", "folder"):
        dataset_dir = sources.records_dir(dataset_dir, cache_dir, say)
    if layout.unfinished_conversion(dataset_dir):
        raise UserError("%s holds a conversion that did not finish (%s, no %s); run the same "
                        "python -m datasets.build_tfrecords command again to finish it"
                        % (dataset_dir, layout.CONVERSION_MARKER, layout.META_FILENAME))
    if name == "auto":
        if os.path.isfile(os.path.join(dataset_dir, layout.META_FILENAME)):
            name = "folder"
        elif any(os.path.isfile(os.path.join(dataset_dir, n))
                 for n in SLIM_CIFAR10_FILES.values()):
            name = "cifar10"
        else:
            name = "imagenet"
    return _BUILDERS[name](dataset_dir)
