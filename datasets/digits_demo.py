"""Writes scikit-learn's handwritten digits as a class-per-folder JPEG image tree.

The demo's data: 1,797 real 8x8 scans in 10 classes, shipped inside scikit-learn, so
nothing is downloaded. Each scan is upscaled to RGB JPEG and split 80/20 into
train/ and validation/ with a fixed seed.

  python -m datasets.digits_demo --output_dir=/tmp/digits_images [--image_size=32]
"""
import os

from absl import app, flags

from utils.errors import UserError, exit_on_user_error


def write_digits_tree(output_dir, image_size=32, validation_fraction=0.2, seed=0):
    """Writes output_dir/{train,validation}/<digit>/<index>.jpg; returns the counts."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(seed).permutation(len(digits.target))
    num_validation = int(round(len(order) * validation_fraction))
    splits = {"validation": order[:num_validation], "train": order[num_validation:]}
    counts = {}
    for split, indices in splits.items():
        for index in indices:
            folder = os.path.join(output_dir, split, str(digits.target[index]))
            if not os.path.isdir(folder):
                os.makedirs(folder)
            # Scans hold 0..16 ink levels; draw dark ink on white paper, as a photo.
            gray = (255 - digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
            image = Image.fromarray(gray, mode="L").resize((image_size, image_size),
                                                           Image.BILINEAR)
            image.convert("RGB").save(os.path.join(folder, "%04d.jpg" % index), quality=95)
        counts[split] = len(indices)
    return counts


def main(argv):
    """Writes scikit-learn's digits as an image tree (run_demo.sh's dataset)."""
    del argv
    f = flags.FLAGS
    if f.image_size < 8:
        raise UserError("--image_size=%d must be at least 8" % f.image_size)
    if os.path.isdir(f.output_dir) and os.listdir(f.output_dir):
        raise UserError("%s is not empty; pass an empty or new --output_dir" % f.output_dir)
    counts = write_digits_tree(f.output_dir, f.image_size)
    print("wrote %d train and %d validation digit images under %s"
          % (counts["train"], counts["validation"], f.output_dir))


if __name__ == "__main__":
    flags.DEFINE_string("output_dir", None, "Folder for train/ and validation/ trees.")
    flags.DEFINE_integer("image_size", 32, "Side of the upscaled images in pixels.")
    flags.mark_flag_as_required("output_dir")
    app.run(exit_on_user_error(main))
