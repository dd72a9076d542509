"""GPU mixed precision pieces that run anywhere: the float16 rewrite switch, dynamic
loss scaling skipping an overflowing step, and the log counting the skips."""
import logging

import numpy as np

from devices import cluster, precision
import env as env_lib
from logger import TrainLoggerHook
from tests.conftest import ListHandler
from utils.tf_compat import tf


def gpu_env(**overrides):
    values = dict(device="gpu", rank_id=0, rank_size=1, local_replicas=1,
                  mixed_precision=True, loss_scale="dynamic")
    values.update(overrides)
    return env_lib.Env(**values)


def test_mixed_precision_turns_on_the_float16_rewrite():
    device = cluster.TfDevice.__new__(cluster.TfDevice)
    device.env = gpu_env()
    options = device.session_config().graph_options.rewrite_options
    assert options.auto_mixed_precision == options.ON
    device.env = gpu_env(mixed_precision=False)
    options = device.session_config().graph_options.rewrite_options
    assert options.auto_mixed_precision != options.ON


def test_overflowing_step_is_skipped_and_counted():
    with tf.Graph().as_default():
        weight = tf.Variable(2.0)
        scale_input = tf.placeholder(tf.float32, [])
        loss = weight * weight * scale_input
        global_step = tf.train.get_or_create_global_step()
        optimizer = precision.loss_scale_optimizer(
            tf.train.GradientDescentOptimizer(0.1), "dynamic")
        train_op = optimizer.minimize(loss, global_step=global_step)
        loss_scale = precision.current_loss_scale(optimizer)
        handler = ListHandler()
        log = logging.getLogger("precision_test")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        hook = TrainLoggerHook({"loss": loss, "loss_scale": loss_scale}, every_n_steps=2,
                               steps_per_epoch=10, max_steps=100, global_batch=1, logger=log)
        def read(fetches):  # past the hooks, which count every run as a training step
            return session.run_step_fn(lambda step_context: step_context.session.run(fetches))

        with tf.train.MonitoredSession(hooks=[hook]) as session:
            initial_scale = read(loss_scale)
            for value in [1.0, np.inf, 1.0, 1.0]:   # the second step overflows
                session.run(train_op, feed_dict={scale_input: value})
            steps, scale, w = read([global_step, loss_scale, weight])
    assert steps == 3                      # the overflowing run did not count
    assert scale == initial_scale / 2      # and halved the dynamic loss scale
    assert abs(w - 2.0 * 0.8 ** 3) < 1e-5  # three real steps of w -= 0.1 * 2w
    progress = [l for l in handler.lines if l.startswith("step:") and "loss:" in l]
    assert progress[-1].startswith("step:2 ") and "loss_scale:16384" in progress[-1]
    assert "overflow_skipped:1" in progress[-1]
