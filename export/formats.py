"""Writes one checkpoint as SavedModel, frozen graph, TFLite (float or full-integer int8)
or ONNX. Every format is cut from export/inference_graph.py's graph, with its names.

Outputs are written under ``<output>.partial`` and renamed into place when complete, so
a crash never leaves something that looks like a finished model; an existing output is
replaced only when the caller allows it.
"""
import collections
import logging
import os

from devices import inference
from export import inference_graph as graph_lib
from export import metadata, onnx_qdq
from quantization import rewrite
from utils import native_output
from utils.checkpoints import checkpoint_global_step
from utils.errors import UserError, no_room_line
from utils.files import publish, remove_path
from utils.tf_compat import tf

FORMATS = ("saved_model", "frozen_pb", "tflite", "tflite_int8", "onnx")
# The SavedModel's signatures: float images, and encoded JPEG/PNG bytes.
IMAGES_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
MIN_ONNX_OPSET = 13

# How to write: calibration images (float32 [N, S, S, 3], tflite_int8), the ONNX opset,
# and whether the converters' own console output shows.
WriteOptions = collections.namedtuple("WriteOptions", "calibration opset verbose")


def check_output(output, overwrite):
    """UserError when ``output`` exists and may not be replaced, or cannot be written."""
    if os.path.lexists(output) and not overwrite:
        raise UserError("%s already exists; pass --overwrite to replace it or choose another "
                        "--output" % output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError("the folder of --output does not exist: %s" % folder)
    if not os.access(folder, os.W_OK):
        raise UserError("cannot write to %s; choose another --output" % folder)


# ----------------------------------------------------------------------------- writers

def _write_bytes(path, payload):
    with open(path, "wb") as handle:
        handle.write(payload)


def _saved_model(sess, model, path, spec, options):
    del options
    bytes_model = graph_lib.build_bytes_model(spec)
    outputs = {graph_lib.LOGITS: model.logits, graph_lib.PROBABILITIES: model.probabilities}
    bytes_outputs = {graph_lib.LOGITS: bytes_model.logits,
                     graph_lib.PROBABILITIES: bytes_model.probabilities}
    builder = tf.saved_model.Builder(path)
    builder.add_meta_graph_and_variables(
        sess, [tf.saved_model.tag_constants.SERVING], strip_default_attrs=True,
        signature_def_map={
            IMAGES_SIGNATURE: tf.saved_model.predict_signature_def(
                {graph_lib.INPUT: model.input}, outputs),
            BYTES_SIGNATURE: tf.saved_model.predict_signature_def(
                {graph_lib.IMAGE_BYTES: bytes_model.input}, bytes_outputs)})
    builder.save()


def _frozen_pb(sess, model, path, spec, options):
    del model, spec, options
    _write_bytes(path, graph_lib.freeze(sess).SerializeToString())


def _tflite_converter(sess, model):
    return tf.lite.TFLiteConverter.from_session(sess, [model.input],
                                                [model.logits, model.probabilities])


def _convert(converter, options):
    with native_output.silenced(enabled=not options.verbose):
        return converter.convert()


def _tflite(sess, model, path, spec, options):
    del spec
    _write_bytes(path, _convert(_tflite_converter(sess, model), options))


def _tflite_int8(sess, model, path, spec, options):
    """Full-integer int8: weights, activations, input and output. A checkpoint trained
    quantized brings its ranges in the graph's fake-quant ops (the converter takes
    them); any other is post-training quantized, its activation ranges calibrated on
    options.calibration (float32 [N, S, S, 3])."""
    converter = _tflite_converter(sess, model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.quantization is None:
        converter.representative_dataset = lambda: (
            [image[None]] for image in options.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    else:
        # The fake-quant ops carry every range. TF 2.15's v1 converter quantizes them as
        # int8 only when told the inference type (else legacy uint8), and trips over the
        # int8-only op set there (QuantizationMode checks QAT before it is set up).
        converter.inference_type = tf.int8
        low, high = rewrite.INPUT_RANGE  # the graph's input fake-quant range, as
        std = 255.0 / (high - low)       # real = (int8 - mean) / std
        converter.quantized_input_stats = {graph_lib.INPUT: (-128.0 - low * std, std)}
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    _write_bytes(path, _convert(converter, options))


def _tflite_input_quantization(path):
    """{"scale", "zero_point"}: int8 = round(float / scale) + zero_point."""
    interpreter = tf.lite.Interpreter(model_path=path)
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)}


def _onnx(sess, model, path, spec, options):
    del model, spec
    import onnx
    import tf2onnx
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    frozen = onnx_qdq.for_tf2onnx(graph_lib.freeze(sess))
    onnx_model, _ = tf2onnx.convert.from_graph_def(
        frozen, input_names=[graph_lib.INPUT + ":0"],
        output_names=[name + ":0" for name in graph_lib.OUTPUTS], opset=options.opset)
    _strip_tensor_suffixes(onnx_model.graph)
    onnx_qdq.finish(onnx_model.graph)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, path)


