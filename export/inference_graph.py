"""The inference graph every export format is cut from, with stable tensor names:

  input          float32 [batch, S, S, 3], RGB scaled to [-1, 1] (eval preprocessing)
  logits         float32 [batch, num_classes]
  probabilities  float32 [batch, num_classes], softmax of logits
  image_bytes    string [batch], encoded JPEG/PNG (SavedModel's "serving_bytes" only),
                 decoded, centrally cropped and resized inside the graph
"""
import collections

from dataloader import preprocessing
from evaluation.evaluator import restore_map, saver
from nets import nets_factory
from utils.tf_compat import tf

INPUT = "input"
LOGITS = "logits"
PROBABILITIES = "probabilities"
IMAGE_BYTES = "image_bytes"
OUTPUTS = (LOGITS, PROBABILITIES)

Endpoints = collections.namedtuple("Endpoints", "input logits probabilities")


def _head(spec, images, reuse=None, suffix=""):
    network_fn = nets_factory.get_network_fn(spec.model_name, spec.num_classes,
                                             is_training=False, quantize=spec.quantization)
    logits, _ = network_fn(images, reuse=reuse)
    logits = tf.identity(tf.cast(logits, tf.float32), name=LOGITS + suffix)
    return logits, tf.nn.softmax(logits, name=PROBABILITIES + suffix)


def build_image_model(spec):
    """Endpoints of the network ``spec`` (export.config.ModelSpec) over a float image
    placeholder named ``input``, in the default graph."""
    images = tf.placeholder(tf.float32, [None, spec.image_size, spec.image_size, 3],
                            name=INPUT)
    logits, probabilities = _head(spec, images)
    return Endpoints(images, logits, probabilities)


def build_bytes_model(spec):
    """Endpoints over encoded images (``image_bytes``), sharing build_image_model's
    variables; call it after build_image_model."""
    encoded = tf.placeholder(tf.string, [None], name=IMAGE_BYTES)
    preprocess = preprocessing.get_preprocessing(
        spec.preprocessing_name, {"central_fraction": spec.central_fraction})
    images = tf.map_fn(
        lambda one: preprocess(one, spec.image_size, spec.image_size, False),
        encoded, dtype=tf.float32, back_prop=False)
    logits, probabilities = _head(spec, images, reuse=True, suffix="_from_bytes")
    return Endpoints(encoded, logits, probabilities)


def restore(sess, checkpoint, use_ema="auto"):
    """Loads the checkpoint into the default graph's variables (moving averages when
    present, unless use_ema is "false"); returns whether moving averages were used."""
    mapping, used_ema = restore_map(tf.global_variables(), checkpoint, use_ema)
    saver(mapping).restore(sess, checkpoint)
    return used_ema


def freeze(sess, output_names=OUTPUTS):
    """The default graph with variables folded into constants, pruned to the outputs."""
    graph_def = sess.graph.as_graph_def()
    frozen = tf.graph_util.convert_variables_to_constants(sess, graph_def, list(output_names))
    return tf.graph_util.remove_training_nodes(frozen, protected_nodes=list(output_names))
