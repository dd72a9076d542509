"""Env: flags + process environment -> every number the training run derives.

The flags are defined here and consumed only in ``Env.from_flags`` (training) or in
the evaluator's own config, so one search finds where any flag is read. Env holds no
TensorFlow session state: the graph-building helpers (learning rate, optimizer) are
plain functions of the numbers it holds. Its fields are declared once, in FIELDS, with
their meaning; reading or writing a name not declared there raises AttributeError.
"""
import collections
import math
import os

from absl import flags

from datasets import dataset_factory
from devices import npu_options, placement
from devices.npu import PRECISION_MODES
from devices.ranks import rank_info_from_environ
from evaluation.config import EvalConfig
from nets import nets_factory
from nets.builder import WEIGHTS_INITS
from quantization import rewrite
from training import graph_cache
from training.finetune import parse_restore_exclude, parse_scopes
from utils.checkpoints import resolve_checkpoint
from utils.config import Config
from utils.errors import UserError
from utils.validators import require_fraction, require_one_of, require_positive

LR_DECAY_TYPES = ("fixed", "exponential", "polynomial", "cosine")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
DEFAULT_LEARNING_RATE = 0.1  # TF-Slim's train_image_classifier.py


def define_data_flags():
    """Flags shared by training and evaluation: what data, what model."""
    if "dataset_dir" in flags.FLAGS:  # already defined by another entry point
        return
    flags.DEFINE_string("dataset_dir", None,
                        "Folder of TFRecord shards (slim layout), or of images as they "
                        "come: an image tree (train/ and validation/ of class folders) or "
                        "an unpacked CIFAR-10/100 archive, converted once into a cache.")
    flags.DEFINE_string("dataset_cache_dir", None,
                        "Where image trees and CIFAR archives are converted (default "
                        "$XDG_CACHE_HOME or ~/.cache, /mobile-classifiers/datasets).")
    flags.DEFINE_string("dataset_name", "auto",
                        "auto | imagenet | cifar10 | folder. auto: 'folder' when "
                        "dataset_meta.json is present (written by datasets.build_tfrecords), "
                        "cifar10 when TF-Slim's cifar10_*.tfrecord are, else imagenet.")
    flags.DEFINE_string("model_name", "mobilenet_v2", "Network name (nets_factory).")
    flags.DEFINE_integer("num_classes", None,
                         "Classes of the network's head. Default: the dataset's class "
                         "count minus --labels_offset.")
    flags.DEFINE_integer("labels_offset", 0,
                         "Subtracted from every label; 1 trains a head without ImageNet's "
                         "background class.")
    flags.DEFINE_string("preprocessing_name", None,
                        "Preprocessing; default: the model's (inception-style).")
    flags.DEFINE_integer("batch_size", 32, "Images per device per step.")
    flags.DEFINE_integer("data_threads", None,
                         "tf.data private thread pool size (default: cores - 1).")
    flags.DEFINE_enum("device", "auto", placement.DEVICE_KINDS,
                      "auto: npu when npu_bridge imports, else gpu when TF sees one, else cpu.")
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's own warnings and logs.")


def define_eval_flags():
    """Flags of how to evaluate, shared by the evaluator and train.py's periodic eval."""
    if "eval_image_size" in flags.FLAGS:
        return
    flags.DEFINE_integer("eval_image_size", None,
                         "Eval resolution (default: the model's eval size, e.g. 384 for "
                         "efficientnet_v2_s; in training, --train_image_size when given).")
    flags.DEFINE_float("central_fraction", 0.875, "Central crop kept before resizing (eval).")
    flags.DEFINE_enum("use_ema", "auto", ("auto", "true", "false"),
                      "Use the weights' moving averages (auto: when the checkpoint has "
                      "them): when evaluating, and in train.py as the weights "
                      "--restore_path starts from (false: its raw weights).")


def define_train_flags():
    """Every flag of train.py, by concern."""
    define_data_flags()
    define_eval_flags()
    if "train_dir" in flags.FLAGS:
        return
    _define_run_flags()
    _define_device_flags()
    _define_optimizer_flags()
    _define_regularization_flags()
    _define_augmentation_flags()
    _define_checkpoint_flags()
    _define_finetune_flags()
    _define_side_task_flags()


def _define_run_flags():
    """What to train for how long, where, from which data (the loop)."""
    flags.DEFINE_string("train_dir", "result/train", "Checkpoints, summaries and train_log.log.")
    flags.DEFINE_integer("train_image_size", None, "Training resolution (default: the model's).")
    flags.DEFINE_integer("max_epoch", None, "Epochs to train (exclusive with --max_train_steps).")
    flags.DEFINE_integer("max_train_steps", None, "Global steps to train (exclusive with --max_epoch).")
    flags.DEFINE_integer("log_every_n_steps", 10, "Steps between progress lines and summaries.")
    flags.DEFINE_integer("seed", None, "Graph-level random seed (also the training "
                         "augmentation's). Default: none, or 0 with --deterministic.")
    flags.DEFINE_boolean("deterministic", False,
                         "Repeatable training, for debugging a recipe: seeded (--seed, "
                         "default 0), records read and augmented on one thread in a fixed "
                         "order, TensorFlow's deterministic kernels (on Ascend "
                         "NPURunConfig(deterministic=1)). Two runs of one command on one "
                         "machine write bit-identical checkpoints; input is slower. "
                         "Exclusive with --data_threads above 1.")
    flags.DEFINE_boolean("use_synthetic_data", False, "Random images (benchmarking).")
    flags.DEFINE_boolean("skip_corrupt_records", False,
                         "Train past records that do not parse, decode or have a label "
                         "outside [0, num_classes), and truncated shards, logging and "
                         "counting each (default: stop with an error naming the record).")


