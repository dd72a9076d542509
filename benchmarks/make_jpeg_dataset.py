"""Writes an ImageNet-like JPEG tree and converts it with our converter.

The TFRecord benchmarks must pay what real data costs: JPEGs of ImageNet's typical size
(about 400-500 x 340-380 px, tens of KB to ~150 KB each) that the input pipeline decodes,
crops and resizes. Content is random but image-like (a few coloured blobs upsampled,
plus sensor-like noise), so JPEG sizes and decode work resemble photographs rather than
flat colours (too cheap) or white noise (too expensive). The tree goes through
``python -m datasets.build_tfrecords``, exactly as a user's images would; the result is
reused while its settings are unchanged (a stamp file records them).

  .venv/bin/python -m benchmarks.make_jpeg_dataset OUT_DIR [--train_images=500]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

STAMP = "benchmark_dataset.json"
SEED = 8
JPEG_QUALITY = 90


def _random_image(rng, width, height):
    """uint8 RGB array: upsampled random colour field plus per-pixel noise."""
    import numpy as np
    from PIL import Image
    small = rng.randint(0, 256, size=(rng.randint(6, 40), rng.randint(8, 50), 3))
    field = Image.fromarray(small.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(field).astype(np.float32)
    pixels += rng.normal(0.0, rng.uniform(14.0, 30.0), size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_tree(directory, num_images, num_classes, rng):
    """DIR/class_KK/img_NNNNN.jpg, images spread evenly over the classes."""
    from PIL import Image
    for index in range(num_images):
        folder = os.path.join(directory, "class_%02d" % (index % num_classes))
        if not os.path.isdir(folder):
            os.makedirs(folder)
        width, height = rng.randint(400, 501), rng.randint(340, 381)
        image = Image.fromarray(_random_image(rng, width, height))
        image.save(os.path.join(folder, "img_%05d.jpg" % index), format="JPEG",
                   quality=JPEG_QUALITY)


def _stamp(train_images, validation_images, num_classes):
    return {"train_images": train_images, "validation_images": validation_images,
            "num_classes": num_classes, "seed": SEED, "quality": JPEG_QUALITY, "version": 1}


def ensure_dataset(root, train_images, validation_images, num_classes, python=None,
                   repo_root=None, log=None):
    """Returns the TFRecord folder under ``root``, building it unless an identical one
    (same stamp) is already there."""
    import numpy as np
    records = os.path.join(root, "records")
    stamp_path = os.path.join(records, STAMP)
    want = _stamp(train_images, validation_images, num_classes)
    try:
        with open(stamp_path) as handle:
            if json.load(handle) == want:
                return records
    except (IOError, OSError, ValueError):
        pass
    images = os.path.join(root, "images")
    for path in (images, records):
        if os.path.isdir(path):
            shutil.rmtree(path)
    rng = np.random.RandomState(SEED)
    write_tree(os.path.join(images, "train"), train_images, num_classes, rng)
    write_tree(os.path.join(images, "validation"), validation_images, num_classes, rng)
    command = [python or sys.executable, "-m", "datasets.build_tfrecords",
               "--train_directory=" + os.path.join(images, "train"),
               "--validation_directory=" + os.path.join(images, "validation"),
               "--output_directory=" + records,
               "--train_shards=%d" % max(1, min(8, train_images // 64)),
               "--validation_shards=%d" % max(1, min(2, validation_images // 64))]
    output = subprocess.run(command, cwd=repo_root or os.getcwd(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    if log:
        log(output.stdout.strip().splitlines()[-1] if output.stdout.strip() else "")
    if output.returncode != 0:
        raise RuntimeError("datasets.build_tfrecords failed (%d):\n%s"
                           % (output.returncode, output.stdout[-3000:]))
    with open(stamp_path, "w") as handle:
        json.dump(want, handle)
    return records


def mean_jpeg_kib(images_dir):
    """Average file size of the written JPEGs (for the report)."""
    sizes = [os.path.getsize(os.path.join(d, f))
             for d, _, files in os.walk(images_dir) for f in files if f.endswith(".jpg")]
    return round(sum(sizes) / 1024.0 / max(1, len(sizes)), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train_images", type=int, default=500)
    parser.add_argument("--validation_images", type=int, default=100)
    parser.add_argument("--num_classes", type=int, default=10)
    args = parser.parse_args(argv)
    records = ensure_dataset(args.out_dir, args.train_images, args.validation_images,
                             args.num_classes, log=print)
    print("records: %s (mean JPEG %.1f KiB)"
          % (records, mean_jpeg_kib(os.path.join(args.out_dir, "images"))))


if __name__ == "__main__":
    main()
