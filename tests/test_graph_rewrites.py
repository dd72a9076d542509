"""The CPU session config's trimmed Grappler passes: which are off, and that training
steps compute the same numbers as under TensorFlow's default passes."""

import numpy as np
import pytest

from devices import cluster, graph_rewrites
import env as env_lib
from nets import nets_factory
from utils.tf_compat import tf


def device_config(device):
    tf_device = cluster.TfDevice.__new__(cluster.TfDevice)
    tf_device.env = env_lib.Env(device=device, mixed_precision=False)
    return tf_device.session_config()


def test_cpu_keeps_only_remapper_pruning_and_inlining():
    options = device_config("cpu").graph_options.rewrite_options
    for name in ("layout_optimizer", "constant_folding", "arithmetic_optimization",
                 "dependency_optimization", "loop_optimization",
                 "common_subgraph_elimination", "experimental_conditional_code_motion"):
        assert getattr(options, name) == options.OFF, name
    assert options.memory_optimization == options.NO_MEM_OPT
    assert options.meta_optimizer_iterations == options.ONE
    assert options.remapping != options.OFF and options.function_optimization != options.OFF
    assert not options.disable_model_pruning and not options.disable_meta_optimizer


def test_gpu_keeps_tensorflow_defaults():
    config = device_config("gpu")
    defaults = tf.ConfigProto().graph_options.rewrite_options
    assert config.graph_options.rewrite_options == defaults
    assert config.gpu_options.allow_growth


@pytest.mark.slow
def test_training_steps_match_the_default_passes():
    """Two sessions on one graph, same seeded initial weights and batch: three Momentum
    steps of a tiny MobileNetV2 give the same losses and weights."""
    rng = np.random.RandomState(0)
    images_value = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    labels_value = np.array([0, 1, 2, 1])
    with tf.Graph().as_default():
        tf.set_random_seed(3)
        network_fn = nets_factory.get_network_fn("mobilenet_v2_035", 3, is_training=True)
        logits, _ = network_fn(tf.constant(images_value))
        loss = tf.losses.sparse_softmax_cross_entropy(labels_value, logits)
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            train_op = tf.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
        weights = tf.trainable_variables()
        lean = graph_rewrites.lean_cpu_rewrites(tf.ConfigProto())
        results = []
        for config in (tf.ConfigProto(), lean):
            with tf.Session(config=config) as sess:
                sess.run(tf.global_variables_initializer())
                losses = [sess.run([loss, train_op])[0] for _ in range(3)]
                results.append((losses, sess.run(weights)))
    (default_losses, default_weights), (lean_losses, lean_weights) = results
    np.testing.assert_allclose(lean_losses, default_losses, rtol=1e-4)
    assert default_losses[0] != default_losses[2]  # the steps trained
    for variable, expected, got in zip(weights, default_weights, lean_weights):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5,
                                   err_msg=variable.op.name)