def _define_device_flags():
    """How the devices train: Ascend's device loop, GPUs, precision."""
    flags.DEFINE_integer("iterations_per_loop", 10,
                         "Steps per device loop on Ascend (NPU); ignored elsewhere.")
    flags.DEFINE_integer("num_gpus", None,
                         "GPUs this process trains on with MirroredStrategy (default: all "
                         "it sees; scripts/run_8p.sh gives each process one).")
    flags.DEFINE_boolean("mixed_precision", False,
                         "GPU: float16 compute, float32 weights, loss scaling (--loss_scale).")
    flags.DEFINE_enum("precision_mode", "allow_mix_precision", PRECISION_MODES,
                      "Ascend (NPU) precision mode, passed to NPURunConfig.")
    flags.DEFINE_string("loss_scale", None,
                        "Loss scaling: dynamic, none, or a fixed number such as 1024. "
                        "Default: dynamic for float16 training (NPU, GPU --mixed_precision), "
                        "none in float32; given in float32 (CPU, GPU), it scales the float32 "
                        "loss: a rehearsal of loss-scaled training.")
    flags.DEFINE_boolean("over_dump", False,
                         "Ascend: dump the operators that overflow in float16 (debugging).")
    flags.DEFINE_string("over_dump_path", None,
                        "Folder of --over_dump's dumps (default <train_dir>/overflow_dump).")
    flags.DEFINE_enum("op_compiler_cache_mode", "enable", npu_options.COMPILE_CACHE_MODES,
                      "Ascend: GE's operator compile cache. enable: reuse the operators "
                      "earlier runs and segments compiled; force: compile afresh and "
                      "replace the cache (one rank only); disable: no cache.")
    flags.DEFINE_string("op_compiler_cache_dir", None,
                        "Ascend: folder of that cache (default <train_dir>/op_compiler_cache, "
                        "shared by the ranks).")
    flags.DEFINE_integer("hccl_timeout", None,
                         "Ascend, several devices: seconds a rank waits in a collective for "
                         "the others (NPURunConfig's hccl_timeout, HCCL_EXEC_TIMEOUT). "
                         "Default: HCCL_EXEC_TIMEOUT when set, else HCCL's 1836 s, more with "
                         "--eval_every_n_epochs on a large validation split (rank 0 evaluates "
                         "while the others wait; docs/devices.md).")
    flags.DEFINE_string("profiling_dir", None,
                        "Ascend: profile the run with CANN's profiler (training and task "
                        "traces, HCCL, AI CPU) into this folder; slows training.")
    flags.DEFINE_string("allreduce_split", None,
                        "Ascend, several devices: the gradients' all-reduce in fused "
                        "segments, size:P1,P2,... (percent of the gradient bytes, summing to "
                        "100) or idx:I1,I2,... (the last gradient index of each segment), at "
                        "most 8 (HCCL's set_split_strategy_by_size / _by_idx; default HCCL's "
                        "96.54,3.46 by size).")


def _define_optimizer_flags():
    """The learning-rate schedule and the optimizer."""
    flags.DEFINE_enum("learning_rate_decay_type", "cosine", LR_DECAY_TYPES, "LR schedule.")
    flags.DEFINE_float("learning_rate", None,
                       "Peak learning rate, reached after warmup (default 0.1, or "
                       "--learning_rate_per_256 scaled to the global batch).")
    flags.DEFINE_float("learning_rate_per_256", None,
                       "Peak learning rate per 256 images, scaled linearly with the global "
                       "batch (batch_size x devices): the recipes' form (exclusive with "
                       "--learning_rate).")
    flags.DEFINE_float("end_learning_rate", 0.0, "Final LR of polynomial and cosine decay.")
    flags.DEFINE_float("learning_rate_decay_factor", 0.94, "Exponential decay factor.")
    flags.DEFINE_float("num_epochs_per_decay", 2.5, "Epochs between exponential decays.")
    flags.DEFINE_float("warmup_epochs", 0.0, "Linear warmup from 0 to --learning_rate.")
    flags.DEFINE_enum("optimizer", "momentum", OPTIMIZERS, "Optimizer.")
    flags.DEFINE_float("momentum", 0.9, "Momentum of 'momentum' and 'rmsprop'.")
    flags.DEFINE_float("rmsprop_decay", 0.9, "RMSProp's gradient-square decay.")
    flags.DEFINE_float("opt_epsilon", 1.0, "Epsilon of rmsprop / adam (TF-Slim's default 1.0).")


