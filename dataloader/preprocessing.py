"""Inception-style image preprocessing (TF-Slim's), graph mode.

inception: for training, a random crop covering part of the image
(sample_distorted_bounding_box), a bilinear resize, an optional horizontal flip; for
evaluation, a central crop and a resize. cifar (the 32-px networks): the whole image,
padded and randomly cropped back for training. All return float32 in [-1, 1]. JPEG bytes are decoded only inside the crop window
(decode_and_crop_jpeg); other encodings (PNG) are decoded whole, then cropped.
"""
import collections

from dataloader import automl_preprocessing
from utils.errors import UserError
from utils.tf_compat import tf

PreprocessingConfig = collections.namedtuple(
    "PreprocessingConfig",
    "min_crop_area random_flip central_fraction min_object_covered aspect_ratio_range seed")
# seed: the op-level seed of the training augmentation's random ops (a seeded run's
# --seed), None for unseeded. It must be given to each op: the crop's sits in a branch
# of a tf.cond inside the dataset's map function, whose graph does not inherit the
# graph-level seed, so it would draw differently in every run.
DEFAULT_CONFIG = PreprocessingConfig(
    min_crop_area=0.05, random_flip=True, central_fraction=0.875, min_object_covered=0.1,
    aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0), seed=None)


def make_config(options=None):
    """A PreprocessingConfig from a dict of overrides (e.g. from flags); None = defaults."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(DEFAULT_CONFIG._fields))
    if unknown:
        raise UserError("unknown preprocessing option %r; known: %s"
                        % (unknown[0], ", ".join(DEFAULT_CONFIG._fields)))
    config = DEFAULT_CONFIG._replace(**options)
    for name in ("min_crop_area", "central_fraction"):
        if not 0.0 < getattr(config, name) <= 1.0:
            raise UserError("%s=%s must be in (0, 1]" % (name, getattr(config, name)))
    return config


# ----------------------------------------------------------------------------- windows

def _central_window(shape, central_fraction):
    """(begin, size) of the central crop, as tf.image.central_crop computes it."""
    def side(length):
        offset = tf.cast((tf.cast(length, tf.float32) * (1.0 - central_fraction)) / 2.0,
                         tf.int32)
        return offset, length - 2 * offset
    top, height = side(shape[0])
    left, width = side(shape[1])
    return tf.stack([top, left, 0]), tf.stack([height, width, -1])


def _op_seed(seed, index):
    """The ``index``-th augmentation op's seed of a run seeded ``seed`` (None: unseeded):
    distinct per op, so a crop and a flip do not draw the same numbers, and never 0
    (some ops read an op seed of 0 as none)."""
    return None if seed is None else seed * 16 + index + 1


def _random_window(shape, bbox, min_object_covered, area_range, aspect_ratio_range,
                   seed=None):
    """(begin, size) of a random crop overlapping bbox (the whole image if none)."""
    if bbox is None:
        bbox = tf.zeros([1, 0, 4], tf.float32)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.stack([shape[0], shape[1], 3]), bounding_boxes=bbox,
        min_object_covered=min_object_covered, aspect_ratio_range=aspect_ratio_range,
        area_range=area_range, max_attempts=100, use_image_if_no_bounding_boxes=True,
        seed=_op_seed(seed, 0))
    return begin, size


def _decode_window(image, window_fn):
    """Crops window_fn(shape) out of encoded bytes or a uint8 [H, W, C] image; returns
    uint8 [h, w, 3]."""
    if image.dtype != tf.string:
        begin, size = window_fn(tf.shape(image))
        return tf.slice(image, begin, size)

    def from_jpeg():
        begin, size = window_fn(tf.image.extract_jpeg_shape(image, output_type=tf.int32))
        crop = tf.stack([begin[0], begin[1], size[0], size[1]])
        return tf.image.decode_and_crop_jpeg(image, crop, channels=3)

    def from_other():
        # The "JPEG" in image/format is not always true (PNGs exist among slim records).
        decoded = tf.image.decode_png(image, channels=3)
        begin, size = window_fn(tf.shape(decoded))
        return tf.slice(decoded, begin, size)

    cropped = tf.cond(tf.io.is_jpeg(image), from_jpeg, from_other)
    cropped.set_shape([None, None, 3])
    return cropped


def _resize_and_scale(image, height, width):
    """uint8 [h, w, 3] -> float32 [height, width, 3] in [-1, 1]."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize_images(image, [height, width],
                                   method=tf.image.ResizeMethod.BILINEAR, align_corners=False)
    image.set_shape([height, width, 3])
    return (image - 0.5) * 2.0


