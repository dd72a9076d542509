"""google/automl's EfficientNetV2 evaluation preprocessing, to reproduce its published
top-1 with its checkpoints (--preprocessing_name=automl or automl_legacy).

automl (efficientnetv2/preprocessing.py, preprocess_legacy.py) evaluates in one of two
ways, by the network's config:

  automl         efficientnetv2-s/m/l/xl: below 320 px a central square crop of side
                 size / (size + 32) of the shorter side (offset (H - crop) // 2), none
                 at 320 px and above (the whole image, squeezed to a square); bilinear
                 resize with half-pixel centers (tf.image.resize); (x - 128) / 128.
  automl_legacy  efficientnetv2-b0..b3 (augname effnetv1_autoaug): the same crop at
                 every size with offset (H - crop + 1) // 2; bicubic resize
                 (resize_bicubic, no half-pixel centers); ImageNet's per-channel mean
                 and standard deviation (x - 255 * mean) / (255 * std).

Both ignore --central_fraction (their crop is fixed). Training with these names uses
our inception-style crop and flip (automl's RandAugment is not reproduced), normalised
as that style's evaluation is, so a fine-tune sees what its evaluation will.
"""
from utils.tf_compat import tf

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
NO_CROP_FROM = 320  # automl crops below this size only (preprocessing.py)


def _decoded(image):
    """uint8 [H, W, 3] of encoded bytes (JPEG, PNG) or of a decoded image."""
    if image.dtype != tf.string:
        return image
    decoded = tf.image.decode_png(image, channels=3)  # reads JPEG too (same interface)
    decoded.set_shape([None, None, 3])
    return decoded


def _central_square(image, size, legacy):
    """automl's crop: a square of size / (size + 32) of the shorter side."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.cast(size / float(size + 32) * tf.cast(tf.minimum(height, width), tf.float32),
                   tf.int32)
    rounding = 1 if legacy else 0  # the legacy code rounds the offset up
    top = (height - side + rounding) // 2
    left = (width - side + rounding) // 2
    return tf.image.crop_to_bounding_box(image, top, left, side, side)


def automl_eval(image, height, width, legacy=False):
    """float32 [height, width, 3] as automl's evaluation makes it (module docstring)."""
    image = _decoded(image)
    if legacy or height < NO_CROP_FROM:
        image = _central_square(image, height, legacy)
    batch = tf.cast(image, tf.float32)[None]
    if legacy:
        resized = tf.image.resize_bicubic(batch, [height, width])[0]
        resized = (resized - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)
    else:
        resized = tf.image.resize_bilinear(batch, [height, width],
                                           half_pixel_centers=True)[0]
        resized = (resized - 128.0) / 128.0
    resized.set_shape([height, width, 3])
    return resized


def from_unit_range(image, legacy):
    """An image in [-1, 1] (our training crops) normalised as the style's evaluation."""
    pixels = (image + 1.0) * 127.5
    if legacy:
        return (pixels - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)
    return (pixels - 128.0) / 128.0