def _define_regularization_flags():
    """Weight decay, label smoothing, averages, dropout, stochastic depth."""
    flags.DEFINE_float("weight_decay", 0.00004, "L2 weight decay of conv weights.")
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
    flags.DEFINE_float("moving_average_decay", None,
                       "Keep exponential moving averages of the weights in the checkpoint.")
    flags.DEFINE_float("bn_decay", 0.997,
                       "Batch-norm moving-average decay. Short runs need a small one (0.9).")
    flags.DEFINE_float("dropout_keep_prob", 0.8, "Dropout keep probability before the head.")
    flags.DEFINE_enum("weights_init", "slim", WEIGHTS_INITS,
                      "How convolution and head weights start: 'slim' (TF-Slim's truncated "
                      "normal, stddev 0.09) or 'pytorch' (torch.nn's default: uniform within "
                      "+-1/sqrt(fan_in)), the one PyTorch recipes train from.")
    flags.DEFINE_float("drop_path_rate", None,
                       "Stochastic depth while training: residual block k of n is dropped "
                       "with probability rate * k / n (default: the model's, 0.2 for "
                       "EfficientNetV2, 0 for MobileNet / MnasNet).")
    flags.DEFINE_float("clip_gradient_norm", None,
                       "Clip gradients to this global norm before applying them (default: "
                       "no clipping).")
    flags.DEFINE_integer("quantize_delay", -1,
                         "Quantization-aware training (TF-Slim's flag, TF 1.15 "
                         "contrib.quantize's graph): batch norm folded, weights and "
                         "activations fake-quantized to 8 bits from this many steps after "
                         "quantization starts (0: at once; -1: float training).")
    flags.DEFINE_boolean("quantize_per_channel", False,
                         "With --quantize_delay: one weight range per output channel of "
                         "each convolution and depthwise convolution (TFLite's int8 "
                         "scheme) instead of one per layer (contrib.quantize's, whose "
                         "checkpoints are per layer).")
    flags.DEFINE_integer("freeze_bn_delay", None,
                         "With --quantize_delay: from this many steps on, batch norm uses "
                         "and keeps its moving statistics (default: never frozen).")
    flags.DEFINE_float("freeze_bn_epochs", None,
                       "--freeze_bn_delay in epochs of the training split at the global "
                       "batch (exclusive with --freeze_bn_delay).")


def _define_augmentation_flags():
    """Training-time preprocessing."""
    flags.DEFINE_float("min_crop_area", 0.05,
                       "Smallest area fraction of the random training crop.")
    flags.DEFINE_boolean("random_flip", True, "Random horizontal flips when training.")


def _define_checkpoint_flags():
    """When checkpoints are written and how many are kept."""
    flags.DEFINE_integer("save_checkpoints_steps", None,
                         "Steps between checkpoints (default: one epoch; on npu rounded down "
                         "to a multiple of --iterations_per_loop).")
    flags.DEFINE_integer("save_checkpoints_secs", None,
                         "Seconds between checkpoints instead of steps (exclusive with "
                         "--save_checkpoints_steps; one process per run only).")
    flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.")
    flags.DEFINE_boolean("allow_fresh_start", False,
                         "When no checkpoint in --train_dir is intact, move them all to "
                         "<train_dir>/damaged_checkpoints/ and train from step 0 (default: "
                         "stop with an error naming the damage).")


def _define_finetune_flags():
    """Starting from another checkpoint; training only some scopes."""
    flags.DEFINE_string("restore_path", None,
                        "Fine-tune: start from this checkpoint (prefix or directory) when "
                        "--train_dir has no checkpoint of its own.")
    flags.DEFINE_string("restore_exclude", None,
                        "Comma-separated scopes not restored (default: the model's head, "
                        "e.g. MobilenetV2/Logits/; 'none' restores everything; 'auto' "
                        "restores what fits by name and shape, skips the rest).")
    flags.DEFINE_boolean("ignore_missing_vars", False,
                         "Initialise model variables the checkpoint lacks instead of failing.")
    flags.DEFINE_boolean("restore_dry_run", False,
                         "Print what --restore_path would restore, skip and leave new, "
                         "then exit without training or writing anything.")
    flags.DEFINE_string("trainable_scopes", None,
                        "Comma-separated scopes to train (default: all); batch-norm "
                        "statistics outside them stay frozen too.")
    flags.DEFINE_boolean("freeze_backbone", False,
                         "Train only the model's head (shortcut for --trainable_scopes).")


def _define_side_task_flags():
    """Evaluation while training, pre-flight, the graph cache."""
    flags.DEFINE_float("eval_every_n_epochs", None,
                       "Evaluate the validation split every this many epochs while "
                       "training (in this process; results in <train_dir>/eval).")
    flags.DEFINE_boolean("preflight", False,
                         "Run every pre-flight check (training/preflight.py; the "
                         "dataset's record counts too), print what was checked and exit: 0 when nothing is "
                         "wrong, 2 otherwise. Trains nothing, writes nothing.")
    flags.DEFINE_string("graph_cache_dir", None,
                        "Where training graphs are kept for the next run with the same "
                        "settings, which imports its graph instead of building it (faster "
                        "start-up; CPU and single-GPU). Default: "
                        "$XDG_CACHE_HOME/mobile-classifiers/train-graphs, ~/.cache when "
                        "unset; empty (--graph_cache_dir=) builds every graph afresh.")


# ----------------------------------------------------------------------------- flagfiles

# Settings a flag can give in either of two units. A recipe (a --flagfile) gives one; the
# same setting given on the command line in the other unit replaces the recipe's.
ALTERNATIVE_FLAGS = (("max_epoch", "max_train_steps"),
                     ("learning_rate", "learning_rate_per_256"),
                     ("freeze_bn_delay", "freeze_bn_epochs"))
FLAGS_FILE = "flags.txt"


def _named_on_command_line(argv):
    """Names of the flags ``argv`` gives itself (not through a --flagfile)."""
    names = set()
    for arg in argv[1:]:
        if arg == "--":
            break
        if arg.startswith("-"):
            names.add(arg.lstrip("-").split("=", 1)[0])
    return names