# ----------------------------------------------------------------------------- public

def preprocess_for_train(image, height, width, bbox=None, min_object_covered=0.1,
                         area_range=(0.05, 1.0), aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
                         random_flip=True, seed=None):
    """Random crop + resize (+ flip) of encoded bytes or a uint8 image; bbox is float32
    [1, N, 4] (ymin, xmin, ymax, xmax) in [0, 1] or None; ``seed``: see DEFAULT_CONFIG."""
    def window_fn(shape):
        return _random_window(shape, bbox, min_object_covered, area_range, aspect_ratio_range,
                              seed)

    image = _resize_and_scale(_decode_window(image, window_fn), height, width)
    if random_flip:
        image = tf.image.random_flip_left_right(image, seed=_op_seed(seed, 1))
    return image


def preprocess_for_eval(image, height, width, central_fraction=0.875):
    """Central crop + resize of encoded bytes or a uint8 image."""
    def window_fn(shape):
        return _central_window(shape, central_fraction)

    return _resize_and_scale(_decode_window(image, window_fn), height, width)


def _inception(config):
    def preprocess(image, height, width, is_training, bbox=None):
        if is_training:
            return preprocess_for_train(
                image, height, width, bbox=bbox, min_object_covered=config.min_object_covered,
                area_range=(config.min_crop_area, 1.0),
                aspect_ratio_range=config.aspect_ratio_range, random_flip=config.random_flip,
                seed=config.seed)
        return preprocess_for_eval(image, height, width, config.central_fraction)
    return preprocess


def _whole_window(shape):
    return tf.zeros([3], tf.int32), tf.stack([shape[0], shape[1], -1])


def preprocess_small(image, height, width, is_training, random_flip=True, seed=None):
    """The CIFAR recipe's: the whole image (resized only when it is not height x width);
    for training, zero-padded by an eighth of its side (4 px at 32) on every side, a
    random height x width crop and a random flip. As kuangliu/pytorch-cifar and TF-Slim's
    cifarnet_preprocessing train; scaled to [-1, 1] like the others. ``seed``: see
    DEFAULT_CONFIG."""
    image = tf.image.convert_image_dtype(_decode_window(image, _whole_window), tf.float32)
    image = tf.image.resize_images(image, [height, width],
                                   method=tf.image.ResizeMethod.BILINEAR, align_corners=False)
    if is_training:
        pad_y, pad_x = height // 8, width // 8
        image = tf.pad(image, [[pad_y, pad_y], [pad_x, pad_x], [0, 0]])
        image = tf.image.random_crop(image, [height, width, 3], seed=_op_seed(seed, 0))
        if random_flip:
            image = tf.image.random_flip_left_right(image, seed=_op_seed(seed, 1))
    image.set_shape([height, width, 3])
    return (image - 0.5) * 2.0


def _small(config):
    def preprocess(image, height, width, is_training, bbox=None):
        del bbox  # the crop is uniform: CIFAR's objects fill the image
        return preprocess_small(image, height, width, is_training, config.random_flip,
                                config.seed)
    return preprocess


def _automl(legacy):
    """automl's EfficientNetV2 evaluation (dataloader/automl_preprocessing.py); training
    crops as inception-style, normalised the same way."""
    def factory(config):
        inception = _inception(config)

        def preprocess(image, height, width, is_training, bbox=None):
            if is_training:
                return automl_preprocessing.from_unit_range(
                    inception(image, height, width, True, bbox), legacy)
            return automl_preprocessing.automl_eval(image, height, width, legacy)
        return preprocess
    return factory


# The ImageNet networks train on TF-Slim's inception-style preprocessing, the 32-px
# (CIFAR) variants on pad-and-crop; automl's EfficientNetV2 evaluation is there to
# reproduce its checkpoints' published top-1.
_FACTORIES = {"cifar": _small, "inception": _inception, "mobilenet": _inception,
              "mobilenet_v1": _inception,
              "mobilenet_v2": _inception, "mobilenet_v3": _inception, "mnasnet": _inception,
              "efficientnet_v2": _inception, "automl": _automl(False),
              "automl_legacy": _automl(True)}
PREPROCESSING_NAMES = tuple(sorted(_FACTORIES))


def get_preprocessing(name="inception", options=None):
    """Returns fn(image, height, width, is_training, bbox=None) -> float32 [H, W, 3];
    options: dict overriding PreprocessingConfig fields."""
    name = name or "inception"
    if name not in _FACTORIES:
        raise UserError("unknown preprocessing %r; known: %s"
                        % (name, ", ".join(PREPROCESSING_NAMES)))
    return _FACTORIES[name](make_config(options))
