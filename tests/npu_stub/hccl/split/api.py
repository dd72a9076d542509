"""Stand-in for CANN's hccl/split/api.py (HCCL's gradient split API; read in CANN's hcomm
sources, python/hccl/split/api.py, and its documentation): the same signatures and checks,
each call recorded as "hccl.set_split_strategy_by_size" / "_by_idx" instead of going to
libhcomm.so (HcomSetGradFusionBySize / ...ByIndex). Not emulated: the segments' effect on
the all-reduce, the limit of 8 segments (HCCL's, documented, not checked in Python), and
that the real module loads libhcomm.so when imported."""
from npu_bridge import record

MAX_GROUP_NAME_LEN = 127
MAX_VALUE_UINT32 = 4294967295


def _check_group(group):
    if not isinstance(group, str):
        raise ValueError("group must be a python str")
    if len(group) > MAX_GROUP_NAME_LEN:
        raise ValueError("group name len[{}] too long, Max len[{}].".format(
            len(group), MAX_GROUP_NAME_LEN))
    if len(group) == 0:
        raise ValueError("group name is empty.")


def set_split_strategy_by_idx(idxList, group="hccl_world_group"):
    _check_group(group)
    if not isinstance(idxList, list):
        raise ValueError("idxList must be a python list")
    if len(idxList) == 0:
        raise ValueError("idxList length is 0")
    for idx in idxList:
        if not isinstance(idx, int):
            raise ValueError("idx val[{}] in idxList is not python int type.".format(idx))
        if idx < 0 or idx > MAX_VALUE_UINT32:
            raise ValueError("idx val[{}] in idxList is an out-of-range value".format(idx))
    if not all(a < b for a, b in zip(idxList, idxList[1:])):
        raise ValueError("idx in idxList is not ascending")
    record("hccl.set_split_strategy_by_idx", idxList=list(idxList), group=group)


def set_split_strategy_by_size(dataSizeList, group="hccl_world_group"):
    _check_group(group)
    if not isinstance(dataSizeList, list):
        raise ValueError("dataSizeList must be a python list")
    if len(dataSizeList) == 0:
        raise ValueError("dataSizeList length is 0")
    for size in dataSizeList:
        if not isinstance(size, (int, float)):
            raise ValueError("dataSize val[{}] in dataSizeList is not python int or float "
                             "type.".format(size))
        if size < 0:
            raise ValueError("dataSize val[{}] in dataSizeList cannot be a negative "
                             "number.".format(size))
    if sum(dataSizeList) != 100:
        raise ValueError("size percentage list sum is not 100%")
    record("hccl.set_split_strategy_by_size", dataSizeList=list(dataSizeList), group=group)
