"""A second route to a checkpoint's validation scores, for tests to hold the project's
evaluator against. Nothing here uses dataloader/ or evaluation/:

- records: read with TensorFlow's record iterator and parsed as tf.train.Example
  protobufs in Python (not data_provider's parsing graph);
- pixels: decoded by Pillow; the evaluation preprocessing written out in numpy from its
  documented form (TF-Slim's inception preprocess_for_eval: tf.image.central_crop's
  window, bilinear resize without aligned corners or half-pixel centres, [0, 1] scaled
  to [-1, 1]), in float32 with each step rounded as TensorFlow's kernels round it: the
  inputs then match bit for bit, which matters because a barely trained network
  magnifies input differences of 1e-7 into logit differences of 1e-3;
- weights: a fresh graph from nets_factory restored by a plain tf.train.Saver, with the
  checkpoint name of every variable chosen here (its moving average or itself);
- scores: top-k and cross-entropy in float64 numpy.

JPEG is lossy and TensorFlow's decoder (the fast integer DCT, decoding inside the crop
window) differs from Pillow's by up to ~12 grey levels on these tiny images, so the
tests compare on PNG copies of the records (``png_copy``): both decoders then read the
same pixels exactly.
"""
import glob
import io
import os
import shutil

import numpy as np
from PIL import Image

from nets import nets_factory
from utils.tf_compat import tf

EMA = "/ExponentialMovingAverage"


def _shards(dataset_dir, split):
    """The split's shard files in name order (the converter's split-NNNNN-of-MMMMM)."""
    return sorted(glob.glob(os.path.join(dataset_dir, "%s-*-of-*" % split)))


def png_copy(source_dir, target_dir, split="validation"):
    """A copy of the dataset folder whose ``split`` records hold PNG images (Pillow's
    decoding of each JPEG, stored losslessly); every other field and file as it was.
    Returns target_dir."""
    shutil.copytree(source_dir, target_dir)
    shards = _shards(target_dir, split)
    assert shards, "no %s shards in %s" % (split, source_dir)
    for path in shards:
        examples = [tf.train.Example.FromString(r) for r in tf.io.tf_record_iterator(path)]
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples:
                feature = example.features.feature
                pixels = Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0]))
                encoded = io.BytesIO()
                pixels.convert("RGB").save(encoded, format="PNG")
                feature["image/encoded"].bytes_list.value[0] = encoded.getvalue()
                feature["image/format"].bytes_list.value[0] = b"PNG"
                writer.write(example.SerializeToString())
    return target_dir


