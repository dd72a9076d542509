"""A checkpoint's tensors under our variable names, whatever names it was written with.

Every command that restores a checkpoint (fine-tuning, the evaluator and its ledger,
export, predict) reads its names and shapes here instead of from the checkpoint
reader, so a checkpoint in other names restores wherever ours do. Two namings are
known: ours, and google/automl's EfficientNetV2 (nets/automl_names.py), recognised by
the names themselves. ``sources`` gives each of our names the tensor to read; a
tensor whose shape differs in the other layout (automl's dense head) keeps its own
shape there, and ``shapes`` has ours.
"""
import collections

from nets import automl_names
from quantization import fake_quant, rewrite
from utils.checkpoints import EMA_SUFFIX
from utils.errors import UserError
from utils.tf_compat import tf


class CheckpointNames(collections.namedtuple(
        "CheckpointNames", "path shapes sources automl_model")):
    """shapes: {our name: shape in our layout}; sources: {our name: (checkpoint tensor
    name, its shape there)}; automl_model: automl's network name (efficientnetv2-s)
    when the checkpoint is in automl's names, else None."""

    def source(self, name):
        """The checkpoint tensor that holds our ``name``."""
        return self.sources[name][0]

    def reshaped(self, name):
        """Whether the tensor is stored in another shape than our variable's."""
        return list(self.sources[name][1]) != list(self.shapes[name])

    @property
    def has_ema(self):
        return any(name.endswith(EMA_SUFFIX) for name in self.shapes)

    @property
    def quantization(self):
        """nets_factory's ``quantize=`` for an inference graph of this checkpoint: the
        simulated int8 graph when it holds contrib.quantize's ranges (per channel when
        they are), else None."""
        if not fake_quant.holds_ranges(self.shapes):
            return None
        return rewrite.INFERENCE._replace(
            per_channel=fake_quant.per_channel_ranges(self.shapes))

    @property
    def model_name(self):
        """Our registry name of the network when the names say it, else None."""
        return automl_names.MODELS.get(self.automl_model)

    @property
    def head_classes(self):
        """The class count of the head (its biases), or None."""
        for name, shape in self.shapes.items():
            if name.endswith("/Logits/Conv2d_1c_1x1/biases"):
                return int(shape[0])
        return None


def read(checkpoint, model_name=None):
    """The CheckpointNames of ``checkpoint`` (a prefix). UserError when it is in automl's
    names of a network we do not build, or of another one than ``model_name``."""
    shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    model = automl_names.automl_model(shapes)
    if model is None:
        ours = dict((name, list(shape)) for name, shape in shapes.items())
        return CheckpointNames(checkpoint, ours, dict(
            (name, (name, shape)) for name, shape in ours.items()), None)
    if model not in automl_names.MODELS:
        raise UserError("%s holds google/automl's %s (by its variable names), which this "
                        "project does not build; it builds %s"
                        % (checkpoint, model, ", ".join(
                            "%s (--model_name=%s)" % item
                            for item in automl_names.MODELS.items())))
    if model_name is not None and automl_names.MODELS[model] != model_name:
        raise UserError("%s holds google/automl's %s, not --model_name=%s; pass "
                        "--model_name=%s" % (checkpoint, model, model_name,
                                             automl_names.MODELS[model]))
    renamed = automl_names.from_automl(shapes)
    ours, sources = {}, {}
    for name, shape in shapes.items():
        our_name = renamed.get(name, name)  # global_step and strangers keep theirs
        ours[our_name] = automl_names.our_shape(name, shape)
        sources[our_name] = (name, list(shape))
    return CheckpointNames(checkpoint, ours, sources, model)


def use_moving_averages(names, use_ema):
    """Whether to read moving averages: ``use_ema`` auto (when present), true (UserError
    when absent) or false."""
    if use_ema == "true" and not names.has_ema:
        raise UserError("--use_ema=true but %s holds no moving averages" % names.path)
    return names.has_ema and use_ema != "false"


def describe(names, use_ema="auto"):
    """The line saying what was recognised in a checkpoint in other names; None for ours."""
    if names.automl_model is None:
        return None
    ema = ("used" if use_moving_averages(names, use_ema) else
           "present, not used (--use_ema=false)" if names.has_ema else "none")
    head = names.head_classes
    return ("checkpoint %s: google/automl %s names (read as %s); moving averages: %s; "
            "head: %s" % (names.path, names.automl_model, names.model_name, ema,
                          "%d classes" % head if head else "none"))


def implied_spec(names, dataset_classes=None):
    """What the names themselves say of the network: {"model_name", "num_classes",
    and "labels_offset" when ``dataset_classes`` is one more than the head's (ImageNet
    records with a background class 0, automl's heads without)}; {} for our names,
    which say nothing (model_spec.json or flags do)."""
    if names.automl_model is None:
        return {}
    spec = {"model_name": names.model_name}
    if names.head_classes:
        spec["num_classes"] = names.head_classes
        if dataset_classes is not None and dataset_classes - names.head_classes in (0, 1):
            spec["labels_offset"] = dataset_classes - names.head_classes
    return spec
