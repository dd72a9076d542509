"""The exporter's settings, and how export_model.py's flags make them, in three steps
as the evaluator's (evaluation/config.py):

  check_flags(f)                      what the flag values say by themselves
  checkpoint_spec.read(checkpoint)    what the disk says of the checkpoint (CheckpointFacts)
  ExportConfig.from_flags(f, facts)   the settings, from the flags and what was read

The last reads nothing, so a test builds an ExportConfig from values. ModelSpec, what
an exported network is, is derived the same way (model_spec), for predict.py too.
"""
from absl import flags

from export import formats, metadata
from nets import checkpoint_names, nets_factory
from utils import validators
from utils.checkpoints import first_given
from utils.config import Config
from utils.errors import UserError


class ModelSpec(Config):
    """What the exported network is: enough to rebuild it and to read its outputs."""

    FIELDS = (
        ("model_name", "registry name of the network (nets_factory)"),
        ("num_classes", "classes of the head: the outputs"),
        ("labels_offset", "dataset label of output 0"),
        ("image_size", "input side (default: model_spec.json's eval_image_size)"),
        ("central_fraction", "central crop before resizing, in the serving_bytes "
                             "signature and prediction"),
        ("preprocessing_name", "dataloader/preprocessing.py style"),
        ("quantization", "nets_factory's quantize=: the simulated int8 graph of a "
                         "checkpoint with quantization ranges (its fake-quant ops are "
                         "exported), or None for a float network"),
    )

    def __init__(self, quantization=None, **values):
        super(ModelSpec, self).__init__(quantization=quantization, **values)


class CheckpointFacts(Config):
    """What the disk says of a checkpoint (checkpoint_spec.read)."""

    FIELDS = (
        ("checkpoint", "the checkpoint prefix"),
        ("recorded", "the model_spec.json training wrote beside it "
                     "(utils.checkpoints.read_model_spec), {} when none"),
        ("names", "its nets.checkpoint_names.CheckpointNames"),
        ("labels", "metadata.read_labels of --labels_file, else of the training dataset's "
                   "labels.txt; None when neither is there"),
    )


class ExportConfig(Config):
    """What export_model.py writes, and how."""

    FIELDS = (
        ("checkpoint", "the checkpoint prefix exported"),
        ("spec", "ModelSpec of its network"),
        ("class_names", "names of the outputs, or None"),
        ("format", "one of formats.FORMATS"),
        ("output", "the model file, or folder for saved_model"),
        ("overwrite", "replace an existing output"),
        ("use_ema", "the weights' moving averages: auto | true | false"),
        ("opset", "ONNX opset"),
        ("calibration_dataset_dir", "TFRecords calibrating tflite_int8 (the training "
                                    "data by default); None when nothing is calibrated"),
        ("calibration_dataset_name", "auto | imagenet | folder"),
        ("calibration_split", "split the calibration images come from"),
        ("num_calibration_images", "images calibrating tflite_int8"),
        ("verbose", "show the converters' own output"),
    )

    @classmethod
    def from_flags(cls, f, facts):
        """The settings of the flags ``f`` (checked by check_flags) for the checkpoint
        that ``facts`` (CheckpointFacts) describe."""
        spec = model_spec(facts, model_name=f.model_name, num_classes=f.num_classes,
                          labels_offset=f.labels_offset, image_size=f.image_size,
                          central_fraction=f.central_fraction)
        calibration_dir = None
        if f.format == "tflite_int8" and spec.quantization is None:
            calibration_dir = f.calibration_dataset_dir or facts.recorded.get("dataset_dir")
            if not calibration_dir:
                raise UserError("tflite_int8 needs --calibration_dataset_dir (a folder of "
                                "TFRecord shards, e.g. the training data)")
        return cls(
            checkpoint=facts.checkpoint, spec=spec, class_names=class_names(facts, spec),
            format=f.format, output=f.output, overwrite=f.overwrite, use_ema=f.use_ema,
            opset=f.opset, calibration_dataset_dir=calibration_dir,
            calibration_dataset_name=f.calibration_dataset_name,
            calibration_split=f.calibration_split,
            num_calibration_images=f.num_calibration_images, verbose=f.verbose)