def prefer_command_line(argv, flag_values):
    """Applies ALTERNATIVE_FLAGS: where the command line ``argv`` names one flag of a pair
    and a flagfile set the other, the flagfile's is reset to its default (unset), so
    `--flagfile=recipes/x.flags --max_train_steps=5` trains 5 steps instead of failing on
    the recipe's --max_epoch. Both given on the command line stay an error."""
    given = _named_on_command_line(argv)
    for pair in ALTERNATIVE_FLAGS:
        for name, other in (pair, pair[::-1]):
            if name in given and other not in given and flag_values[other].present:
                flag_values[other].unparse()


def flags_file_text(flag_values, header=()):
    """Every train.py flag with its value, one per line, as --flagfile reads them (flags
    left unset are omitted): <train_dir>/flags.txt, from which the run can be repeated."""
    lines = ["# %s" % line for line in header]
    for flag in sorted(flag_values.get_flags_for_module(__name__), key=lambda f: f.name):
        if flag.name in ONE_OFF_FLAGS:
            continue
        text = flag.serialize()
        if text:
            lines.append(text)
    return "\n".join(lines) + "\n"


# Flags that ask for something other than training; a repeated run should train.
ONE_OFF_FLAGS = ("preflight", "restore_dry_run")


# ----------------------------------------------------------------------------- fields

# One row per Env field: (name, the flag it copies as given or None when derived, whether
# it only steers the loop around the training graph (never the ops model_fn builds, so
# the graph cache leaves it out of its key), meaning).
Field = collections.namedtuple("Field", "name flag loop_only meaning")

FIELDS = tuple(Field(*row) for row in (
    # data and model
    ("dataset", None, False, "datasets.dataset_factory descriptor of --dataset_dir"),
    ("model_name", "model_name", False, "registry name of the network (nets_factory)"),
    ("model", None, False, "the network's nets_factory.ModelInfo"),
    ("num_classes", None, False, "classes of the head (default: dataset's - offset)"),
    ("labels_offset", "labels_offset", False, "subtracted from every stored label"),
    ("preprocessing_name", None, False, "dataloader/preprocessing.py style"),
    ("preprocessing_options", None, False, "training crop and flip settings"),
    ("image_size", None, False, "training resolution"),
    ("eval_image_size", None, False, "evaluation resolution"),
    ("central_fraction", "central_fraction", False, "central crop kept when evaluating"),
    ("data_threads", None, False, "tf.data private pool size (None: cores - 1; 1 with "
                                  "--deterministic)"),
    ("use_synthetic_data", "use_synthetic_data", False, "random images instead of data"),
    ("skip_corrupt_records", "skip_corrupt_records", False, "drop and count bad records"),
    ("num_samples", None, False, "training images in the dataset"),
    # devices and ranks
    ("device", None, False, "npu | gpu | cpu (resolved from --device)"),
    ("device_id", None, False, "DEVICE_ID / ASCEND_DEVICE_ID of this process"),
    ("rank_id", None, False, "this process's rank"),
    ("rank_size", None, False, "training processes"),
    ("local_replicas", None, False, "replicas this process trains (its GPUs, else 1)"),
    ("num_replicas", None, False, "replicas in all: rank_size * local_replicas"),
    ("mixed_precision", "mixed_precision", False, "GPU float16 compute"),
    ("precision_mode", "precision_mode", False, "Ascend's NPURunConfig precision mode"),
    ("loss_scale", None, False, "'dynamic', a fixed float, or None (no loss scaling)"),
    ("over_dump", "over_dump", False, "Ascend: dump overflowing operators"),
    ("over_dump_path", None, True, "folder of those dumps"),
    ("iterations_per_loop", "iterations_per_loop", False, "Ascend: steps per device loop"),
    ("op_compiler_cache_mode", "op_compiler_cache_mode", True, "Ascend: GE's compile cache "
                                                               "(enable | force | disable)"),
    ("op_compiler_cache_dir", None, True, "its folder"),
    ("hccl_timeout", None, True, "Ascend: seconds HCCL waits for the other ranks, or None "
                                 "(HCCL's default)"),
    ("profiling_dir", None, True, "Ascend: CANN profiler's output folder, or None"),
    ("allreduce_split", None, True, "Ascend: ('size' | 'idx', [numbers]) of the gradients' "
                                    "all-reduce segments, or None (HCCL's)"),
    # batch and schedule
    ("batch_size", "batch_size", False, "images per replica per step"),
    ("global_batch", None, False, "images per step over all replicas"),
    ("steps_per_epoch", None, False, "global steps in one pass over the training images"),
    ("max_train_steps", None, False, "global step training ends at"),
    ("warmup_steps", None, False, "steps of linear LR warmup"),
    ("lr_decay_type", "learning_rate_decay_type", False, "LR schedule (LR_DECAY_TYPES)"),
    ("learning_rate", None, False, "peak learning rate (at the global batch)"),
    ("end_learning_rate", "end_learning_rate", False, "final LR of polynomial / cosine"),
    ("decay_factor", "learning_rate_decay_factor", False, "exponential decay factor"),
    ("decay_steps", None, False, "steps between exponential decays"),
    ("optimizer_name", "optimizer", False, "optimizer (OPTIMIZERS)"),
    ("momentum", "momentum", False, "momentum of momentum / rmsprop"),
    ("rmsprop_decay", "rmsprop_decay", False, "RMSProp's gradient-square decay"),
    ("opt_epsilon", "opt_epsilon", False, "epsilon of rmsprop / adam"),
    ("clip_gradient_norm", "clip_gradient_norm", False, "global-norm clip, or None"),
    ("quantization", None, False, "quantization.rewrite.Settings of --quantize_delay, "
                                  "--freeze_bn_delay and --quantize_per_channel, or None "
                                  "(float training)"),
    # regularization
    ("weight_decay", "weight_decay", False, "L2 decay of conv weights"),
    ("label_smoothing", "label_smoothing", False, "label smoothing of the loss"),
    ("moving_average_decay", "moving_average_decay", False, "weight EMA decay, or None"),
    ("bn_decay", "bn_decay", False, "batch-norm moving-average decay"),
    ("dropout_keep_prob", "dropout_keep_prob", False, "dropout keep probability"),
    ("weights_init", "weights_init", False, "initial weights: 'slim' or 'pytorch'"),
    ("drop_path_rate", None, False, "stochastic depth of the last block"),
    ("seed", None, False, "graph-level random seed, or None (0 with --deterministic)"),
    ("deterministic", "deterministic", False, "repeatable training (--deterministic)"),
    # checkpoints and the loop
    ("train_dir", "train_dir", True, "checkpoints, summaries, logs, results"),
    ("log_every_n_steps", "log_every_n_steps", True, "steps between progress lines"),
    ("save_checkpoints_steps", None, True, "steps between checkpoints, or None"),
    ("save_checkpoints_secs", "save_checkpoints_secs", True, "seconds between them, or None"),
    ("keep_checkpoint_max", "keep_checkpoint_max", False, "checkpoints kept (the Saver's)"),
    ("allow_fresh_start", "allow_fresh_start", True, "start over when no checkpoint is whole"),
    ("eval_every_steps", None, True, "steps between evaluations while training, or None"),
    ("verbose", "verbose", True, "show TensorFlow's own logs"),
    ("preflight", "preflight", True, "run the pre-flight checks and exit"),
    ("graph_cache_dir", None, True, "where training graphs are kept ('' : off)"),
    # fine-tuning
    ("restore_checkpoint", None, False, "--restore_path's checkpoint prefix, or None"),
    ("restore_exclude", None, False, "scopes not restored (or 'auto')"),
    ("restore_dry_run", "restore_dry_run", True, "print the restore plan and exit"),
    ("ignore_missing_vars", "ignore_missing_vars", False, "start absent variables afresh"),
    ("use_ema", "use_ema", False, "start from --restore_path's moving averages: auto | "
                                  "true | false"),
    ("trainable_scopes", None, False, "scopes trained (empty: all)"),
))


