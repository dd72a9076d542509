"""The vendor's environment variables that would steer an Ascend run behind the flags.

Ascend machines and schedulers (ModelArts, Volcano jobs, model-zoo shell scripts) often
export variables that npu_bridge (tf_adapter) reads on its own. Each one below changes
what a run does without any flag saying so; where it is read (Ascend/tensorflow,
master, r1.15.0 and r3.2.0 alike unless said):

  RESTORE_FROM          estimator/npu/npu_estimator.py, NPUEstimator.__init__: without
                        warm_start_from (we never pass one), tf.estimator warm-starts a
                        model_dir that holds no checkpoint from it; set but empty, the
                        constructor fails (tf.estimator refuses an empty warm-start path)
  LOCAL_CHECKPOINT_DIR  estimator/npu/npu_common.py, NPUBasics (the job read from the
                        environment): the same warm start, ahead of RESTORE_FROM
  AOE_MODE              util/npu_attrs.cc (no aoe_mode option given): GE compiles every
                        graph in AOE tuning mode (ge.jobType; util/ge_plugin.cc sets
                        ge.buildMode=tuning); r1.8.0-r1.11.0's NPURunConfig also turns
                        iterations_per_loop into 1 when it is set at all
  CM_CHIEF_IP           util/ge_plugin.cc, GePlugin::Init (r1.11.0 on): with
                        RANK_TABLE_FILE it logs an error and configures neither, so HCCL
                        gets no rank table; without one, with RANK_SIZE unset, it starts
                        the cluster-manager mode (CM_CHIEF_PORT, CM_CHIEF_DEVICE,
                        CM_WORKER_IP, CM_WORKER_SIZE), which this trainer does not use
  CM_WORKER_SIZE        estimator/npu/util.py get_ranksize: counts the ranks when
                        RANK_SIZE is unset, a ValueError beside it; ge_plugin.cc
                        SetRankTableFileEnv hands GE no rank table while it is set
  CM_WORK_SIZE          get_ranksize's reading on r1.11.0 and r3.1.0 (a misspelling)
  POD_NAME              ge_plugin.cc SetRankTableFileEnv: with RANK_TABLE_FILE, GE is
                        given POD_NAME (ge.exec.podName) instead of RANK_ID as this
                        process's identity in the table (npu_common.py makes it the
                        device index too)

CM_CHIEF_PORT, CM_CHIEF_DEVICE and CM_WORKER_IP are read only once CM_CHIEF_IP is set.

train.py refuses them (check_npu_environment, one line naming the variable and the fix),
since its environment is the user's to change; python -m devices.launch, which makes
each rank's environment itself, clears them for its ranks and says so, one line each.

The device: tf_adapter takes ASCEND_DEVICE_ID, and DEVICE_ID only when that is unset
(util/npu_attrs.cc GetEnvDeviceID; DEVICE_ID is a physical id it maps to the logical
one). Two that differ are refused unless ASCEND_VISIBLE_DEVICES renumbers the devices.

Standard library only: the launcher imports it without TensorFlow.
"""
import collections

# (name, applies(environ), what it does, how to do without it).
Variable = collections.namedtuple("Variable", "name applies effect instead")

CLUSTER_MANAGER = ("CM_CHIEF_IP", "CM_CHIEF_PORT", "CM_CHIEF_DEVICE", "CM_WORKER_IP",
                   "CM_WORKER_SIZE")


def _set(name):
    return lambda environ: name in environ


def _non_empty(name):
    return lambda environ: bool(environ.get(name))


def _with_rank_table(name):
    return lambda environ: bool(environ.get(name)) and bool(environ.get("RANK_TABLE_FILE"))


# RESTORE_FROM and LOCAL_CHECKPOINT_DIR do the same (npu_common.py reads either).
_WARM_START = ("npu_bridge's NPUEstimator would warm-start every rank whose model_dir holds "
               "no checkpoint from it, over --restore_path or a fresh start",
               "to fine-tune from a checkpoint pass --restore_path=CHECKPOINT")

