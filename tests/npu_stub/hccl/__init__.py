"""Stand-in for CANN's hccl Python package (not part of tf_adapter; npu_bridge.npu_init
imports its split API): only hccl.split.api, which records the strategies it is given."""