# ----------------------------------------------------------------------------- deriving

def _parse_loss_scale(value, float16):
    """'dynamic' | 'none' | a positive number -> 'dynamic' | None | float. Not given:
    dynamic when the run computes in float16 (``float16``), else none. Given in float32,
    it scales the float32 loss: the overflow mechanics are float16's, so a CPU can
    rehearse a loss-scaled run (and the tests can overflow one on purpose)."""
    if value is None:
        return "dynamic" if float16 else None
    text = value.strip().lower()
    if text in ("dynamic", "none"):
        return None if text == "none" else text
    try:
        number = float(text)
    except ValueError:
        number = 0.0
    if not number >= 1.0:  # below 1 a scale shrinks float16 gradients: more underflow
        raise UserError("--loss_scale=%s: give dynamic, none or a number >= 1 (such as "
                        "1024)" % value)
    return number


def _default_save_steps(steps_per_epoch, device, iterations_per_loop):
    """A checkpoint every epoch; on npu, where one session.run runs iterations_per_loop
    steps, the nearest multiple of it not above the epoch (ImageNet's 5004 steps/epoch
    on one device, 625 on eight, are no multiples of the recipes' 10)."""
    if device != "npu":
        return steps_per_epoch
    return max(iterations_per_loop, steps_per_epoch - steps_per_epoch % iterations_per_loop)


def check_flag_values(f):
    """The checks that need nothing but the flags (UserError naming the flag): train.py
    runs them before it looks at any file, and Env.from_flags again."""
    require_one_of(f, ("max_epoch", "max_train_steps"))
    require_positive(f, ("max_epoch", "max_train_steps", "batch_size", "learning_rate",
                         "learning_rate_per_256", "save_checkpoints_steps",
                         "save_checkpoints_secs", "keep_checkpoint_max", "log_every_n_steps",
                         "iterations_per_loop", "data_threads", "train_image_size",
                         "num_classes", "clip_gradient_norm", "eval_every_n_epochs",
                         "hccl_timeout"))
    for pair in (("save_checkpoints_steps", "save_checkpoints_secs"),
                 ("learning_rate", "learning_rate_per_256")):
        if all(getattr(f, name) is not None for name in pair):
            raise UserError("give --%s or --%s, not both" % pair)
    if f.labels_offset < 0:
        raise UserError("--labels_offset=%d must be >= 0" % f.labels_offset)
    require_fraction(f, ("bn_decay", "moving_average_decay", "label_smoothing",
                         "drop_path_rate"))
    require_fraction(f, ("min_crop_area", "dropout_keep_prob"), low_open=True)
    if f.warmup_epochs < 0:
        raise UserError("--warmup_epochs=%s must be >= 0" % f.warmup_epochs)
    if not f.dataset_dir:
        raise UserError("--dataset_dir is required (a folder of TFRecord shards)")
    if f.restore_dry_run and not f.restore_path:
        raise UserError("--restore_dry_run shows the warm start from --restore_path; "
                        "give --restore_path=CHECKPOINT too")
    if f.freeze_backbone and f.trainable_scopes:
        raise UserError("give --freeze_backbone or --trainable_scopes, not both")
    _check_quantization_flags(f)
    npu_options.parse_allreduce_split(f.allreduce_split)