def define_flags(flag_values=flags.FLAGS):
    """export_model.py's flags."""
    def define(kind, name, default, meaning):
        getattr(flags, "DEFINE_" + kind)(name, default, meaning, flag_values=flag_values)

    define("string", "checkpoint_path", None,
           "Checkpoint prefix, or a directory (latest); <train_dir>/best, or best for "
           "./best: the weights the evaluator's --ledger chose.")
    flags.DEFINE_enum("format", "saved_model", formats.FORMATS, "What to write.",
                      flag_values=flag_values)
    define("string", "output", None, "Model file, or folder for saved_model.")
    define("boolean", "overwrite", False, "Replace an existing --output.")
    define("string", "model_name", None, "Network (default: from model_spec.json).")
    define("integer", "num_classes", None, "Classes of the head (default: model_spec.json).")
    define("integer", "labels_offset", None,
           "Dataset label of output 0 (default: model_spec.json, else 0).")
    define("integer", "image_size", None,
           "Input side (default: model_spec.json's eval size, else the model's).")
    define("float", "central_fraction", None,
           "Central crop of the serving_bytes signature (default 0.875).")
    flags.DEFINE_enum("use_ema", "auto", ("auto", "true", "false"),
                      "Export the weights' moving averages (auto: when the checkpoint has "
                      "them).", flag_values=flag_values)
    define("string", "labels_file", None,
           "labels.txt naming the classes (default: the training dataset's).")
    define("string", "calibration_dataset_dir", None,
           "TFRecord folder for tflite_int8 calibration (default: the training dataset "
           "in model_spec.json).")
    define("string", "calibration_dataset_name", "auto", "auto | imagenet | folder.")
    define("string", "calibration_split", "train", "Split the calibration images come from.")
    define("integer", "num_calibration_images", 200, "Images calibrating tflite_int8.")
    define("integer", "opset", formats.MIN_ONNX_OPSET, "ONNX opset (onnx format).")
    define("boolean", "verbose", False, "Show TensorFlow's own warnings and logs.")


def check_flags(f):
    """The checks that need nothing but the flag values: UserError naming the flag."""
    if not f.checkpoint_path:
        raise UserError("--checkpoint_path is required (a checkpoint prefix or directory)")
    if not f.output:
        raise UserError("--output is required (a file, or a folder for saved_model)")
    validators.require_positive(f, ("num_classes", "image_size", "num_calibration_images"))
    validators.require_fraction(f, ("central_fraction",), low_open=True)


def model_spec(facts, model_name=None, num_classes=None, labels_offset=None,
               image_size=None, central_fraction=None):
    """The ModelSpec of the checkpoint ``facts`` describe: what is given, then its
    model_spec.json, then what its variable names say (automl's EfficientNetV2 names
    name the network and the head's classes), then the model's defaults."""
    recorded = facts.recorded
    implied = checkpoint_names.implied_spec(facts.names)
    model_name = first_given(model_name, recorded.get("model_name"),
                             implied.get("model_name"))
    if model_name is None:
        raise UserError("which network is %s? pass --model_name (no model_spec.json beside "
                        "it)" % facts.checkpoint)
    info = nets_factory.get_model_info(model_name)
    num_classes = first_given(num_classes, recorded.get("num_classes"),
                              implied.get("num_classes"))
    if num_classes is None:
        raise UserError("how many classes has %s? pass --num_classes (no model_spec.json "
                        "beside it)" % facts.checkpoint)
    if num_classes < 2:
        raise UserError("--num_classes=%d: need at least 2 classes" % num_classes)
    image_size = first_given(image_size, recorded.get("eval_image_size"),
                             info.default_eval_image_size)
    nets_factory.check_image_size(model_name, image_size)
    return ModelSpec(
        model_name=model_name, num_classes=num_classes,
        labels_offset=first_given(labels_offset, recorded.get("labels_offset"), 0),
        image_size=image_size,
        central_fraction=first_given(central_fraction, recorded.get("central_fraction"),
                                     0.875),
        preprocessing_name=recorded.get("preprocessing_name", info.preprocessing_name),
        quantization=facts.names.quantization)


def class_names(facts, spec):
    """Names of the outputs of ``spec`` from the labels ``facts`` hold, or None."""
    if facts.labels is None:
        return None
    return metadata.output_names(facts.labels, spec.num_classes, spec.labels_offset)
