"""The evaluator's settings, and how its flags make them, in three steps:

  check_flags(f)                    what the flag values say by themselves
  sources.read_sources(f, model)    what the disk holds (evaluation/sources.py)
  EvalConfig.from_flags(f, found)   the settings, from the flags and what was read

The last reads nothing, so a test builds an EvalConfig from values. ``f`` is the
parsed absl flags, or any object answering ``f.name`` and ``f[name].present``.
"""
import os

from absl import flags

from devices import inference, npu, placement
from nets import nets_factory
from utils import validators
from utils.checkpoints import first_given
from utils.config import Config
from utils.errors import UserError


class EvalConfig(Config):
    """What one evaluation needs; built from the evaluator's flags (from_flags) or from
    a training Env (Env.eval_config)."""

    FIELDS = (
        ("dataset", "datasets.dataset_factory descriptor of the data"),
        ("split", "the split evaluated, every image once"),
        ("model_name", "registry name of the network (nets_factory); an exported model's "
                       "when its metadata names it, else None"),
        ("num_classes", "classes of the head"),
        ("labels_offset", "subtracted from every stored label"),
        ("image_size", "evaluation resolution (model_spec.json's eval_image_size)"),
        ("preprocessing_name", "dataloader/preprocessing.py style"),
        ("central_fraction", "central crop kept before resizing"),
        ("batch_size", "images per batch; the last, partial batch counts too"),
        ("max_num_batches", "evaluate only this many batches (None: all)"),
        ("use_ema", "the weights' moving averages: auto | true | false"),
        ("log_every_n_batches", "batches between progress lines"),
        ("eval_dir", "where eval_results.json and the summaries go"),
        ("data_threads", "tf.data private pool size (None: cores - 1)"),
        ("device", "where the network runs: npu (devices/inference.py's session config) "
                   "or host (the host CPU)"),
        ("precision_mode", "npu: the precision_mode of its session; None on the host"),
    )

    @classmethod
    def from_flags(cls, f, found):
        """The settings of the flags ``f`` (checked by check_flags) and of what
        sources.read_sources found (``found``)."""
        if found.model is not None:
            network = _exported_network(f, found.model)
        else:
            network = _trained_network(f, found.dataset, found.recorded)
        return cls(
            dataset=found.dataset, split=f.split, batch_size=f.batch_size,
            max_num_batches=f.max_num_batches, use_ema=f.use_ema,
            log_every_n_batches=f.log_every_n_batches,
            eval_dir=f.eval_dir or os.path.join(found.directory, "eval"),
            data_threads=f.data_threads, device=found.device,
            precision_mode=f.eval_precision_mode if found.device == inference.NPU else None,
            **network)


class LedgerConfig(Config):
    """What --ledger sweeps (evaluation/ledger.py)."""

    FIELDS = (
        ("directory", "the training directory whose checkpoints are measured"),
        ("average_last", "K of --average_last: the last K checkpoints averaged, or None"),
    )


class WatchConfig(Config):
    """How --watch follows a training run (evaluation/watch.py)."""

    FIELDS = (
        ("directory", "the training directory watched (it may not exist yet)"),
        ("final_step", "stop once a checkpoint at or past it is evaluated (None: "
                       "train_result.json's final_step, once training writes it)"),
        ("timeout_s", "stop after this many seconds without a new checkpoint"),
        ("interval_s", "seconds between looks for new checkpoints"),
    )


