"""What network a checkpoint holds: flags first, then the model_spec.json that training
wrote beside it, then what its variable names say (automl's EfficientNetV2 names name
the network and the head's classes), then the model's defaults."""
import os

from datasets import layout
from export import metadata
from export.inference_graph import ModelSpec
from nets import checkpoint_names, nets_factory
from utils.checkpoints import first_given, read_model_spec
from utils.errors import UserError


def resolve(checkpoint, model_name=None, num_classes=None, labels_offset=None,
            image_size=None, central_fraction=None, labels_file=None):
    """(ModelSpec, class names or None) for ``checkpoint`` (a resolved prefix)."""
    recorded = read_model_spec(os.path.dirname(checkpoint) or ".")
    stored = checkpoint_names.read(checkpoint, model_name)
    implied = checkpoint_names.implied_spec(stored)
    model_name = first_given(model_name, recorded.get("model_name"),
                             implied.get("model_name"))
    if model_name is None:
        raise UserError("which network is %s? pass --model_name (no model_spec.json beside "
                        "it)" % checkpoint)
    info = nets_factory.get_model_info(model_name)
    num_classes = first_given(num_classes, recorded.get("num_classes"),
                              implied.get("num_classes"))
    if num_classes is None:
        raise UserError("how many classes has %s? pass --num_classes (no model_spec.json "
                        "beside it)" % checkpoint)
    if num_classes < 2:
        raise UserError("--num_classes=%d: need at least 2 classes" % num_classes)
    labels_offset = first_given(labels_offset, recorded.get("labels_offset"), 0)
    image_size = first_given(image_size, recorded.get("eval_image_size"), info.default_eval_image_size)
    nets_factory.check_image_size(model_name, image_size)
    central_fraction = first_given(central_fraction, recorded.get("central_fraction"), 0.875)
    if not 0.0 < central_fraction <= 1.0:
        raise UserError("--central_fraction=%s must be in (0, 1]" % central_fraction)
    spec = ModelSpec(model_name=model_name, num_classes=num_classes,
                     labels_offset=labels_offset, image_size=image_size,
                     central_fraction=central_fraction,
                     preprocessing_name=recorded.get("preprocessing_name",
                                                     info.preprocessing_name),
                     quantization=stored.quantization)
    if labels_file is None and recorded.get("dataset_dir"):
        candidate = os.path.join(recorded["dataset_dir"], layout.LABELS_FILENAME)
        labels_file = candidate if os.path.exists(candidate) else None
    names = (metadata.class_names(labels_file, num_classes, labels_offset)
             if labels_file else None)
    return spec, names
