"""graph_cache: an imported training graph is the graph model_fn builds (ops, names,
collections, numbers after a step), the key follows what shapes the graph, and a bad,
unwritable or inapplicable cache only costs the shortcut."""
import functools
import logging
import os
import re

import numpy as np
import pytest

import env as env_lib
from tests.cli_helpers import run_python
from tests.conftest import ListHandler
from tests.run_helpers import model_fn_for
from tests.test_env_schedules import flag_values
from training import graph_cache, loop, resilience
from utils.tf_compat import tf


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from tests.ds_helpers import write_tiny_dataset
    return write_tiny_dataset(str(tmp_path_factory.mktemp("gc_ds")), num_classes=3,
                              per_class=4, size=32)


def tiny_env(dataset_dir, cache_dir, **overrides):
    settings = dict(dataset_dir=dataset_dir, max_train_steps=3, train_image_size=32,
                    batch_size=2, model_name="mobilenet_v2_035", seed=7,
                    moving_average_decay=0.99, device="cpu", graph_cache_dir=str(cache_dir))
    settings.update(overrides)
    return env_lib.load_env(flag_values(**settings), {})


def logged_model_fn(env):
    log = logging.getLogger("test_graph_cache")
    handler = ListHandler()
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    return model_fn_for(env, log), handler.lines


class Built(object):
    """What the Estimator builds for training, in its own graph: seed, global step and
    input first, then model_fn."""

    def __init__(self, model):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(model.env.seed)  # the RunConfig's tf_random_seed
            tf.train.create_global_step()
            self.iterator = tf.data.make_initializable_iterator(
                loop.train_input_fn(model.env)())
            features, labels = self.iterator.get_next()
            self.ops_before = set(op.name for op in self.graph.get_operations())
            self.spec = model(features, labels, tf.estimator.ModeKeys.TRAIN)
            self.watched = resilience.watched_tensors()

    def node_defs(self):
        """{name: NodeDef} of model_fn's ops, leaving out colocation hints on ops built
        before it (the cache cannot carry them; placement follows the resource anyway).
        The input pipeline's ops are the Estimator's, built afresh by every run."""
        nodes = {}
        for node in self.graph.as_graph_def().node:
            if node.name in self.ops_before:
                continue
            if "_class" in node.attr:
                hints = [h for h in node.attr["_class"].list.s
                         if h.decode()[len("loc:@"):] not in self.ops_before]
                del node.attr["_class"]
                if hints:
                    node.attr["_class"].list.s.extend(hints)
            nodes[node.name] = node
        return nodes

    def collections(self):
        def describe(item):
            if isinstance(item, tf.train.Saver):
                return item.saver_def.SerializeToString()
            return item.name
        return dict((key, [describe(i) for i in self.graph.get_collection(key)])
                    for key in self.graph.get_all_collection_keys())

    def one_step(self):
        """(loss of the first step, every variable's value after it)."""
        with self.graph.as_default(), tf.Session() as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer(),
                      self.iterator.initializer])
            loss, _ = sess.run([self.spec.loss, self.spec.train_op])
            names = sorted(v.op.name for v in tf.global_variables())
            values = sess.run(dict((v.op.name, v) for v in tf.global_variables()))
        return loss, [(n, values[n]) for n in names]


@pytest.fixture(scope="module")
def built_then_imported(dataset_dir, tmp_path_factory):
    # Synthetic input: the record pipeline's parallel reads vary the first batch.
    cache_dir = tmp_path_factory.mktemp("gc_cache")
    built_model, built_log = logged_model_fn(tiny_env(dataset_dir, cache_dir,
                                                 use_synthetic_data=True))
    built = Built(built_model)
    imported_model, imported_log = logged_model_fn(tiny_env(dataset_dir, cache_dir,
                                                       use_synthetic_data=True))
    imported = Built(imported_model)
    return built, built_log, imported, imported_log, cache_dir


