"""CIFAR-10 and CIFAR-100 as their archives unpack: which format a folder holds, found
from its files, and its images and labels (https://www.cs.toronto.edu/~kriz/cifar.html).

  cifar10-python   cifar-10-batches-py: data_batch_1..5, test_batch (pickled dicts: data
                   [N, 3072] uint8 as R, G, B planes of 32x32, labels), batches.meta
  cifar10-binary   cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin (records of
                   1 label byte + 3072 pixel bytes), batches.meta.txt
  cifar100-python  cifar-100-python: train, test (fine_labels, coarse_labels), meta
  cifar100-binary  cifar-100-binary: train.bin, test.bin (records of a coarse and a fine
                   label byte + 3072 pixel bytes), fine/coarse_label_names.txt

Training images come from the training batches, validation images from the test batch.
The pickles were written by Python 2: they are read with a loader that accepts only the
numpy array they hold, so a foreign pickle cannot run code.
"""
import collections
import io
import os
import pickle

from utils.errors import UserError

IMAGE_SIDE = 32
PIXELS = IMAGE_SIDE * IMAGE_SIDE * 3
LABEL_KINDS = ("fine", "coarse")

Format = collections.namedtuple(
    "Format", "name folder train test meta label_bytes num_classes archive")
FORMATS = (
    Format("cifar10-python", "cifar-10-batches-py",
           ["data_batch_%d" % i for i in range(1, 6)], ["test_batch"], "batches.meta",
           0, {"fine": 10}, "cifar-10-python.tar.gz"),
    Format("cifar10-binary", "cifar-10-batches-bin",
           ["data_batch_%d.bin" % i for i in range(1, 6)], ["test_batch.bin"],
           "batches.meta.txt", 1, {"fine": 10}, "cifar-10-binary.tar.gz"),
    Format("cifar100-python", "cifar-100-python", ["train"], ["test"], "meta", 0,
           {"fine": 100, "coarse": 20}, "cifar-100-python.tar.gz"),
    Format("cifar100-binary", "cifar-100-binary", ["train.bin"], ["test.bin"],
           "fine_label_names.txt", 2, {"fine": 100, "coarse": 20}, "cifar-100-binary.tar.gz"),
)

# images: uint8 [N, 32, 32, 3]; labels: int list; names: one file name per image.
Split = collections.namedtuple("Split", "images labels names sources")
Cifar = collections.namedtuple("Cifar", "format folder class_names splits missing")


def _files(folder):
    # Files only: an image tree's train/ folder is not CIFAR-100's train batch.
    return set(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))


def _holds(folder, fmt):
    return bool(_files(folder) & set(fmt.train + fmt.test + [fmt.meta]))


def find(directory):
    """(Format, folder) when ``directory`` is, or directly holds, an unpacked CIFAR
    archive; else None."""
    if not os.path.isdir(directory):
        return None
    for fmt in FORMATS:
        if _holds(directory, fmt):
            return fmt, directory
    for fmt in FORMATS:
        inner = os.path.join(directory, fmt.folder)
        if os.path.isdir(inner) and _holds(inner, fmt):
            return fmt, inner
    return None


# ----------------------------------------------------------------------------- python

class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds only what a CIFAR batch holds (dicts, lists, strings, numbers and a
    numpy array); any other global is refused, so a foreign pickle runs nothing."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
               ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError("it names %s.%s, which a CIFAR batch does not hold"
                                         % (module, name))
        return super(_ArrayUnpickler, self).find_class(module, name)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _load_pickle(path, fmt):
    try:
        with open(path, "rb") as handle:
            loaded = _ArrayUnpickler(handle, encoding="bytes").load()
    except (IOError, OSError) as err:
        raise UserError("cannot read %s (%s)" % (path, err.strerror or err))
    except Exception as err:  # noqa: BLE001 (pickle raises many types for bad input)
        raise UserError("%s is not a %s file (%s); unpack %s again"
                        % (path, fmt.name, str(err) or type(err).__name__, fmt.archive))
    if not isinstance(loaded, dict):
        raise UserError("%s is not a %s file (it holds a %s, not a dict); unpack %s again"
                        % (path, fmt.name, type(loaded).__name__, fmt.archive))
    return dict((_text(key), value) for key, value in loaded.items())


def _python_batch(path, fmt, label_kind):
    import numpy as np
    batch = _load_pickle(path, fmt)
    key = "labels" if fmt.name == "cifar10-python" else label_kind + "_labels"
    data, labels = batch.get("data"), batch.get(key)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != PIXELS or labels is None or len(labels) != len(data)):
        raise UserError("%s is not a %s batch: it needs 'data' (uint8 [N, %d]) and N "
                        "'%s'; unpack %s again" % (path, fmt.name, PIXELS, key, fmt.archive))
    names = [_text(n) for n in batch.get("filenames", [])]
    if len(names) != len(labels):
        names = None
    return data, [int(label) for label in labels], names


