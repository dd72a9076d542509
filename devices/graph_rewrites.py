"""Grappler (TensorFlow's graph optimizer) on CPU: only the passes that pay there.

A session runs Grappler over the whole graph the first time it runs each new set of
fetches, and a training start runs about ten (variable initialization, the ready checks,
the finite-weights check, saves, the train step). For MobileNetV2's ~9,000-node training
graph the default passes took ~2 s of a 2-core CPU's start-up in a three-run loop, the
train step's run alone ~1.1 s; these passes take ~0.35 s there.

Measured on that CPU (benchmarks/grappler_ab.py: sessions on one graph, their steps
alternated; benchmarks/README.md "Grappler"): the remapper alone (it swaps in fused
oneDNN kernels) trains about as fast as every pass together (step time 0.94-1.11x of the
default's over five runs, median 1.005, on a host whose speed drifts +-10%). Layout,
constant folding, arithmetic, dependency, memory and loop optimization cost their time
on every first run and gained nothing measurable on CPU. Function inlining stays on: it
is cheap, and networks built from tf.function or functional control flow need it. GPU
keeps TensorFlow's defaults (its layout optimizer converts NHWC to NCHW, and mixed
precision is a pass).
"""

_CPU_PASSES_OFF = ("layout_optimizer", "constant_folding", "shape_optimization",
                   "common_subgraph_elimination", "arithmetic_optimization",
                   "dependency_optimization", "loop_optimization", "debug_stripper",
                   "pin_to_host_optimization", "implementation_selector",
                   # TF 2.x only (TFG's control-flow sinking); absent from TF 1.15.
                   "experimental_conditional_code_motion")


def lean_cpu_rewrites(session_config):
    """Leaves on only the remapper, model pruning and function inlining, one round."""
    options = session_config.graph_options.rewrite_options
    fields = options.DESCRIPTOR.fields_by_name
    for name in _CPU_PASSES_OFF:
        if name in fields:
            setattr(options, name, options.OFF)
    options.memory_optimization = options.NO_MEM_OPT
    options.meta_optimizer_iterations = options.ONE
    return session_config