def _check_quantization_flags(f):
    if f.quantize_delay < -1:
        raise UserError("--quantize_delay=%d: give the steps before quantization starts "
                        "(0: at once), or -1 for float training" % f.quantize_delay)
    if f.quantize_per_channel and f.quantize_delay < 0:
        raise UserError("--quantize_per_channel ranges the weights of quantization-aware "
                        "training: give --quantize_delay too (0: quantize at once)")
    given = [name for name in ("freeze_bn_delay", "freeze_bn_epochs")
             if getattr(f, name) is not None]
    if not given:
        return
    if len(given) > 1:
        raise UserError("give --freeze_bn_delay or --freeze_bn_epochs, not both")
    if f.quantize_delay < 0:
        raise UserError("--%s freezes the batch norm of quantization-aware training: give "
                        "--quantize_delay too (0: quantize at once)" % given[0])
    value = getattr(f, given[0])
    if value < 0:
        raise UserError("--%s=%s must be >= 0" % (given[0], value))


# ----------------------------------------------------------------------------- facts

# What a run finds around it, the only inputs of Env.from_flags besides the flags and
# the process environment: the dataset's descriptor, the device kind, the GPUs this
# process sees, and the --restore_path checkpoint resolved to a prefix (or None).
RunFacts = collections.namedtuple("RunFacts", "dataset device visible_gpus restore_checkpoint")


def gather_facts(f, environ, say=None, convert=True):
    """Looks at the machine and the disk for what Env.from_flags derives from: probes
    the device, checks the rank environment, opens the dataset (an image tree or CIFAR
    archive is converted into its cache first, ``say(line)`` hearing of it, unless
    ``convert`` is False: then its classes and sizes are counted and nothing written)
    and resolves --restore_path. UserError for what is missing."""
    device = placement.resolve_device(f.device)
    placement.check_device_environment(device, rank_info_from_environ(environ), environ)
    dataset = dataset_factory.get_dataset(
        f.dataset_name, f.dataset_dir, f.dataset_cache_dir, convert=convert,
        **({"say": say} if say else {}))
    if f.eval_every_n_epochs is not None:  # fail now, not after the first epochs
        (dataset.num_samples if not convert else dataset.list_files)("validation")
    return RunFacts(
        dataset=dataset, device=device,
        visible_gpus=placement.visible_gpu_count() if device == "gpu" else 0,
        restore_checkpoint=(resolve_checkpoint(f.restore_path, "restore_path")
                            if f.restore_path else None))


def load_env(f, environ=None, say=None, convert=True):
    """gather_facts, then Env.from_flags: the whole way from flags to an Env."""
    environ = os.environ if environ is None else environ
    check_flag_values(f)
    return Env.from_flags(f, gather_facts(f, environ, say, convert), environ)


# ----------------------------------------------------------------------------- deriving

def _data_fields(f, dataset):
    """The network, its classes and image sizes."""
    model = nets_factory.get_model_info(f.model_name)
    num_classes = f.num_classes or dataset.num_classes - f.labels_offset
    if num_classes < 2:
        raise UserError("--num_classes=%d: need at least 2 classes" % num_classes)
    image_size = nets_factory.check_image_size(
        f.model_name, f.train_image_size or model.default_image_size)
    # A size given for training is the one to evaluate at too, unless told otherwise.
    eval_image_size = nets_factory.check_image_size(
        f.model_name,
        f.eval_image_size or f.train_image_size or model.default_eval_image_size)
    return dict(
        dataset=dataset, model=model, num_classes=num_classes, image_size=image_size,
        eval_image_size=eval_image_size, num_samples=dataset.num_samples("train"),
        preprocessing_name=f.preprocessing_name or model.preprocessing_name,
        preprocessing_options=dict(min_crop_area=f.min_crop_area, random_flip=f.random_flip),
        drop_path_rate=(model.default_drop_path_rate if f.drop_path_rate is None
                        else f.drop_path_rate))


def _determinism_fields(f):
    """The seed and input threads; --deterministic seeds an unseeded run with 0 and
    reads on one thread: the augmentation's random ops are stateful, and parallel map
    calls would take their numbers in a varying order."""
    if not f.deterministic:
        return dict(seed=f.seed, data_threads=f.data_threads)
    if f.data_threads is not None and f.data_threads > 1:
        raise UserError("--deterministic reads and augments records on one thread (its "
                        "random crops and flips would otherwise reach the images in a "
                        "varying order); drop --data_threads=%d" % f.data_threads)
    return dict(seed=0 if f.seed is None else f.seed, data_threads=1)