def _python_class_names(path, fmt, label_kind):
    meta = _load_pickle(path, fmt)
    key = "label_names" if fmt.name == "cifar10-python" else label_kind + "_label_names"
    if key not in meta:
        raise UserError("%s has no '%s'; unpack %s again" % (path, key, fmt.archive))
    return [_text(name) for name in meta[key]]


# ----------------------------------------------------------------------------- binary

def _binary_batch(path, fmt, label_kind):
    import numpy as np
    record = fmt.label_bytes + PIXELS
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except (IOError, OSError) as err:
        raise UserError("cannot read %s (%s)" % (path, err.strerror or err))
    if not raw or len(raw) % record:
        raise UserError("%s is truncated or not a %s batch: %d bytes is not a whole number "
                        "of %d-byte records; unpack %s again"
                        % (path, fmt.name, len(raw), record, fmt.archive))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    # CIFAR-100 records start with the coarse label, then the fine one.
    column = fmt.label_bytes - 1 if label_kind == "fine" else 0
    return rows[:, fmt.label_bytes:], [int(v) for v in rows[:, column]], None


def _binary_class_names(folder, fmt, label_kind):
    name = fmt.meta if label_kind == "fine" else "coarse_label_names.txt"
    path = os.path.join(folder, name)
    try:
        with io.open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except (IOError, OSError) as err:
        raise UserError("cannot read %s (%s); unpack %s again"
                        % (path, err.strerror or err, fmt.archive))


# ----------------------------------------------------------------------------- loading

def _class_names(folder, fmt, label_kind):
    path = os.path.join(folder, fmt.meta)
    if not os.path.isfile(path):
        raise UserError("%s is missing from %s: it holds the class names; unpack %s again"
                        % (fmt.meta, folder, fmt.archive))
    if fmt.label_bytes:
        names = _binary_class_names(folder, fmt, label_kind)
    else:
        names = _python_class_names(path, fmt, label_kind)
    if len(names) != fmt.num_classes[label_kind]:
        raise UserError("%s lists %d class names, %s has %d; unpack %s again"
                        % (path, len(names), fmt.name, fmt.num_classes[label_kind],
                           fmt.archive))
    return names


def _read_split(folder, fmt, files, label_kind):
    import numpy as np
    read = _binary_batch if fmt.label_bytes else _python_batch
    datas, labels, names = [], [], []
    for name in files:
        path = os.path.join(folder, name)
        data, batch_labels, batch_names = read(path, fmt, label_kind)
        bad = [v for v in batch_labels if not 0 <= v < fmt.num_classes[label_kind]]
        if bad:
            raise UserError("%s holds label %d, outside 0..%d of %s; unpack %s again"
                            % (path, bad[0], fmt.num_classes[label_kind] - 1, fmt.name,
                               fmt.archive))
        datas.append(data)
        labels.extend(batch_labels)
        stem = os.path.splitext(name)[0]
        names.extend(batch_names or ["%s_%05d.png" % (stem, i) for i in range(len(data))])
    planes = np.concatenate(datas).reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE)
    images = np.ascontiguousarray(planes.transpose(0, 2, 3, 1))  # to height, width, RGB
    return Split(images, labels, names, [os.path.join(folder, n) for n in files])


def load(directory, label_kind="fine", warn=None):
    """The Cifar in ``directory`` (see find); ``warn(line)`` hears of batches missing
    from a full copy. UserError when no batch is readable or a file is damaged."""
    found = find(directory)
    if found is None:
        raise UserError("%s holds no CIFAR batches (%s); pass the folder the archive "
                        "unpacked to" % (directory, ", ".join(f.folder for f in FORMATS)))
    fmt, folder = found
    if label_kind not in fmt.num_classes:
        raise UserError("--cifar_labels=%s: %s has only fine labels"
                        % (label_kind, fmt.name))
    present = _files(folder)
    missing = [n for n in fmt.train + fmt.test if n not in present]
    splits = collections.OrderedDict()
    for split, files in (("train", fmt.train), ("validation", fmt.test)):
        files = [n for n in files if n in present]
        if files:
            splits[split] = _read_split(folder, fmt, files, label_kind)
    if not splits:
        raise UserError("%s has %s's %s but none of its batches (%s); unpack %s again"
                        % (folder, fmt.name, fmt.meta, ", ".join(fmt.train + fmt.test),
                           fmt.archive))
    if missing and warn:
        warn("warning: %s is missing %s of a full %s copy; converting the batches present"
             % (folder, ", ".join(missing), fmt.name))
    return Cifar(fmt, folder, _class_names(folder, fmt, label_kind), splits, missing)
