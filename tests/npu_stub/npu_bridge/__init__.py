"""Test stand-in for Ascend's npu_bridge (tf_adapter), which installs only in the vendor's
TF 1.15 image. It keeps the real package's module paths, class names, parameters and
defaults, and the host-side behaviours that change what a training run does (the hooks
NPUEstimator adds, the iterations_per_loop loop, NPURunConfig's checks, loss scaling), then
runs on the CPU. tests/npu_stub/README.md lists each behaviour with the source file and
branch of Ascend/tensorflow it follows, and what cannot be emulated here.

It records what the pipeline passes to each API in ``RECORDS`` (and, when NPU_STUB_RECORD
names a file, appends them there as JSON lines for subprocess tests).

NPU_STUB_BRANCH picks the tf_adapter release to follow where they differ: ``master`` (the
default; r1.15.0 is the same in everything emulated here), ``r3.2.0``, or ``r1.11.0``
(emulated only where this pipeline reads it: NPURunConfig's signature and its AOE_MODE
rule, NPUSaver, the default and the accepted precision modes; elsewhere as r3.2.0). The
branch is read when a module is imported (signatures) and when called (behaviour): set it
before importing npu_bridge's modules.

NPU_STUB_HCCL_PORT, with RANK_SIZE > 1, makes the rank processes of one job exchange their
tensors for real in every HCCL collective (hccl/_exchange.py); without it one process
plays every rank.
"""
import json
import os

RECORDS = []

BRANCHES = ("master", "r1.15.0", "r3.2.0", "r1.11.0")


def branch():
    """The tf_adapter branch the stand-in follows (r1.15.0 behaves as master here)."""
    name = os.environ.get("NPU_STUB_BRANCH", "master")
    if name not in BRANCHES:
        raise ValueError("NPU_STUB_BRANCH=%s: one of %s" % (name, ", ".join(BRANCHES)))
    return "master" if name == "r1.15.0" else name


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
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "stub_arguments"):
        return {"type": type(value).__name__, "arguments": value.stub_arguments}
    return type(value).__name__
