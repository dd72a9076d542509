"""Stand-in for npu_bridge/estimator/npu/npu_common.py: the job information NPUEstimator
and the all-reduce read once per process (master, r1.15.0 and r3.2.0 are the same).

Without a job start file (NPUEstimator's job_start_file, default ''), the job comes from
the environment: JOB_ID must be set (else there is no job and NPUEstimator refuses to
start), the device index is POD_NAME, else RANK_ID, and the rank count util.get_ranksize().
"""
import json
import logging
import os

from npu_bridge.estimator.npu import util

_log = logging.getLogger("npu_bridge")


class DeviceInfo(object):
    def __init__(self, index="0", server_id="123456", dev_index=1):
        self._index = index
        self._server_id = server_id
        self._dev_index = dev_index
        self._root_rank = 0

    def is_master_node(self):
        return self._index == self._root_rank


class JobInfo(object):
    def __init__(self, job_id=0, device_info=None, rank_table_file=None,
                 local_checkpoint_dir=None, rank_size=1):
        self._job_id = job_id
        self._device_info = device_info
        self._rank_table_file = rank_table_file
        self._local_checkpoint_dir = local_checkpoint_dir
        self._rank_size = rank_size


class NPUBasics(object):
    """One per process: the first construction reads the job; later ones (whatever file
    they name) return the same object."""
    _instance = None

    def __new__(cls, file_name):
        if cls._instance is None:
            cls._instance = object.__new__(cls)
            cls._instance._job_info = _read_job_info(file_name)
        return cls._instance

    @property
    def jobinfo(self):
        return self._job_info

    def size(self):
        return self._job_info._rank_size


def _read_job_info(file_name):
    try:
        with open(file_name, "r") as handle:
            data = json.load(handle)
    except IOError:
        _log.warning("Warning:job config file does not exist")
        return _job_from_environment()
    device = data.get("device_info")
    util.check_not_none(device, "device_info")
    index = device.get("Index", None)
    util.check_nonnegative_integer(index, "Index")
    util.check_not_none(data.get("rank_table_file", None), "rank_table_file")
    util.check_positive_integer(data.get("rank_size", None), "rank_size")
    return JobInfo(device_info=DeviceInfo(index=str(index)),
                   rank_table_file=data["rank_table_file"],
                   local_checkpoint_dir=data.get("local_checkpoint_dir", None),
                   rank_size=data["rank_size"])


def _job_from_environment():
    job_id = os.getenv("JOB_ID", "")
    if job_id == "":
        _log.error("Error:can not get job config from env")
        return None
    identity = os.getenv("POD_NAME", "") or os.getenv("RANK_ID", "")
    rank_size = util.get_ranksize()
    if not rank_size.isdigit():
        rank_size = 1
    return JobInfo(job_id=job_id, device_info=DeviceInfo(index=str(identity)),
                   rank_table_file=os.getenv("RANK_TABLE_FILE", ""),
                   local_checkpoint_dir=os.getenv("LOCAL_CHECKPOINT_DIR", ""),
                   rank_size=int(rank_size))
