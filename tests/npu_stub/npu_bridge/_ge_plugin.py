"""Not in npu_bridge's Python: what tf_adapter's C++ side hands GE when the first NPU
session of a process starts, as far as the environment and NpuOptimizer's options decide
it (master, r1.15.0 and r3.2.0 agree; CM_CHIEF_IP is read from r1.11.0 on):

  ge.exec.deviceId           util/npu_attrs.cc GetEnvDeviceID: ASCEND_DEVICE_ID, else
                             DEVICE_ID (a physical id the driver maps to the logical one,
                             taken as equal here), else 0
  ge.exec.rankTableFile,     util/ge_plugin.cc GePlugin::Init: CM_CHIEF_IP with
  ge.exec.podName /          RANK_TABLE_FILE configures neither (an error in the log);
  ge.exec.rankId,            CM_CHIEF_IP alone the cluster-manager mode when CM_CHIEF_PORT
  ge.cmChiefIp ...           and CM_CHIEF_DEVICE are set and RANK_SIZE is not
                             (SetCmChiefWorkSizeEnv); RANK_TABLE_FILE alone the table
                             when CM_WORKER_SIZE is unset (SetRankTableFileEnv), the rank
                             identified by POD_NAME when set, else by RANK_ID
  ge.exec.isUseHcom          "1" once either is configured
  ge.jobType, ge.buildMode   npu_attrs.cc: the aoe_mode option, else AOE_MODE; ge_plugin.cc
                             builds in "tuning" mode when it is not empty
  ge.exec.hcclExecuteTimeOut npu_attrs.cc: the hccl_timeout option
  ge.op_compiler_cache_mode, npu_attrs.cc: the options as given (GE validates them)
  ge.op_compiler_cache_dir
  ge.exec.profilingMode,     npu_attrs.cc: profiling_mode, and profiling_options or,
  ge.exec.profilingOptions   given none, tf_adapter's default (r1.11.0 on)
  ge.exec.precision_mode     the precision_mode option when there is one

Recorded as "GePlugin.Init" each time NPUEstimator's model_fn runs (the real one
initialises once per process, at its first session).
"""
import os

from npu_bridge import record

PROFILING_DEFAULT_OPTIONS = (
    '{"output":"./","training_trace":"on","task_trace":"on","hccl":"on","aicpu":"on",'
    '"aic_metrics":"PipeUtilization","msproftx":"off"}')


def _text(params, name):
    return params[name].s.decode() if name in params else None


def init_options(params):
    """GE's initialisation options from the environment and NpuOptimizer's ``params``
    (the parameter_map of the session config); recorded, and returned."""
    options = {"ge.exec.deviceId": (os.getenv("ASCEND_DEVICE_ID", "")
                                    or os.getenv("DEVICE_ID", "") or "0")}
    options.update(_cluster_options())
    aoe = _text(params, "aoe_mode")
    if aoe is None:
        aoe = os.getenv("AOE_MODE", "")
    if aoe:
        options.update({"ge.jobType": aoe, "ge.buildMode": "tuning"})
    if "hccl_timeout" in params:
        options["ge.exec.hcclExecuteTimeOut"] = str(params["hccl_timeout"].i)
    for name in ("op_compiler_cache_mode", "op_compiler_cache_dir"):
        if name in params:
            options["ge." + name] = _text(params, name)
    if "profiling_mode" in params and params["profiling_mode"].b:
        options["ge.exec.profilingMode"] = "1"
        options["ge.exec.profilingOptions"] = (_text(params, "profiling_options")
                                               or PROFILING_DEFAULT_OPTIONS)
    if "precision_mode" in params:
        options["ge.exec.precision_mode"] = _text(params, "precision_mode")
    record("GePlugin.Init", **options)
    return options


def _cluster_options():
    chief_ip, table = os.getenv("CM_CHIEF_IP", ""), os.getenv("RANK_TABLE_FILE", "")
    if chief_ip and table:
        return {"ge.exec.isUseHcom": "0"}  # "cannot be configured at the same time"
    if chief_ip:
        if (os.getenv("CM_CHIEF_PORT") and os.getenv("CM_CHIEF_DEVICE")
                and os.getenv("RANK_SIZE") is None):
            return {"ge.exec.isUseHcom": "1", "ge.cmChiefIp": chief_ip,
                    "ge.cmChiefPort": os.getenv("CM_CHIEF_PORT"),
                    "ge.cmChiefWorkerDevice": os.getenv("CM_CHIEF_DEVICE")}
        return {"ge.exec.isUseHcom": "0"}
    if table and os.getenv("CM_WORKER_SIZE") is None:
        options = {"ge.exec.isUseHcom": "1", "ge.exec.rankTableFile": table}
        if os.getenv("POD_NAME", ""):
            options["ge.exec.podName"] = os.getenv("POD_NAME")
        elif os.getenv("RANK_ID", ""):
            options["ge.exec.rankId"] = os.getenv("RANK_ID")
        return options
    return {"ge.exec.isUseHcom": "0"}
