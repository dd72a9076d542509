"""Writes CIFAR batches byte for byte as the official archives hold them, for the
tests (tiny batches) and the benchmark data (benchmarks/cifar10_from_npm.py).

The python versions were pickled by Python 2's cPickle (protocol 2): keys and byte
strings are Python 2 ``str`` (BINSTRING opcodes), the pixels a numpy array rebuilt by
``numpy.core.multiarray._reconstruct``. Python 3's pickle writes bytes differently (via
``_codecs.encode``), so this pickler writes every str and bytes as Python 2 did. The
binary versions are plain records: label byte(s) then 3072 pixel bytes (R, G, B planes).
"""
import pickle
import struct


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch is a dict
    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_python2_str
    dispatch[bytes] = save_python2_str


def write_python2_pickle(path, value):
    with open(path, "wb") as handle:
        _Python2Pickler(handle, protocol=2).dump(value)


def planes(images):
    """uint8 [N, 32, 32, 3] -> [N, 3072], each row the R, G, B planes (CIFAR's order)."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_python_batch(path, images, labels, label_key="labels", extra=None, names=None):
    """One batch of the python version: CIFAR-10 (``labels``) or CIFAR-100 (pass
    ``label_key='fine_labels'`` and ``extra={'coarse_labels': [...]}``)."""
    import os
    batch = {"batch_label": "training batch", "data": planes(images),
             label_key: [int(v) for v in labels],
             "filenames": names or ["%s_%05d.png" % (os.path.basename(path), i)
                                    for i in range(len(labels))]}
    batch.update(extra or {})
    write_python2_pickle(path, batch)


def write_binary_batch(path, images, *label_columns):
    """One batch of the binary version: per image its label bytes (CIFAR-10: the label;
    CIFAR-100: coarse, then fine), then its 3072 pixel bytes."""
    import numpy as np
    labels = np.stack([np.asarray(c, np.uint8) for c in label_columns], axis=1)
    with open(path, "wb") as handle:
        handle.write(np.concatenate([labels, planes(images)], axis=1).tobytes())
