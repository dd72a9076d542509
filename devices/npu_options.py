"""The Ascend options a run derives from its flags: HCCL's timeout, the all-reduce split,
the profiler's options. Plain numbers and text, no npu_bridge and no TensorFlow: env.py
derives them, devices.npu hands them to npu_bridge (docs/devices.md explains each).

HCCL's timeout. With --eval_every_n_epochs rank 0 evaluates the validation split in its
own process (training.loop.TrainingRun._evaluate_latest) while the other ranks go on
into the next segment and wait for it in their first collective (NPUEstimator's
broadcast when the session starts). That wait must stay under the time HCCL lets a rank
wait for the others: NPURunConfig's ``hccl_timeout`` (tf_adapter r1.7.0 on; GE option
ge.exec.hcclExecuteTimeOut, util/npu_attrs.cc) or the environment's HCCL_EXEC_TIMEOUT,
1836 s by default, at most 17340 s on the Atlas training series (which rounds it down to
a multiple of 68 s). The evaluator runs a plain tf.Session, which on Ascend runs on the
host's CPU; its speed there is not known here, so the default assumes a slow host
(EVAL_IMAGES_PER_S_FLOOR) plus RESTART_S for rank 0 to rebuild and compile its training
graph, and a timeout no host could meet (EVAL_IMAGES_PER_S_CEILING, MIN_RESTART_S) is
refused.
"""
import json
import math

from utils.errors import UserError

HCCL_DEFAULT_S = 1836  # HCCL_EXEC_TIMEOUT's default (CANN)
HCCL_MAX_S = 17340  # the largest the Atlas training series (Ascend 910) accepts
EVAL_IMAGES_PER_S_FLOOR = 50  # a slow host CPU evaluating MobileNetV2 at 224 px
EVAL_IMAGES_PER_S_CEILING = 1000  # faster than any host CPU evaluates it
RESTART_S = 600  # rank 0 rebuilding and compiling its training graph after evaluating
MIN_RESTART_S = 60  # the least that takes

COMPILE_CACHE_MODES = ("enable", "force", "disable")  # GE's op_compiler_cache_mode
MAX_SPLIT_SEGMENTS = 8  # HCCL's limit for both split strategies
SPLIT_KINDS = ("size", "idx")

# tf_adapter's own default profiling_options (util/npu_attrs.cc profiling_default_options,
# r1.11.0 on; r1.3.0-r1.10.0 have none and need them given), less its output folder and
# msproftx (off by default, unknown to the older profilers).
PROFILING_OPTIONS = (("training_trace", "on"), ("task_trace", "on"), ("hccl", "on"),
                     ("aicpu", "on"), ("aic_metrics", "PipeUtilization"))


def hccl_timeout(given, environ_value, rank_size, eval_images):
    """Seconds a rank waits in a collective for the others, or None for HCCL's own
    default. ``given``: --hccl_timeout or None; ``environ_value``: HCCL_EXEC_TIMEOUT's
    text, or None; ``eval_images``: the validation images rank 0 evaluates between
    segments, or None without evaluation while training. UserError for a timeout rank 0's
    evaluation cannot fit in (see the module)."""
    value, name = given, "--hccl_timeout=%s" % given
    if value is None and environ_value not in (None, ""):
        name = "HCCL_EXEC_TIMEOUT=%s" % environ_value
        try:
            value = int(environ_value)
        except ValueError:
            raise UserError("%s is not a whole number of seconds; fix or unset it (or pass "
                            "--hccl_timeout)" % name)
        if value < 1:
            raise UserError("%s: give a positive number of seconds, or unset it" % name)
    if rank_size < 2 or not eval_images:
        return value
    if value is None:
        needed = RESTART_S + int(math.ceil(eval_images / float(EVAL_IMAGES_PER_S_FLOOR)))
        return min(HCCL_MAX_S, max(HCCL_DEFAULT_S, needed))
    least = MIN_RESTART_S + int(math.ceil(eval_images / float(EVAL_IMAGES_PER_S_CEILING)))
    if value < least:
        raise UserError(
            "%s s cannot cover rank 0's evaluation of the %d validation images while the "
            "other %d ranks wait in HCCL: even at %d images/s and %d s to restart it takes "
            "%d s; give at least --hccl_timeout=%d (left unset it is sized for a slow host), "
            "or drop --eval_every_n_epochs and evaluate with eval_image_classifier_mobilenet.py"
            % (name, eval_images, rank_size - 1, EVAL_IMAGES_PER_S_CEILING, MIN_RESTART_S,
               least, least))
    return value


def parse_allreduce_split(text):
    """--allreduce_split's ``size:P1,P2,...`` or ``idx:I1,I2,...`` as ("size", [floats])
    or ("idx", [ints]); None for None or ''. UserError for what HCCL's
    set_split_strategy_by_size / _by_idx would refuse (hccl/split/api.py: percentages
    summing to 100, ascending non-negative indices; at most 8 segments)."""
    if not text:
        return None
    kind, _, numbers = text.partition(":")
    usage = ("--allreduce_split=%s: give size:P1,P2,... (percentages of the gradients' bytes "
             "summing to 100) or idx:I1,I2,... (the last gradient index of each segment, "
             "ascending), at most %d segments" % (text, MAX_SPLIT_SEGMENTS))
    if kind not in SPLIT_KINDS or not numbers:
        raise UserError(usage)
    try:
        values = [_number(part, kind) for part in numbers.split(",")]
    except ValueError:
        raise UserError(usage)
    if len(values) > MAX_SPLIT_SEGMENTS or min(values) < 0:
        raise UserError(usage)
    if kind == "size" and sum(values) != 100:  # as exact as HCCL's own check
        raise UserError("%s: the percentages add up to %g, not 100" % (usage, sum(values)))
    if kind == "idx" and any(a >= b for a, b in zip(values, values[1:])):
        raise UserError("%s: the indices must ascend" % usage)
    return kind, values


def _number(text, kind):
    """An index (int), or a percentage: an int when it is whole, else a float."""
    if kind == "idx":
        return int(text)
    value = float(text)
    return int(value) if value.is_integer() else value


def profiling_options(output_dir):
    """ProfilingConfig's profiling_options: the JSON text CANN's profiler reads, writing
    into ``output_dir``."""
    options = dict(PROFILING_OPTIONS, output=output_dir)
    return json.dumps(options, sort_keys=True)