@pytest.mark.slow
def test_the_second_graph_is_imported_and_equals_the_built_one(built_then_imported):
    built, built_log, imported, imported_log, cache_dir = built_then_imported
    assert any(l.startswith("graph cache: built the training graph") for l in built_log)
    assert any(l.startswith("graph cache: imported") for l in imported_log), imported_log
    assert len(os.listdir(str(cache_dir))) == 1
    ours, theirs = built.node_defs(), imported.node_defs()
    assert sorted(ours) == sorted(theirs)
    different = [name for name in ours if ours[name] != theirs[name]]
    assert different == [], different[:5]
    assert built.collections() == imported.collections()
    # The spec and the tensors DivergenceHook watches point at the same ops.
    assert imported.spec.train_op.name == built.spec.train_op.name
    assert imported.spec.loss.name == built.spec.loss.name
    assert len(built.spec.training_hooks) == len(imported.spec.training_hooks)
    assert imported.watched["loss"].name == built.watched["loss"].name


@pytest.mark.slow
def test_the_imported_graph_trains_to_the_same_numbers(built_then_imported):
    built, _, imported, _, _ = built_then_imported
    loss, weights = built.one_step()
    imported_loss, imported_weights = imported.one_step()
    assert np.isfinite(loss) and loss == imported_loss
    assert [n for n, _ in weights] == [n for n, _ in imported_weights]
    assert any(n.endswith("/ExponentialMovingAverage") for n, _ in weights)
    for (name, value), (_, imported_value) in zip(weights, imported_weights):
        np.testing.assert_array_equal(value, imported_value, err_msg=name)


def test_the_key_follows_what_shapes_the_graph(dataset_dir, tmp_path):
    base = tiny_env(dataset_dir, tmp_path)
    with tf.Graph().as_default() as graph:
        inputs = [tf.zeros([2, 32, 32, 3]), tf.zeros([2], tf.int32)]

        def key(env):
            return graph_cache.entry_key(graph_cache.settings_of(env), graph, inputs)
        same = key(base)
        # The loop around the graph does not matter...
        assert key(tiny_env(dataset_dir, tmp_path, train_dir=str(tmp_path / "other"),
                            log_every_n_steps=1, save_checkpoints_steps=1)) == same
        # ...every number the graph holds does, and so does the source.
        for change in (dict(learning_rate=0.05), dict(train_image_size=64),
                       dict(keep_checkpoint_max=2), dict(model_name="mobilenet_v2_050"),
                       dict(seed=None)):
            assert key(tiny_env(dataset_dir, tmp_path, **change)) != same, change
        # ...but the seed and the run's length, which an imported graph is set to.
        for change in (dict(seed=8), dict(max_train_steps=4)):
            assert key(tiny_env(dataset_dir, tmp_path, **change)) == same, change
        real = graph_cache._SOURCE_DIGEST[:]
        graph_cache._SOURCE_DIGEST[:] = ["an edited source tree"]
        try:
            assert key(base) != same
        finally:
            graph_cache._SOURCE_DIGEST[:] = real
        # The graph the Estimator built before model_fn (the input) is part of it.
        tf.constant(1, name="another_input_op")
        assert key(base) != same


@pytest.mark.slow
def test_another_seed_and_length_import_as_they_would_build(dataset_dir, tmp_path):
    """An entry stored by a run (seed 7, 3 steps) serves one with seed 9 and 40 steps:
    its graph, set to that seed and length, is the graph that run builds, node for node,
    and its first step gives the same numbers; a 40-step cosine schedule at step 1 is
    not the 3-step one."""
    cache = tmp_path / "cache"
    Built(logged_model_fn(tiny_env(dataset_dir, cache, use_synthetic_data=True))[0])
    other = dict(seed=9, max_train_steps=40, use_synthetic_data=True)
    model, log = logged_model_fn(tiny_env(dataset_dir, cache, **other))
    imported = Built(model)
    assert any(l.startswith("graph cache: imported") for l in log), log
    built = Built(logged_model_fn(tiny_env(dataset_dir, tmp_path / "fresh", **other))[0])
    ours, theirs = built.node_defs(), imported.node_defs()
    assert sorted(ours) == sorted(theirs)
    # Graph functions (tf.cond's branches) are numbered by the process: compare without.
    unnumbered = functools.partial(re.sub, r'(func {\s*name: "\w+?)_\d+"', r'\1"')
    assert [n for n in ours if unnumbered(str(ours[n])) != unnumbered(str(theirs[n]))] == []
    assert ours["lr_decay_span"].attr["value"].tensor.float_val == [40.0]
    seeds = set(n.attr["seed"].i for n in ours.values() if "seed" in n.attr)
    assert seeds == {9}  # every random op of model_fn follows the graph seed
    loss, weights = built.one_step()
    imported_loss, imported_weights = imported.one_step()
    assert loss == imported_loss
    for (name, value), (_, imported_value) in zip(weights, imported_weights):
        np.testing.assert_array_equal(value, imported_value, err_msg=name)