def _device_fields(f, facts, environ):
    """Which device, this process's rank, how many replicas, which precision."""
    device, ranks = facts.device, rank_info_from_environ(environ)
    local_replicas = placement.local_replicas(device, f.num_gpus, facts.visible_gpus)
    if f.mixed_precision and device != "gpu":
        raise UserError("--mixed_precision is for GPUs (this run uses %s); on Ascend "
                        "use --precision_mode, on CPU train in float32" % device)
    if f.save_checkpoints_secs is not None and ranks.rank_size > 1 and device != "npu":
        raise UserError("--save_checkpoints_secs with %d worker processes: their "
                        "collective saves must fall on the same step (TensorFlow "
                        "would switch to every 1000 steps); use "
                        "--save_checkpoints_steps" % ranks.rank_size)
    return dict(
        device=device, rank_id=ranks.rank_id, rank_size=ranks.rank_size,
        device_id=_device_id(device, environ),
        local_replicas=local_replicas, num_replicas=ranks.rank_size * local_replicas,
        loss_scale=_parse_loss_scale(f.loss_scale, device == "npu" or f.mixed_precision),
        over_dump_path=f.over_dump_path or os.path.join(f.train_dir, "overflow_dump"))


def _device_id(device, environ):
    """tf_adapter trains on ASCEND_DEVICE_ID, DEVICE_ID only when that is unset
    (util/npu_attrs.cc GetEnvDeviceID); elsewhere DEVICE_ID is the launcher's."""
    names = ("ASCEND_DEVICE_ID", "DEVICE_ID") if device == "npu" else ("DEVICE_ID",)
    for name in names:
        if environ.get(name, "").strip():
            return environ[name].strip()
    return "0"


def _npu_fields(f, dataset, device, rank_size, environ):
    """The Ascend options (devices.npu_options): the operator compile cache, HCCL's
    timeout (sized for rank 0's evaluation while training), the profiler, the
    all-reduce split. --op_compiler_cache_mode=force rewrites a cache the other ranks
    read, so it is for one rank."""
    if device == "npu" and f.op_compiler_cache_mode == "force" and rank_size > 1:
        raise UserError("--op_compiler_cache_mode=force with RANK_SIZE=%d: each rank would "
                        "empty the shared cache while the others compile into it; refresh it "
                        "in a run on one device (RANK_SIZE=1), or delete %s and use enable"
                        % (rank_size, f.op_compiler_cache_dir
                           or os.path.join(f.train_dir, "op_compiler_cache")))
    eval_images = (dataset.num_samples("validation")
                   if f.eval_every_n_epochs is not None else None)
    return dict(
        op_compiler_cache_dir=os.path.abspath(f.op_compiler_cache_dir
                                              or os.path.join(f.train_dir, "op_compiler_cache")),
        hccl_timeout=(npu_options.hccl_timeout(f.hccl_timeout,
                                               environ.get("HCCL_EXEC_TIMEOUT"), rank_size,
                                               eval_images)
                      if device == "npu" else None),
        profiling_dir=os.path.abspath(f.profiling_dir) if f.profiling_dir else None,
        allreduce_split=npu_options.parse_allreduce_split(f.allreduce_split))


def _schedule_fields(f, num_samples, device, num_replicas):
    """Global batch, learning rate, steps, warmup and decay steps, checkpoint and eval
    cadence, the quantization delays."""
    global_batch = f.batch_size * num_replicas
    if global_batch > num_samples:
        raise UserError("global batch %d (batch_size %d x %d devices) exceeds the %d "
                        "training images; lower --batch_size"
                        % (global_batch, f.batch_size, num_replicas, num_samples))
    steps_per_epoch = num_samples // global_batch
    max_train_steps = (f.max_train_steps if f.max_train_steps is not None
                       else f.max_epoch * steps_per_epoch)
    warmup_steps = int(round(f.warmup_epochs * steps_per_epoch))
    if warmup_steps >= max_train_steps and f.warmup_epochs > 0:
        raise UserError("--warmup_epochs=%s covers the whole run (%d steps); lower it"
                        % (f.warmup_epochs, max_train_steps))
    return dict(
        global_batch=global_batch, steps_per_epoch=steps_per_epoch,
        max_train_steps=max_train_steps, warmup_steps=warmup_steps,
        learning_rate=_learning_rate(f, global_batch),
        decay_steps=max(1, int(f.num_epochs_per_decay * steps_per_epoch)),
        eval_every_steps=(None if f.eval_every_n_epochs is None else
                          max(1, int(round(f.eval_every_n_epochs * steps_per_epoch)))),
        save_checkpoints_steps=(None if f.save_checkpoints_secs
                                else f.save_checkpoints_steps or _default_save_steps(
                                    steps_per_epoch, device, f.iterations_per_loop)),
        quantization=_quantization(f, steps_per_epoch))


def _learning_rate(f, global_batch):
    """--learning_rate, or --learning_rate_per_256 x global batch / 256 (the linear
    scaling rule, Goyal et al. 2017), else TF-Slim's 0.1."""
    if f.learning_rate is not None:
        return f.learning_rate
    if f.learning_rate_per_256 is not None:
        return f.learning_rate_per_256 * global_batch / 256.0
    return DEFAULT_LEARNING_RATE


def _quantization(f, steps_per_epoch):
    if f.quantize_delay < 0:
        return None
    freeze = f.freeze_bn_delay
    if f.freeze_bn_epochs is not None:
        freeze = int(round(f.freeze_bn_epochs * steps_per_epoch))
    return rewrite.Settings(quant_delay=f.quantize_delay, freeze_bn_delay=freeze,
                            per_channel=f.quantize_per_channel)


def _finetune_fields(f, model, restore_checkpoint):
    """The warm start's checkpoint and exclusions, and the trained scopes."""
    return dict(
        restore_checkpoint=restore_checkpoint,
        restore_exclude=parse_restore_exclude(
            f.restore_exclude if f.restore_exclude is not None
            else model.default_restore_exclude),
        trainable_scopes=(tuple(model.head_scopes) if f.freeze_backbone
                          else parse_scopes(f.trainable_scopes)),
        graph_cache_dir=(graph_cache.default_dir() if f.graph_cache_dir is None
                         else f.graph_cache_dir))