def read_split(dataset_dir, split="validation"):
    """(uint8 [H, W, 3] images decoded by Pillow, int64 labels) of every record of
    ``split``, shard by shard in name order, each shard's records in file order."""
    images, labels = [], []
    for path in _shards(dataset_dir, split):
        for record in tf.io.tf_record_iterator(path):
            feature = tf.train.Example.FromString(record).features.feature
            encoded = feature["image/encoded"].bytes_list.value[0]
            images.append(np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB")))
            labels.append(feature["image/class/label"].int64_list.value[0])
    return images, np.array(labels, np.int64)


def _bilinear(image, size):
    """Bilinear resize of float32 [h, w, C] to [size, size, C] as TF 1.x's
    resize_bilinear (align_corners=False, half_pixel_centers=False) defines it: output
    pixel i reads input position i * (in / out), between its floor and ceiling (clamped
    to the last row or column), each step rounded to float32 as the kernel's:
    top = tl + (tr - tl) * dx, bottom = bl + (br - bl) * dx, top + (bottom - top) * dy."""
    def axis(length):
        position = np.arange(size, dtype=np.float32) * np.float32(float(length) / size)
        low = np.floor(position)
        high = np.minimum(np.ceil(position), length - 1).astype(int)
        return low.astype(int), high, (position - low).astype(np.float32)
    y0, y1, dy = axis(image.shape[0])
    x0, x1, dx = axis(image.shape[1])
    dy, dx = dy[:, None, None], dx[None, :, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * dx
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * dx
    return top + (bottom - top) * dy


def eval_image(pixels, size, central_fraction=0.875):
    """uint8 [H, W, 3] -> float32 [size, size, 3] in [-1, 1], in TF-Slim's order: the
    central crop (tf.image.central_crop's window: int((side - side * fraction) / 2) off
    each edge), x * (1 / 255), the bilinear resize, then (x - 0.5) * 2."""
    height, width = pixels.shape[:2]
    top = int((height - height * central_fraction) / 2)
    left = int((width - width * central_fraction) / 2)
    crop = pixels[top:height - top, left:width - left].astype(np.float32)
    resized = _bilinear(crop * np.float32(1.0 / 255), size)
    return (resized - np.float32(0.5)) * np.float32(2.0)


def restore_names(variables, use_ema):
    """{checkpoint name: variable}: every variable from its moving average when
    ``use_ema`` (training averages all model variables: weights and batch-norm
    statistics), else from its own name."""
    return dict((v.op.name + (EMA if use_ema else ""), v) for v in variables)


def logits(model_name, num_classes, checkpoint, images, use_ema, batch_size,
           quantize=None):
    """float64 logits of a fresh inference graph of ``model_name`` (nets_factory's
    ``quantize``: the simulated int8 one) restored from ``checkpoint`` by a plain
    Saver, on float [N, S, S, 3] images fed ``batch_size`` at a time (the evaluator's
    batches: other batch shapes change the float32 sums' order, moving logits by
    ~1e-4)."""
    with tf.Graph().as_default():
        placeholder = tf.placeholder(tf.float32, [None] + list(images.shape[1:]))
        output, _ = nets_factory.get_network_fn(model_name, num_classes,
                                                quantize=quantize)(placeholder)
        names = restore_names(tf.global_variables(), use_ema)
        stored = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
        absent = sorted(n for n in names if n not in stored)
        assert not absent, "%s lacks %s" % (checkpoint, absent[:3])
        with tf.Session() as sess:
            tf.train.Saver(names).restore(sess, checkpoint)
            return np.concatenate([
                sess.run(output, {placeholder: images[start:start + batch_size]})
                for start in range(0, len(images), batch_size)]).astype(np.float64)


def scores(logits_, labels, tolerance):
    """top1 / top5 / loss of float64 logits, each hit counted as the evaluator's
    in_top_k does (ties with the k-th largest logit are hits). A hit or miss that a
    change of ``tolerance`` in the logits could flip (the label's logit within
    ``tolerance`` of the k-th largest other one) is uncertain: top1_range / top5_range
    give the lowest and highest rate those allow (equal when none is uncertain)."""
    n, classes = logits_.shape
    own = logits_[np.arange(n), labels]
    others = np.where(np.arange(classes)[None, :] == labels[:, None], -np.inf, logits_)
    others = -np.sort(-others, axis=1)  # descending, the label's own logit last
    result = {"images": n}
    for k in (1, 5):
        if k >= classes:  # every class is within the top k
            result["top%d" % k] = 1.0
            result["top%d_range" % k] = (1.0, 1.0)
            continue
        gap = own - others[:, k - 1]
        sure_hits = np.sum(gap >= tolerance)
        unsure = np.sum(np.abs(gap) < tolerance)
        result["top%d" % k] = np.mean(gap >= 0)
        result["top%d_range" % k] = (float(sure_hits) / n, float(sure_hits + unsure) / n)
    peak = logits_.max(axis=1)
    log_sum = peak + np.log(np.exp(logits_ - peak[:, None]).sum(axis=1))
    result["loss"] = float(np.mean(log_sum - own))
    return result


def evaluator_batches(evaluator, padded=False):
    """The other side of the comparison: the (images, labels) batches ``evaluator``'s
    own input pipeline yields over its split, in order, each without the padding its
    weights mark (so the last one partial); ``padded``: (images, labels, weights) as
    the pipeline yields them, padding included."""
    from utils.tf_compat import tf
    with tf.Graph().as_default():
        batch = evaluator.build_inputs()
        with tf.Session() as sess:
            batches = []
            while True:
                try:
                    images, labels, weights = sess.run(batch)
                except tf.errors.OutOfRangeError:
                    return batches
                kept = weights > 0
                batches.append((images, labels, weights) if padded
                               else (images[kept], labels[kept]))