@pytest.mark.slow
def test_a_damaged_entry_is_removed_and_the_graph_built(dataset_dir, tmp_path):
    model, log = logged_model_fn(tiny_env(dataset_dir, tmp_path))
    Built(model)
    entry, = [os.path.join(str(tmp_path), n) for n in os.listdir(str(tmp_path))]
    with open(entry, "r+b") as handle:
        handle.truncate(1000)
    model, log = logged_model_fn(tiny_env(dataset_dir, tmp_path))
    built = Built(model)
    assert any(re.match(r"graph cache: .* is damaged \(.*\); removed, building", l)
               for l in log), log
    assert any(l.startswith("graph cache: built the training graph") for l in log)
    assert os.path.getsize(entry) > 1000  # stored again, whole
    assert built.spec.train_op.graph is built.graph


@pytest.mark.slow
def test_an_unwritable_cache_only_costs_the_shortcut(dataset_dir, tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text(u"not a folder")
    model, log = logged_model_fn(tiny_env(dataset_dir, blocked))
    built = Built(model)
    assert any(l.startswith("graph cache: cannot write %s" % blocked) for l in log), log
    assert "loss" in built.watched and built.spec.train_op is not None


def test_where_the_cache_does_not_apply(dataset_dir, tmp_path, npu_bridge):
    assert model_fn_for(tiny_env(dataset_dir, "")).graph_cache() is None
    env = tiny_env(dataset_dir, tmp_path, train_dir=str(tmp_path / "train"))
    model = model_fn_for(env)
    assert model.graph_cache() is not None
    # A warm start's initializers read its checkpoint: not while a fresh run warm-starts.
    assert model_fn_for(env, warm_start="/somewhere/model.ckpt-1").graph_cache() is None
    model.device.strategy = tf.distribute.OneDeviceStrategy("/cpu:0")  # model_fn per replica
    assert model.graph_cache() is None
    npu = model_fn_for(tiny_env(dataset_dir, tmp_path, device="npu"))
    assert not npu.device.train_graph_cacheable()


@pytest.mark.slow
def test_a_variable_made_after_model_fn_stops_the_run(dataset_dir, tmp_path):
    model, _ = logged_model_fn(tiny_env(dataset_dir, tmp_path))
    built = Built(model)
    hook, = [h for h in built.spec.training_hooks
             if isinstance(h, graph_cache.VariablesUnchangedHook)]
    with built.graph.as_default():
        hook.begin()  # nothing new: passes
        tf.Variable(1.0, name="made_later")
        with pytest.raises(RuntimeError, match="made_later"):
            hook.begin()


@pytest.mark.slow
def test_train_py_imports_the_graph_on_its_second_run(dataset_dir, tmp_path):
    """Two runs with the same settings into two train_dirs: the second imports the
    graph, starts from the same numbers and writes the same checkpoint names."""
    def train(name):
        train_dir = str(tmp_path / name)
        out = run_python("train.py", "--dataset_dir=" + dataset_dir, "--train_dir=" + train_dir,
                         "--model_name=mobilenet_v2_035", "--train_image_size=32",
                         "--batch_size=2", "--max_train_steps=2", "--seed=3",
                         "--log_every_n_steps=1", "--use_synthetic_data",
                         "--graph_cache_dir=" + str(tmp_path / "c"))
        assert out.returncode == 0, out.stderr[-3000:]
        first_loss = re.search(r"^step:1 .* loss:(\S+)", out.stdout + out.stderr, re.M)
        names = sorted(n for n, _ in tf.train.list_variables(train_dir))
        return out.stdout + out.stderr, first_loss.group(1), names

    first_log, first_loss, first_names = train("first")
    second_log, second_loss, second_names = train("second")
    assert "graph cache: built the training graph" in first_log
    assert "graph cache: imported the training graph" in second_log
    assert second_loss == first_loss
    assert second_names == first_names