def define_flags(flag_values=flags.FLAGS):
    """The evaluator's own flags (the data, model and eval flags are env.py's, shared
    with train.py)."""
    def define(kind, name, default, meaning):
        getattr(flags, "DEFINE_" + kind)(name, default, meaning, flag_values=flag_values)

    define("string", "checkpoint_path", None, "Checkpoint prefix, or a directory (latest).")
    define("string", "model_file", None,
           "Evaluate an exported model instead (SavedModel dir, .pb, .tflite, .onnx; see "
           "export_model.py), in its own runtime.")
    define("string", "eval_dir", None,
           "Where eval_results.json and summaries go (default: <checkpoint dir>/eval).")
    define("string", "split", "validation", "Dataset split to evaluate.")
    define("integer", "max_num_batches", None, "Evaluate only this many batches.")
    define("integer", "log_every_n_batches", 10, "Batches between progress lines.")
    define("boolean", "eval_all_checkpoints", False,
           "Evaluate every checkpoint of the directory, oldest first.")
    define("boolean", "watch", False, "Keep evaluating new checkpoints as they appear.")
    define("integer", "watch_timeout", 3600,
           "--watch stops after this many seconds without a new checkpoint.")
    define("float", "watch_interval", 10.0, "Seconds between looks for new checkpoints.")
    define("integer", "final_step", None,
           "--watch stops after evaluating a checkpoint at or past this step (training's "
           "--max_train_steps).")
    define("boolean", "ledger", False,
           "Evaluate every checkpoint of the directory, raw and moving-average weights, "
           "into <eval_dir>/ledger.csv and the best to <dir>/best/.")
    define("integer", "average_last", None,
           "--ledger also averages the last K checkpoints (K >= 2) into "
           "<dir>/average_last_K/ and evaluates the average.")
    flags.DEFINE_enum(
        "eval_device", "auto", placement.EVAL_DEVICE_KINDS,
        "Where the network runs: npu (Ascend, through npu_bridge's inference session "
        "config) or host (the host CPU); auto: npu when npu_bridge imports and an Ascend "
        "device (a /dev/davinciN node) is visible, else host. --ledger and --model_file run "
        "on the host.", flag_values=flag_values)
    flags.DEFINE_enum(
        "eval_precision_mode", inference.DEFAULT_PRECISION_MODE, npu.PRECISION_MODES,
        "precision_mode of the NPU's session: must_keep_origin_dtype keeps every "
        "operator's float type (top-1 as on the host); force_fp16, allow_mix_precision... "
        "trade accuracy for speed.", flag_values=flag_values)


def check_flags(f):
    """The checks that need nothing but the flag values: UserError naming the flag."""
    if bool(f.checkpoint_path) == bool(f.model_file):
        raise UserError("give --checkpoint_path (a checkpoint prefix or directory) or "
                        "--model_file (an exported model), one of them")
    if not f.dataset_dir:
        raise UserError("--dataset_dir is required (a folder of TFRecord shards)")
    validators.require_positive(f, (
        "batch_size", "max_num_batches", "log_every_n_batches", "eval_image_size",
        "num_classes", "data_threads", "watch_timeout", "watch_interval", "final_step"))
    validators.require_fraction(f, ("central_fraction",), low_open=True)
    _check_modes(f)
    _check_device(f)


def _check_modes(f):
    """--model_file, --watch, --eval_all_checkpoints and --ledger: one at most."""
    if f.model_file and (f.watch or f.eval_all_checkpoints):
        raise UserError("--watch and --eval_all_checkpoints read checkpoints; drop them with "
                        "--model_file")
    if f.watch and f.eval_all_checkpoints:
        raise UserError("--watch already evaluates every checkpoint; drop --eval_all_checkpoints")
    if not f.ledger and f.average_last is not None:
        raise UserError("--average_last=%d averages checkpoints for the ledger; add --ledger"
                        % f.average_last)
    if f.ledger and (f.model_file or f.watch or f.eval_all_checkpoints):
        raise UserError("--ledger evaluates every checkpoint of --checkpoint_path itself; "
                        "drop --watch, --eval_all_checkpoints and --model_file")
    if f.ledger and f["use_ema"].present:
        raise UserError("--ledger measures both raw and moving-average weights; drop --use_ema")


