"""--deterministic (issue 34): two runs of one command write bit-identical checkpoints,
augmentation on; what makes them so (every random op of the input pipeline seeded, one
input thread) and what it asks of the devices."""
import os

import numpy as np
import pytest

from dataloader import data_provider
from datasets import dataset_factory
import env as env_lib
from tests.cli_helpers import run_python, single_error_line
from tests.test_devices_npu import model_fn_for, npu_env, records
from tests.test_env_schedules import flag_values
from utils.errors import UserError
from utils.tf_compat import tf

# Ops that draw from a generator of their own, seeded by their seed / seed2 attributes;
# both 0 means "unseeded": a fresh draw in every run.
RANDOM_OPS = ("RandomUniform", "RandomUniformInt", "RandomStandardNormal",
              "TruncatedNormal", "RandomShuffle", "SampleDistortedBoundingBox",
              "SampleDistortedBoundingBoxV2")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 classes of 16 training images, 48 px, in 2 shards."""
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("det_ds")), num_classes=3,
                              per_class=16, size=48, train_shards=2, validation_shards=1)


def _training_batches(dataset, preprocessing_name, seed, count=3):
    """The first ``count`` training batches (images) of the pipeline seeded ``seed``,
    in a fresh graph (graph-level seed too, as the Estimator sets it), and the seeds of
    every random op in it: [(op type, seed, seed2)]."""
    spec = dataset_factory.get_dataset("auto", dataset)
    input_fn = data_provider.make_input_fn(spec, "train", True, 8, 32,
                                           preprocessing_name=preprocessing_name, seed=seed,
                                           num_threads=1)
    with tf.Graph().as_default() as graph:
        tf.set_random_seed(seed)
        images, _ = tf.data.make_one_shot_iterator(input_fn()).get_next()
        graph_def = graph.as_graph_def()
        with tf.Session() as sess:
            batches = [sess.run(images) for _ in range(count)]
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    seeds = [(n.op, n.attr["seed"].i, n.attr["seed2"].i) for n in nodes if n.op in RANDOM_OPS]
    return batches, seeds


@pytest.mark.parametrize("preprocessing_name", ("inception", "cifar"))
def test_every_augmentation_op_is_seeded_and_the_batches_repeat(dataset, preprocessing_name):
    """The inception-style crop sits in a tf.cond branch whose graph does not inherit
    the graph-level seed: unseeded it drew differently in every run. Seeded, every
    random op has a seed, two pipelines give the same batches, another seed others."""
    first, seeds = _training_batches(dataset, preprocessing_name, 5)
    again, _ = _training_batches(dataset, preprocessing_name, 5)
    other, _ = _training_batches(dataset, preprocessing_name, 6)
    kinds = sorted(set(op for op, _, _ in seeds))
    crop = "SampleDistortedBoundingBoxV2" if preprocessing_name == "inception" else "RandomUniformInt"
    assert crop in kinds and "RandomUniform" in kinds, kinds  # the crop and the flip
    assert all(seed or seed2 for _, seed, seed2 in seeds), seeds
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def _env(dataset, **overrides):
    values = dict(dataset_dir=dataset, model_name="mobilenet_v2_035", train_image_size=32,
                  batch_size=8, max_train_steps=6, train_dir="/nonexistent/train_dir")
    values.update(overrides)
    return env_lib.load_env(flag_values(**values), {})


def test_deterministic_seeds_and_reads_on_one_thread(dataset):
    env = _env(dataset, deterministic=True)
    assert (env.seed, env.data_threads) == (0, 1)
    assert env.describe().endswith("; deterministic (seed 0, one input thread)")
    assert (_env(dataset, deterministic=True, seed=7, data_threads=1).seed) == 7
    plain = _env(dataset)
    assert (plain.seed, plain.data_threads, plain.deterministic) == (None, None, False)
    with pytest.raises(UserError) as raised:
        _env(dataset, deterministic=True, data_threads=3)
    assert str(raised.value) == (
        "--deterministic reads and augments records on one thread (its random crops and "
        "flips would otherwise reach the images in a varying order); drop --data_threads=3")


def test_deterministic_on_ascend_asks_ge_for_deterministic_kernels(npu_bridge, npu_dataset,
                                                                   tmp_path):
    from estimator_impl import estimator_model_fn
    for deterministic in (False, True):
        npu_bridge.RECORDS[:] = []
        env = npu_env(npu_dataset, tmp_path / "train", {}, deterministic=deterministic)
        model = model_fn_for(env)
        model.device.build_estimator(estimator_model_fn(model))
        config, = records(npu_bridge, "NPURunConfig")
        assert config.get("deterministic") == (1 if deterministic else None)
        assert config["tf_random_seed"] == (0 if deterministic else None)


def _checkpoint_values(train_dir, step=None):
    path = (tf.train.latest_checkpoint(train_dir) if step is None
            else os.path.join(train_dir, "model.ckpt-%d" % step))
    reader = tf.train.load_checkpoint(path)
    return path, dict((name, reader.get_tensor(name))
                      for name, _ in tf.train.list_variables(path))


@pytest.mark.slow
def test_two_deterministic_runs_write_bit_identical_checkpoints(dataset, tmp_path):
    """train.py --deterministic twice, inception-style crops and flips on (the
    defaults), weight moving averages, 12 steps: every variable of the two final
    checkpoints equal bit for bit, and of their step-0 checkpoints (a deterministic run
    keeps its starting weights); a third run seeded otherwise differs (the seed reaches
    the weights: the randomness is real, and seeded)."""
    def train(name, *flags):
        train_dir = str(tmp_path / name)
        out = run_python("train.py", "--dataset_dir=" + dataset, "--train_dir=" + train_dir,
                         "--model_name=mobilenet_v2_035", "--train_image_size=32",
                         "--batch_size=8", "--max_train_steps=12", "--learning_rate=0.05",
                         "--moving_average_decay=0.99", "--deterministic", *flags)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "deterministic (seed %s, one input thread)" % (
            flags[0].split("=")[1] if flags else "0") in out.stderr + out.stdout
        return _checkpoint_values(train_dir)
    first_path, first = train("first")
    second_path, second = train("second")
    starts = [_checkpoint_values(os.path.dirname(path), 0)[1]
              for path in (first_path, second_path)]
    assert [name for name in starts[0]
            if not np.array_equal(starts[0][name], starts[1][name])] == []
    assert not np.array_equal(starts[0]["MobilenetV2/Conv/weights"],
                              first["MobilenetV2/Conv/weights"])  # it trained
    assert first_path.endswith("model.ckpt-12") and second_path.endswith("model.ckpt-12")
    assert sorted(first) == sorted(second)
    assert len(first) > 400  # weights, batch-norm statistics, momenta, averages
    assert [name for name in first if not np.array_equal(first[name], second[name])] == []
    _, reseeded = train("reseeded", "--seed=1")
    changed = [name for name in first if not np.array_equal(first[name], reseeded[name])]
    assert len(changed) > 0.9 * len(first)


def test_deterministic_with_several_input_threads_stops_in_one_line(dataset, tmp_path):
    out = run_python("train.py", "--dataset_dir=" + dataset,
                     "--train_dir=" + str(tmp_path / "train"), "--model_name=mobilenet_v2_035",
                     "--max_train_steps=2", "--deterministic", "--data_threads=2")
    assert single_error_line(out) == (
        "error: --deterministic reads and augments records on one thread (its random crops "
        "and flips would otherwise reach the images in a varying order); drop "
        "--data_threads=2")
    assert not os.path.exists(str(tmp_path / "train" / "checkpoint"))