VARIABLES = (
    Variable("RESTORE_FROM", _set("RESTORE_FROM"),
             *_WARM_START),
    Variable("LOCAL_CHECKPOINT_DIR", _non_empty("LOCAL_CHECKPOINT_DIR"),
             *_WARM_START),
    Variable("AOE_MODE", _set("AOE_MODE"),
             "tf_adapter would compile every graph in AOE tuning mode instead of training "
             "(and before r1.12 run one step per loop whatever --iterations_per_loop says)",
             "tune with CANN's aoe tool in a run of its own"),
    Variable("CM_CHIEF_IP", _non_empty("CM_CHIEF_IP"),
             "beside RANK_TABLE_FILE tf_adapter would configure neither and give HCCL no "
             "rank table (without one, and without RANK_SIZE, it starts its cluster-manager "
             "mode); this trainer's ranks come from RANK_SIZE and the rank table",
             "and the other CM_* variables"),
    Variable("CM_WORKER_SIZE", _set("CM_WORKER_SIZE"),
             "npu training counts its ranks from RANK_SIZE; npu_bridge refuses the two "
             "together and tf_adapter gives HCCL no rank table beside it",
             "set RANK_SIZE"),
    Variable("CM_WORK_SIZE", _set("CM_WORK_SIZE"),
             "npu training counts its ranks from RANK_SIZE; npu_bridge r1.11 and r3.1 read "
             "this name for CM_WORKER_SIZE and refuse it beside RANK_SIZE",
             "set RANK_SIZE"),
    Variable("POD_NAME", _with_rank_table("POD_NAME"),
             "with RANK_TABLE_FILE tf_adapter gives HCCL this name (ge.exec.podName) "
             "instead of RANK_ID as this process's identity in the rank table",
             "python -m devices.launch clears it for the ranks it starts"),
)

# What the launcher clears for its ranks: every variable above, and the rest of the
# cluster manager's (inert without CM_CHIEF_IP, but part of the same setup).
CLEARED = tuple(v.name for v in VARIABLES) + tuple(
    name for name in CLUSTER_MANAGER if name not in set(v.name for v in VARIABLES))


def refusals(environ):
    """One line per variable of VARIABLES that ``environ`` sets to effect: what it would
    do and how to fix it (train.py stops on the first)."""
    return ["%s=%s is set: %s; unset %s (%s)" % (v.name, environ[v.name], v.effect, v.name,
                                                  v.instead)
            for v in VARIABLES if v.applies(environ)]


def device_id_problem(environ):
    """A line when ASCEND_DEVICE_ID and DEVICE_ID name different devices (and
    ASCEND_VISIBLE_DEVICES does not renumber them), else None."""
    ascend, plain = environ.get("ASCEND_DEVICE_ID", ""), environ.get("DEVICE_ID", "")
    if not ascend or not plain or ascend.strip() == plain.strip():
        return None
    if environ.get("ASCEND_VISIBLE_DEVICES", "").strip():
        return None  # DEVICE_ID physical, ASCEND_DEVICE_ID logical: they may differ
    return ("ASCEND_DEVICE_ID=%s and DEVICE_ID=%s name different devices: tf_adapter "
            "trains on ASCEND_DEVICE_ID and ignores DEVICE_ID; set both to the same device "
            "or unset one" % (ascend, plain))


def problems(environ):
    """Every line refusals and device_id_problem find, in that order."""
    found = refusals(environ)
    device = device_id_problem(environ)
    return found + ([device] if device else [])


def without_vendor_variables(environ):
    """(a copy of ``environ`` without the CLEARED variables, one line per variable
    removed): the launcher's ranks get the copy."""
    kept = dict(environ)
    lines = []
    effects = dict((v.name, v.effect) for v in VARIABLES)
    for name in CLEARED:
        if name not in kept:
            continue
        value = kept.pop(name)
        effect = effects.get(name, "read by tf_adapter's cluster-manager mode with "
                                   "CM_CHIEF_IP, which this trainer does not use")
        lines.append("launcher: cleared %s=%s for the ranks: %s" % (name, value, effect))
    return kept, lines
