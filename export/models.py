"""Loads any model this project writes, for prediction and evaluation:

  checkpoint     a training directory or checkpoint prefix (rebuilt from nets/)
  saved_model    a SavedModel directory (its serving_default signature)
  frozen_pb      a frozen GraphDef (.pb)
  tflite         a TFLite flatbuffer (.tflite), float or full-integer int8
  onnx           an ONNX model (.onnx), run with onnxruntime

Each gives ``logits(images)`` for float32 [B, S, S, 3] images in [-1, 1] and knows its
input size, class count and (when known) class names.
"""
import os

import numpy as np

from export import checkpoint_spec, metadata
from export import formats, onnx_qdq
from export import inference_graph as graph_lib
from nets import checkpoint_names
from utils import native_output
from utils.checkpoints import only_checkpoint, resolve_checkpoint
from utils.errors import UserError
from utils.tf_compat import tf

KINDS = ("checkpoint", "saved_model", "frozen_pb", "tflite", "onnx")
_SUFFIXES = {".pb": "frozen_pb", ".tflite": "tflite", ".onnx": "onnx"}


def detect_kind(path):
    """Which of KINDS ``path`` is; UserError when it is none of them."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        if tf.train.latest_checkpoint(path) is not None or only_checkpoint(path):
            return "checkpoint"
        raise UserError("%s holds neither a SavedModel (saved_model.pb) nor checkpoints"
                        % path)
    if tf.io.gfile.exists(path + ".index"):
        return "checkpoint"
    if not os.path.exists(path):
        raise UserError("no such model file or folder: %s" % path)
    kind = _SUFFIXES.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise UserError("cannot tell what model %s is: pass a checkpoint directory or "
                        "prefix, a SavedModel directory, or a .pb, .tflite or .onnx file"
                        % path)
    return kind


class LoadedModel(object):
    """A classifier ready to run; subclasses set ``_run``."""

    def __init__(self, kind, path, image_size, num_classes, meta):
        self.kind = kind
        self.path = path
        self.image_size = image_size
        self.num_classes = num_classes
        self.meta = meta
        self.labels_offset = meta.get("labels_offset") or 0
        self.class_names = meta.get("class_names")
        self.central_fraction = meta.get("central_fraction") or 0.875
        self.preprocessing_name = meta.get("preprocessing_name") or "inception"

    def logits(self, images):
        """float32 [B, num_classes] for float32 images [B, S, S, 3] in [-1, 1]."""
        images = np.asarray(images, np.float32)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise UserError("%s takes images of shape [batch, %d, %d, 3], got %s"
                            % (self.path, self.image_size, self.image_size,
                               list(images.shape)))
        return np.asarray(self._run(images), np.float32)

    def close(self):
        pass


class _SessionModel(LoadedModel):
    """Checkpoints, SavedModels and frozen graphs: a TF graph fed through a session."""

    def __init__(self, kind, path, graph, sess, input_tensor, logits_tensor, meta):
        shape = input_tensor.shape.as_list()
        super(_SessionModel, self).__init__(
            kind, path, shape[1] or meta.get("image_size"),
            int(logits_tensor.shape[-1]), meta)
        self._graph, self._sess = graph, sess
        self._input, self._logits = input_tensor, logits_tensor

    def _run(self, images):
        return self._sess.run(self._logits, {self._input: images})

    def close(self):
        self._sess.close()


def _load_checkpoint(path, overrides):
    checkpoint = resolve_checkpoint(path, "model")
    options = dict(overrides)
    use_ema = options.pop("use_ema", "auto")
    spec, names = checkpoint_spec.resolve(checkpoint, **options)
    graph = tf.Graph()
    with graph.as_default():
        model = graph_lib.build_image_model(spec)
        sess = tf.Session(graph=graph)
        used_ema = graph_lib.restore(sess, checkpoint, use_ema)
    meta = dict(spec.as_dict(), class_names=names, checkpoint=checkpoint, ema=used_ema,
                recognised=checkpoint_names.describe(checkpoint_names.read(checkpoint),
                                                     use_ema))
    return _SessionModel("checkpoint", path, graph, sess, model.input, model.logits, meta)


def _tensor(graph, name, path):
    try:
        return graph.get_tensor_by_name(name)
    except KeyError:
        raise UserError("%s has no tensor %s; export it with export_model.py" % (path, name))


def _load_saved_model(path, meta):
    graph = tf.Graph()
    sess = tf.Session(graph=graph)
    try:
        with graph.as_default():
            loaded = tf.saved_model.loader.load(
                sess, [tf.saved_model.tag_constants.SERVING], path)
    except Exception as err:  # corrupt files surface as many different TF errors
        raise UserError("cannot load the SavedModel %s (%s)" % (path, _first_line(err)))
    signature = loaded.signature_def.get(formats.IMAGES_SIGNATURE)
    if signature is None or graph_lib.INPUT not in signature.inputs:
        raise UserError("the SavedModel %s has no %s signature taking '%s'; export it with "
                        "export_model.py" % (path, formats.IMAGES_SIGNATURE, graph_lib.INPUT))
    return _SessionModel(
        "saved_model", path, graph, sess,
        _tensor(graph, signature.inputs[graph_lib.INPUT].name, path),
        _tensor(graph, signature.outputs[graph_lib.LOGITS].name, path), meta)


def _load_frozen_pb(path, meta):
    graph_def = tf.GraphDef()
    try:
        with open(path, "rb") as handle:
            graph_def.ParseFromString(handle.read())
    except Exception as err:  # protobuf's DecodeError, among others
        raise UserError("%s is not a frozen TensorFlow graph (%s)" % (path, _first_line(err)))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return _SessionModel("frozen_pb", path, graph, tf.Session(graph=graph),
                         _tensor(graph, graph_lib.INPUT + ":0", path),
                         _tensor(graph, graph_lib.LOGITS + ":0", path), meta)


class _TfliteModel(LoadedModel):
    """A TFLite interpreter; int8 models get their input quantized and logits
    dequantized with the scales stored in the model."""

    def __init__(self, path, meta):
        try:
            self._interpreter = tf.lite.Interpreter(model_path=path)
        except ValueError as err:
            raise UserError("%s is not a TFLite model (%s)" % (path, _first_line(err)))
        self._input = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()
        named = [o for o in outputs if o["name"] == graph_lib.LOGITS]
        self._output = (named or outputs)[0]
        self._batch = None
        super(_TfliteModel, self).__init__("tflite", path, int(self._input["shape"][1]),
                                           int(self._output["shape"][-1]), meta)

    def _prepare(self, batch):
        if batch != self._batch:
            self._interpreter.resize_tensor_input(
                self._input["index"], [batch, self.image_size, self.image_size, 3])
            with native_output.silenced():  # "Created TensorFlow Lite XNNPACK delegate"
                self._interpreter.allocate_tensors()
            self._batch = batch

    def _run(self, images):
        self._prepare(len(images))
        scale, zero_point = self._input["quantization"]
        if self._input["dtype"] != np.float32:
            info = np.iinfo(self._input["dtype"])
            images = np.clip(np.round(images / scale + zero_point), info.min, info.max)
        self._interpreter.set_tensor(self._input["index"],
                                     images.astype(self._input["dtype"]))
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if self._output["dtype"] != np.float32:
            logits = (logits.astype(np.float32) - zero_point) * scale
        return logits


class _OnnxModel(LoadedModel):
    def __init__(self, path, meta):
        try:
            import onnxruntime
        except ImportError:
            raise UserError("onnxruntime is not installed; pip install onnxruntime to run "
                            "%s" % path)
        try:
            self._session = onnxruntime.InferenceSession(
                path, onnx_qdq.session_options(onnxruntime, meta),
                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped failures
            raise UserError("%s is not a loadable ONNX model (%s)" % (path, _first_line(err)))
        self._input = self._session.get_inputs()[0]
        outputs = self._session.get_outputs()
        named = [o for o in outputs if o.name == graph_lib.LOGITS]
        self._output = (named or outputs)[0]
        size = self._input.shape[1]
        super(_OnnxModel, self).__init__(
            "onnx", path, size if isinstance(size, int) else meta.get("image_size"),
            int(self._output.shape[-1]), meta)

    def _run(self, images):
        return self._session.run([self._output.name], {self._input.name: images})[0]


def _first_line(err):
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_model(path, labels_file=None, **checkpoint_overrides):
    """A LoadedModel for ``path`` (any of KINDS). ``checkpoint_overrides``
    (model_name, num_classes, labels_offset, image_size, central_fraction, use_ema)
    describe a checkpoint; exported models carry their own metadata."""
    kind = detect_kind(path)
    if kind == "checkpoint":
        overrides = dict((k, v) for k, v in checkpoint_overrides.items() if v is not None)
        return _load_checkpoint(path, dict(overrides, labels_file=labels_file))
    meta = metadata.read_meta(path)
    loader = {"saved_model": _load_saved_model, "frozen_pb": _load_frozen_pb,
              "tflite": _TfliteModel, "onnx": _OnnxModel}[kind]
    model = loader(path, meta)
    if labels_file:
        model.class_names = metadata.class_names(labels_file, model.num_classes,
                                                 model.labels_offset)
    return model