def host_only_reason(f):
    """Why the flags ``f`` evaluate on the host whatever --eval_device says, or None:
    the ledger measures there, an exported model runs in its own runtime there."""
    if f.ledger:
        return "--ledger measures on the host CPU"
    if f.model_file:
        return "--model_file runs the exported model in its own runtime on the host CPU"
    return None


def _check_device(f):
    """--eval_device and --eval_precision_mode against the modes that stay on the host."""
    reason = host_only_reason(f)
    if reason and f.eval_device == inference.NPU:
        raise UserError("%s; drop --eval_device=npu" % reason)
    if f["eval_precision_mode"].present and (reason or f.eval_device == inference.HOST):
        raise UserError("--eval_precision_mode=%s sets the NPU's precision but %s; drop it"
                        % (f.eval_precision_mode, reason or "--eval_device=host evaluates "
                           "on the host CPU"))


def ledger_config_from_flags(f, found):
    """LedgerConfig for --ledger, K checked against the checkpoints found; else None."""
    if not f.ledger:
        return None
    count = len(found.checkpoints)
    if f.average_last is not None and not 2 <= f.average_last <= count:
        raise UserError("--average_last=%d must be between 2 and %d, the number of "
                        "checkpoints in %s" % (f.average_last, count, f.checkpoint_path))
    return LedgerConfig(directory=f.checkpoint_path, average_last=f.average_last)


def watch_config_from_flags(f):
    """WatchConfig for --watch, else None."""
    if not f.watch:
        return None
    return WatchConfig(directory=f.checkpoint_path, final_step=f.final_step,
                       timeout_s=f.watch_timeout, interval_s=f.watch_interval)


def _given(f, name):
    """The flag's value when the user typed it, else None."""
    return getattr(f, name) if f[name].present else None


def _trained_network(f, dataset, recorded):
    """The network, classes and eval sizes: flags the user gave, then the model_spec.json
    that train.py wrote beside the checkpoints (``recorded``), then the defaults. So
    --checkpoint_path=TRAIN_DIR evaluates what was trained there, as training's own
    periodic evaluation does, with no model flags."""
    model_name = first_given(_given(f, "model_name"), recorded.get("model_name"),
                             f.model_name)
    info = nets_factory.get_model_info(model_name)
    labels_offset = first_given(_given(f, "labels_offset"), recorded.get("labels_offset"),
                                f.labels_offset)
    image_size = first_given(f.eval_image_size, recorded.get("eval_image_size"),
                             info.default_eval_image_size)
    nets_factory.check_image_size(model_name, image_size)
    return dict(
        model_name=model_name, labels_offset=labels_offset, image_size=image_size,
        num_classes=first_given(f.num_classes, recorded.get("num_classes"),
                                dataset.num_classes - labels_offset),
        preprocessing_name=first_given(f.preprocessing_name,
                                       recorded.get("preprocessing_name"),
                                       info.preprocessing_name),
        central_fraction=first_given(_given(f, "central_fraction"),
                                     recorded.get("central_fraction"), f.central_fraction))


def _exported_network(f, model):
    """An exported model's network: sizes and label offset are the model's own; flags
    that disagree with it are refused rather than silently ignored."""
    if f.eval_image_size and f.eval_image_size != model.image_size:
        raise UserError("--eval_image_size=%d but %s takes %d px images; drop the flag"
                        % (f.eval_image_size, model.path, model.image_size))
    if f.num_classes and f.num_classes != model.num_classes:
        raise UserError("--num_classes=%d but %s has %d classes; drop the flag"
                        % (f.num_classes, model.path, model.num_classes))
    return dict(
        model_name=model.meta.get("model_name"), num_classes=model.num_classes,
        labels_offset=first_given(_given(f, "labels_offset"), model.labels_offset),
        image_size=model.image_size,
        preprocessing_name=f.preprocessing_name or model.preprocessing_name,
        central_fraction=first_given(_given(f, "central_fraction"), model.central_fraction))
