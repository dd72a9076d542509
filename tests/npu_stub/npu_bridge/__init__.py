"""Test stand-in for Ascend's npu_bridge (tf_adapter), which installs only in the vendor's
image. It records what the pipeline passes to each API in ``RECORDS`` (and, when
NPU_STUB_RECORD names a file, appends them there as JSON lines for subprocess tests),
then behaves like plain TensorFlow on the CPU so a run still trains end to end.
No HCCL: the distributed optimizer and the broadcast hook only record.
"""
import json
import os

RECORDS = []


def record(api, **arguments):
    entry = {"api": api, "arguments": {k: _plain(v) for k, v in arguments.items()}}
    RECORDS.append(entry)
    path = os.environ.get("NPU_STUB_RECORD")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "stub_arguments"):
        return {"type": type(value).__name__, "arguments": value.stub_arguments}
    return type(value).__name__
