"""What the installed npu_bridge (tf_adapter) can do, read from its own signatures.

Ascend's images seldom say which tf_adapter release they hold, and its releases differ
in what this trainer relies on (Ascend/tensorflow, branches r1.3.0-r1.15.0, r2.1.0,
r3.1.0, r3.2.0, master):

  precision modes      From r1.12.0 (and on r2.1.0, r3.1.0, r3.2.0) util/npu_attrs.cc
                       checks precision_mode against nine values (kPrecisionModeList),
                       allow_mix_precision_fp16, allow_mix_precision_bf16,
                       allow_fp32_to_bf16 and cube_fp16in_fp32out among them. Up to
                       r1.11.0 it checks nothing and passes the text to GE, whose modes of
                       that time are the five of the same release's 2.x adapter
                       (tf_adapter_2.x/python/npu_device/configs/npu_config.py). The same
                       r1.12.0 added NPURunConfig's ``deterministic`` parameter (r2.1.0,
                       r3.1.0, r3.2.0 have it too): that parameter tells the two apart.
  keep_checkpoint_max  NPUEstimator's saver hook is given
                       NPUSaver(max_to_keep=config.keep_checkpoint_max) from r1.14.0 on
                       (npu_estimator.py), where NPUSaver defines an __init__ taking
                       max_to_keep (npu_saver.py). Before (r1.3.0-r1.13.0) and on r2.1.0,
                       r3.1.0 and r3.2.0 it builds NPUSaver(), which keeps tf.train.Saver's
                       default 5; NPUSaver there has an __init__(self) of its own (r1.10.0
                       on) or none at all (Saver's, which does take max_to_keep).
  hccl_timeout         An NPURunConfig parameter from r1.7.0; HCCL_EXEC_TIMEOUT in the
                       environment serves before (devices.npu sets both).
  precision_mode unset Up to r1.11.0 NPUEstimator writes allow_fp32_to_fp16 (force_fp16
                       for inference), r1.12.0 and r3.1.0 util/npu_attrs.cc does the same,
                       from r1.13.0 (and on r2.1.0, r3.2.0) GE's own default applies, which
                       differs between CANN releases: devices.npu always passes one.
"""
import collections
import importlib
import inspect

from utils.errors import UserError

# The modes util/npu_attrs.cc accepts from r1.12.0 on (kPrecisionModeList).
PRECISION_MODES = ("force_fp32", "allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype",
                   "allow_mix_precision", "cube_fp16in_fp32out", "allow_mix_precision_fp16",
                   "allow_mix_precision_bf16", "allow_fp32_to_bf16")
# Up to r1.11.0: the five of that release's tf_adapter_2.x npu_config.py.
PRECISION_MODES_BEFORE_R1_12 = ("force_fp32", "allow_fp32_to_fp16", "force_fp16",
                                "must_keep_origin_dtype", "allow_mix_precision")
# NPURunConfig's parameter that came with the nine modes (r1.12.0).
NINE_MODES_MARK = "deterministic"
SAVER_DEFAULT_KEEP = 5  # tf.train.Saver's max_to_keep

Capabilities = collections.namedtuple(
    "Capabilities", "run_config_parameters precision_modes keeps_checkpoint_max")


def read():
    """The installed tf_adapter's Capabilities (see the module)."""
    config = importlib.import_module("npu_bridge.estimator.npu.npu_config").NPURunConfig
    saver = importlib.import_module("npu_bridge.estimator.npu.npu_saver").NPUSaver
    parameters = frozenset(inspect.signature(config.__init__).parameters) - {"self"}
    own_init = vars(saver).get("__init__")
    return Capabilities(
        run_config_parameters=parameters,
        precision_modes=(PRECISION_MODES if NINE_MODES_MARK in parameters
                         else PRECISION_MODES_BEFORE_R1_12),
        keeps_checkpoint_max=(own_init is not None
                              and "max_to_keep" in inspect.signature(own_init).parameters))


def check_precision_mode(capabilities, mode):
    """UserError when the installed tf_adapter does not know precision ``mode``."""
    if mode in capabilities.precision_modes:
        return
    raise UserError("--precision_mode=%s is not known to the installed tf_adapter (older "
                    "than r1.12: its NPURunConfig has no %r parameter); choose one of %s, or "
                    "update CANN and its tf_adapter" % (mode, NINE_MODES_MARK,
                                                        ", ".join(capabilities.precision_modes)))


def check_run_config_kwargs(capabilities, kwargs, flags_of):
    """UserError naming the first keyword of ``kwargs`` the installed NPURunConfig lacks
    (``flags_of``: keyword -> the flag that asked for it), instead of its TypeError."""
    missing = sorted(set(kwargs) - capabilities.run_config_parameters)
    if missing:
        name = missing[0]
        raise UserError("the installed tf_adapter's NPURunConfig has no %r parameter, which "
                        "%s needs; leave that flag unset or update CANN and its tf_adapter"
                        % (name, flags_of.get(name, "this run")))


def keep_warning(capabilities, asked, folder):
    """The warning line when the installed NPUSaver keeps 5 checkpoints in ``folder``
    whatever ``asked`` (the Estimator's keep_checkpoint_max) says, else None."""
    if capabilities.keeps_checkpoint_max or asked == SAVER_DEFAULT_KEEP:
        return None
    return ("warning: the installed tf_adapter saves with NPUSaver() (before r1.14, and "
            "r2.1 / r3.x), which keeps the newest %d checkpoints in %s, not the %d asked for "
            "(--keep_checkpoint_max; 1 on ranks > 0): plan the disk for %d"
            % (SAVER_DEFAULT_KEEP, folder, asked, SAVER_DEFAULT_KEEP))
