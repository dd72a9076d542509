"""The device layer: the only package that knows npu_bridge, tf.distribute and precision.

placement  which device trains (auto | npu | gpu | cpu); which one the evaluator scores on
npu        Ascend: NPURunConfig, NPUEstimator, HCCL optimizer, loss scaling (npu_bridge)
npu_capabilities    what the installed tf_adapter supports, read from its signatures
npu_options         Ascend options from the flags: HCCL timeout, all-reduce split, profiler
ascend_environment  the vendor's variables that would steer a run (refused / cleared)
cluster    GPU / CPU: tf.distribute strategies from the host's GPUs or TF_CONFIG
precision  GPU mixed float16 with dynamic loss scaling
inference  the evaluator's session config: the host CPU, or the NPU (npu_bridge's fields)
launch     one process per device (no TensorFlow import)

This file imports nothing, so ``python -m devices.launch`` starts without TensorFlow.
"""