def _strip_tensor_suffixes(graph):
    """TensorFlow's "input:0" becomes "input", so every format shares the names."""
    renames = dict((name + ":0", name) for name in (graph_lib.INPUT,) + graph_lib.OUTPUTS)
    for value in list(graph.input) + list(graph.output):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]


_WRITERS = {"saved_model": _saved_model, "frozen_pb": _frozen_pb, "tflite": _tflite,
            "tflite_int8": _tflite_int8, "onnx": _onnx}


# ----------------------------------------------------------------------------- public

def export_checkpoint(spec, checkpoint, fmt, output, use_ema="auto", calibration=None,
                      opset=MIN_ONNX_OPSET, class_names=None, overwrite=False,
                      verbose=False):
    """Writes ``checkpoint`` as ``fmt`` at ``output`` plus its metadata; returns the
    metadata. ``calibration``: float32 images for tflite_int8. The graph is built and
    its weights restored on the host CPU (a plain session), whatever device trained;
    the metadata says so ("export_device")."""
    if fmt not in _WRITERS:
        raise UserError("unknown export format %r; known: %s" % (fmt, ", ".join(FORMATS)))
    if fmt == "tflite_int8" and spec.quantization is None and (
            calibration is None or len(calibration) == 0):
        raise UserError("tflite_int8 needs calibration images: pass "
                        "--calibration_dataset_dir (a folder of TFRecord shards)")
    if opset < MIN_ONNX_OPSET:
        raise UserError("--opset=%d is too old; use %d or newer" % (opset, MIN_ONNX_OPSET))
    check_output(output, overwrite)
    staged = output + ".partial"
    remove_path(staged)
    try:
        with tf.Graph().as_default():
            model = graph_lib.build_image_model(spec)
            with tf.Session() as sess:
                used_ema = graph_lib.restore(sess, checkpoint, use_ema)
                _WRITERS[fmt](sess, model, staged, spec,
                              WriteOptions(calibration, opset, verbose))
    except Exception as err:  # noqa: BLE001 (re-raised; only the staging goes)
        remove_path(staged)  # the output, if any, is the earlier one, whole
        line = no_room_line(err, staged)
        if line is None:
            raise
        raise UserError(line)
    meta = spec.as_dict()
    del meta["quantization"]
    if spec.quantization is not None:  # fake-quant ops with the checkpoint's ranges
        meta["simulated_int8"] = fmt in ("saved_model", "frozen_pb", "onnx")
        if fmt == "onnx":  # int8 in the file itself: onnx_qdq
            meta["onnx_quantization"] = (onnx_qdq.QDQ_PER_CHANNEL
                                         if spec.quantization.per_channel
                                         else onnx_qdq.QDQ_PER_TENSOR)
    meta.update({
        "format": fmt, "checkpoint": os.path.abspath(checkpoint),
        "global_step": checkpoint_global_step(checkpoint), "ema": used_ema,
        "input": graph_lib.INPUT, "outputs": list(graph_lib.OUTPUTS),
        "class_names": class_names, "export_device": inference.HOST})
    if fmt == "saved_model":
        meta["signatures"] = {IMAGES_SIGNATURE: graph_lib.INPUT,
                              BYTES_SIGNATURE: graph_lib.IMAGE_BYTES}
    if fmt == "tflite_int8":
        meta["num_calibration_images"] = 0 if spec.quantization else len(calibration)
        meta["ranges"] = "trained" if spec.quantization else "calibrated"
        meta["input_quantization"] = _tflite_input_quantization(staged)
    if os.path.isdir(staged):
        metadata.write_meta(staged, meta)
        publish(staged, output)
    else:
        publish(staged, output)
        metadata.write_meta(output, meta)
    return meta
