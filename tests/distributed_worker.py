"""One worker of the data-parallel equivalence test (tests/test_distributed.py).

Trains a small conv net without batch norm (whose per-replica statistics would make
replicas legitimately differ) through the project's device layer for a few momentum
steps on fixed data: this rank's slice of 2*B images when TF_CONFIG names two workers,
all of them otherwise. Rank 0 then writes the trained weights to <model_dir>/weights.npz.

  python tests/distributed_worker.py MODEL_DIR PER_REPLICA_BATCH STEPS
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import env as env_lib  # noqa: E402
from devices import cluster  # noqa: E402
from devices.ranks import rank_info_from_environ  # noqa: E402
from training import optimization  # noqa: E402
from logger import get_logger  # noqa: E402
from utils.tf_compat import tf, slim  # noqa: E402


def make_model_fn(device, env):
    def model_fn(features, labels, mode):
        return build(features, labels, mode, device, env)
    return model_fn


def fixed(shape, seed):
    """Initial weights from numpy, so both runs start equal whatever TF's op seeds."""
    values = np.random.RandomState(seed).normal(0, 0.3, size=shape).astype(np.float32)
    return tf.constant_initializer(values)


def build(features, labels, mode, device, env):
    net = slim.conv2d(features, 8, [3, 3], stride=2, scope="conv",
                      weights_initializer=fixed([3, 3, 3, 8], 1),
                      weights_regularizer=slim.l2_regularizer(1e-3))
    net = tf.reduce_mean(net, axis=[1, 2])
    logits = slim.fully_connected(net, 4, activation_fn=None, scope="logits",
                                  weights_initializer=fixed([8, 4], 2))
    tf.losses.sparse_softmax_cross_entropy(labels, logits)
    total_loss = tf.losses.get_total_loss()
    optimizer = device.wrap_optimizer(optimization.build_optimizer(env, 0.1))
    train_op = optimizer.minimize(total_loss, global_step=tf.train.get_or_create_global_step())
    return tf.estimator.EstimatorSpec(mode, loss=total_loss, train_op=train_op)


def main(model_dir, batch, steps):
    ranks = rank_info_from_environ(os.environ)
    rng = np.random.RandomState(7)
    images = rng.uniform(-1, 1, size=(2 * batch, 16, 16, 3)).astype(np.float32)
    labels = (np.arange(2 * batch) % 4).astype(np.int32)
    per_rank = 2 * batch // ranks.rank_size
    start = ranks.rank_id * per_rank

    def input_fn(input_context=None):
        return tf.data.Dataset.from_tensor_slices(
            (images[start:start + per_rank], labels[start:start + per_rank])
        ).batch(per_rank).repeat()

    env = env_lib.Env(
        device="cpu", rank_id=ranks.rank_id, rank_size=ranks.rank_size, local_replicas=1,
        mixed_precision=False, loss_scale=None, train_dir=model_dir, seed=1,
        log_every_n_steps=1, save_checkpoints_steps=steps, save_checkpoints_secs=None,
        keep_checkpoint_max=1, restore_checkpoint=None, optimizer_name="momentum",
        momentum=0.9, deterministic=False)
    device = cluster.TfDevice(env, get_logger())
    estimator = device.build_estimator(make_model_fn(device, env))
    device.train(estimator, input_fn, steps)
    if ranks.rank_id == 0:
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
        np.savez(os.path.join(model_dir, "weights.npz"),
                 **{name.replace("/", "."): reader.get_tensor(name)
                    for name in ("conv/weights", "conv/biases", "logits/weights")})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