class Env(Config):
    """Everything derived from flags and environment for one training run: the fields
    of FIELDS, nothing else (utils.config.Config). Tests may build one from a few
    fields; reading a field that was not given raises AttributeError."""

    FIELDS = FIELDS

    @classmethod
    def from_flags(cls, f, facts, environ):
        """Validates the flags (UserError naming the flag), then derives every field from
        them, ``facts`` (RunFacts, see gather_facts) and ``environ`` (the process
        environment as a dict): no file, device or network is looked at here."""
        check_flag_values(f)
        values = dict((field.name, getattr(f, field.flag)) for field in FIELDS
                      if field.flag is not None)
        values.update(_data_fields(f, facts.dataset))
        values.update(_determinism_fields(f))
        values.update(_device_fields(f, facts, environ))
        values.update(_npu_fields(f, facts.dataset, values["device"], values["rank_size"],
                                  environ))
        values.update(_schedule_fields(f, values["num_samples"], values["device"],
                                       values["num_replicas"]))
        values.update(_finetune_fields(f, values["model"], facts.restore_checkpoint))
        return cls(**values)

    def graph_settings(self):
        """(name, value) of every field that shapes the training graph, by name."""
        return sorted((field.name, getattr(self, field.name)) for field in FIELDS
                      if not field.loop_only)


    @property
    def is_chief(self):
        return self.rank_id == 0

    def eval_config(self):
        """How train.py --eval_every_n_epochs evaluates: the validation split at
        --eval_image_size (default: --train_image_size when given, else the model's eval
        size), results in <train_dir>/eval, on the host CPU whatever --device trains on
        (the stand-alone evaluator's --eval_device=npu scores on the NPU)."""
        return EvalConfig(
            dataset=self.dataset, split="validation", model_name=self.model_name,
            num_classes=self.num_classes, labels_offset=self.labels_offset,
            image_size=self.eval_image_size, preprocessing_name=self.preprocessing_name,
            central_fraction=self.central_fraction, batch_size=self.batch_size,
            max_num_batches=None, use_ema="auto", log_every_n_batches=50,
            eval_dir=os.path.join(self.train_dir, "eval"), data_threads=self.data_threads,
            device="host", precision_mode=None)

    def model_spec(self, resumed_spec=None):
        """What the checkpoints of this run hold, for the exporter and predict.py
        (written to <train_dir>/model_spec.json), and where training started:
        "restore_path", the absolute --restore_path checkpoint or None (from scratch).
        A run resuming from train_dir passes the model_spec.json already there
        (resumed_spec): its checkpoints' weights came from that first start, so the
        record is kept as it is (absent when that run wrote none), whatever this run's
        --restore_path; training/preflight.py compares --restore_path with it."""
        spec = {"model_name": self.model_name, "num_classes": self.num_classes,
                "labels_offset": self.labels_offset, "eval_image_size": self.eval_image_size,
                "train_image_size": self.image_size,
                "preprocessing_name": self.preprocessing_name,
                "central_fraction": self.central_fraction,
                "dataset_dir": os.path.abspath(self.dataset.dataset_dir)}
        if resumed_spec is None:
            spec["restore_path"] = (os.path.abspath(self.restore_checkpoint)
                                    if self.restore_checkpoint else None)
        elif "restore_path" in resumed_spec:
            spec["restore_path"] = resumed_spec["restore_path"]
        return spec

    def bn_decay_warning(self):
        """A line for runs too short for the batch-norm decay, else None.

        Moving statistics keep a decay**steps share of their initial values; with
        that above 1% evaluation runs on stale statistics and scores near chance.
        """
        if self.bn_decay <= 0.0:
            return None
        steps_needed = int(math.ceil(math.log(0.01) / math.log(self.bn_decay)))
        if self.max_train_steps >= steps_needed:
            return None
        advice = ("train longer or lower --bn_decay" if self.bn_decay <= 0.9
                  else "for short runs pass --bn_decay=0.9 or lower")
        return ("--bn_decay=%g needs about %d steps for batch-norm statistics to settle but "
                "this run has %d; evaluation may score near chance: %s."
                % (self.bn_decay, steps_needed, self.max_train_steps, advice))

    def describe(self):
        return ("model=%s classes=%d image=%d batch=%d x %d devices = %d, %d images/epoch, "
                "%d steps/epoch, %d steps (%.1f epochs), lr %s %g, optimizer %s"
                % (self.model_name, self.num_classes, self.image_size, self.batch_size,
                   self.num_replicas, self.global_batch, self.num_samples, self.steps_per_epoch,
                   self.max_train_steps, self.max_train_steps / float(self.steps_per_epoch),
                   self.lr_decay_type, self.learning_rate, self.optimizer_name)
                + self._describe_quantization()
                + ("; deterministic (seed %d, one input thread)" % self.seed
                   if self.deterministic else ""))

    def _describe_quantization(self):
        settings = self.quantization
        if settings is None:
            return ""
        return ("; quantization-aware (contrib.quantize graph, int8%s) from step %d of "
                "quantization%s" % (", weights per channel" if settings.per_channel else "",
                                    settings.quant_delay, "" if settings.freeze_bn_delay is None
                                    else ", batch norm frozen from step %d"
                                    % settings.freeze_bn_delay))
