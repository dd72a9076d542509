"""What an exported model is, beside it in JSON: the network, its input size, the class
names of its outputs and where it came from. Prediction and evaluation read it back.

  <saved_model dir>/export_meta.json    for SavedModels (a directory)
  <file>.meta.json                      for model.pb / model.tflite / model.onnx
"""
import os

from datasets import layout
from utils.errors import UserError
from utils.files import read_json_if_present, write_json

META_FILENAME = "export_meta.json"


def meta_path(model_path):
    """Where the metadata of ``model_path`` goes: export_meta.json inside a SavedModel
    folder, <file>.meta.json beside a file."""
    if os.path.isdir(model_path):
        return os.path.join(model_path, META_FILENAME)
    return model_path + ".meta.json"


def write_meta(model_path, meta):
    """Writes ``meta`` beside ``model_path`` (meta_path), whole."""
    write_json(meta_path(model_path), meta)


def read_meta(model_path):
    """The metadata written beside ``model_path``, or {} when there is none."""
    return read_json_if_present(meta_path(model_path), "re-export the model or remove it")


def read_labels(labels_file):
    """The class names of a TF-Slim labels.txt ("index:name" lines), indexed by dataset
    label (None where a label has no line)."""
    try:
        return layout.read_labels_file(labels_file)
    except (IOError, OSError) as err:
        raise UserError("cannot read the labels file %s (%s)" % (labels_file,
                                                                 err.strerror or err))
    except ValueError as err:
        raise UserError("%s is not a labels file (%s); expected 'index:name' lines"
                        % (labels_file, err))


def output_names(labels, num_classes, labels_offset):
    """Names of the network's outputs from read_labels' ``labels``: output k is label
    k + labels_offset; an output without a name is called by its index."""
    picked = list(labels[labels_offset:labels_offset + num_classes])
    picked += [None] * (num_classes - len(picked))
    return [name if name is not None else str(k) for k, name in enumerate(picked)]


def class_names(labels_file, num_classes, labels_offset):
    """output_names of the labels file ``labels_file``."""
    return output_names(read_labels(labels_file), num_classes, labels_offset)
