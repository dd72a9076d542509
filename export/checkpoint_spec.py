"""What the disk says of a checkpoint's network: the model_spec.json that training wrote
beside it, its variable names, the class names of its labels file (read); and the
ModelSpec that export/config.py derives from them (resolve)."""
import os

from datasets import layout
from export import config as config_lib
from export import metadata
from nets import checkpoint_names
from utils.checkpoints import read_model_spec


def read(checkpoint, model_name=None, labels_file=None):
    """config.CheckpointFacts of ``checkpoint`` (a resolved prefix). UserError when its
    names are automl's of another network than ``model_name``. The labels are
    ``labels_file``'s, else those of the training dataset's labels.txt when there is
    one."""
    recorded = read_model_spec(os.path.dirname(checkpoint) or ".")
    if labels_file is None and recorded.get("dataset_dir"):
        candidate = os.path.join(recorded["dataset_dir"], layout.LABELS_FILENAME)
        labels_file = candidate if os.path.exists(candidate) else None
    return config_lib.CheckpointFacts(
        checkpoint=checkpoint, recorded=recorded,
        names=checkpoint_names.read(checkpoint, model_name),
        labels=metadata.read_labels(labels_file) if labels_file else None)


def resolve(checkpoint, labels_file=None, **given):
    """(ModelSpec, class names or None) for ``checkpoint`` (a resolved prefix); ``given``:
    config.model_spec's model_name, num_classes, labels_offset, image_size,
    central_fraction."""
    facts = read(checkpoint, given.get("model_name"), labels_file)
    spec = config_lib.model_spec(facts, **given)
    return spec, config_lib.class_names(facts, spec)
