"""Start-up shortcut: the training graph an earlier run built, imported instead of rebuilt.

Building MobileNetV2's training graph in Python (model_fn: ~5,400 ops and 421 variables
with their gradients and optimizer updates; then the Scaffold's saver and readiness
checks) is the largest part of train.py's start-up that TensorFlow itself does not force:
~3.5 s of a 2-core CPU, where importing the same ops from a serialized MetaGraph takes
under 1 s. So a training run stores what its model_fn added to the graph, and the next
run with the same key imports those ops in its place: the same op and variable names
(checkpoints are interchangeable), the same op-level random seeds, the same collections.

The key covers this project's source files, the TensorFlow, tf-slim and Python versions,
the run's settings (Env) except those that only steer the loop around the graph, and the
graph the Estimator built before model_fn (input pipeline, global step). Anything else
is a different entry, but for the seed and the run's length (RUN_SETTINGS), which the
imported graph is set to: runs that differ only in them share one entry. The last KEEP_ENTRIES entries are kept; a missing, unreadable or
unusable entry means the graph is built as usual.

Where model_fn runs once on one device only (devices say so): not on Ascend, whose own
graph compiler and TF 1.15 stack take over from here, not under tf.distribute (model_fn
runs per replica inside the strategy), and not for a --restore_path warm start (its
initializers read that checkpoint).
"""
import collections
import hashlib
import json
import os
import sys
import time

from training import optimization
from utils.files import user_cache_dir
from utils.tf_compat import slim, tf

FORMAT = 2  # bump when what an entry holds changes
KEEP_ENTRIES = 8
SUFFIX = ".meta"
RECORD_KEY = "graph_cache_record"  # the entry's own collection, removed before import
# The checkout: this file is training/graph_cache.py.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Project packages whose Python never builds the training graph.
NOT_GRAPH_SOURCE = ("tests", "benchmarks")



class NotCacheable(Exception):
    """This graph holds something an entry cannot carry."""


def default_dir():
    """$XDG_CACHE_HOME/mobile-classifiers/train-graphs (~/.cache when unset)."""
    return user_cache_dir("train-graphs")


_SOURCE_DIGEST = []


def _source_files():
    """The project's top-level modules and its packages' (folders with __init__.py)
    modules, but not the tests' or benchmarks': never a data folder's files."""
    for folder, subfolders, files in os.walk(PROJECT_ROOT):
        subfolders[:] = sorted(
            d for d in subfolders
            if os.path.isfile(os.path.join(folder, d, "__init__.py"))
            and not (folder == PROJECT_ROOT and d in NOT_GRAPH_SOURCE))
        for name in sorted(f for f in files if f.endswith(".py")):
            yield os.path.join(folder, name)


def source_digest():
    """sha256 over the project's graph-building Python files (computed once)."""
    if not _SOURCE_DIGEST:
        digest = hashlib.sha256()
        for path in _source_files():
            digest.update(os.path.relpath(path, PROJECT_ROOT).encode("utf-8"))
            with open(path, "rb") as handle:
                digest.update(handle.read())
        _SOURCE_DIGEST.append(digest.hexdigest())
    return _SOURCE_DIGEST[0]


def _slim_version():
    """tf-slim's installed version, from its dist-info folder (no pkg_resources: slow)."""
    site = os.path.dirname(os.path.dirname(os.path.abspath(slim.__file__)))
    return sorted(n for n in os.listdir(site) if n.lower().startswith("tf_slim-"))


def _plain(value):
    """A value's stable description: plain data as itself, any other object (the dataset,
    the model's info) by its type, whose effect on the graph other settings carry."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return sorted((str(k), _plain(v)) for k, v in value.items())
    return type(value).__name__


# Settings an imported graph takes from the run that imports it instead of keying it:
# the graph-level seed (every random op's ``seed`` attribute holds it; its ``seed2`` is
# the op's place in the graph, the same in every build) and the run's length (the LR
# schedule's one named constant). Runs that differ only in them share an entry.
RUN_SETTINGS = ("seed", "max_train_steps")


def settings_of(env):
    """The Env settings that shape the training graph (env.FIELDS says which), but
    RUN_SETTINGS: whether the run is seeded stands for its seed."""
    return [(name, _plain(value)) for name, value in env.graph_settings()
            if name not in RUN_SETTINGS] + [("seeded", env.seed is not None)]


def run_values_of(env):
    """What an imported graph is set to for this run: {"seed": the graph-level seed,
    "constants": {Const op name: value}}."""
    return {"seed": env.seed,
            "constants": {optimization.DECAY_SPAN: optimization.decay_span(env)}}


def _set_run_values(graph_def, stored_seed, values):
    """Sets an entry's graph (``graph_def``, stored by a run seeded ``stored_seed``) to
    ``values`` (run_values_of); False when a named constant is not in it."""
    nodes = list(graph_def.node) + [n for f in graph_def.library.function
                                    for n in f.node_def]
    if values["seed"] != stored_seed:
        for node in nodes:
            if "seed" in node.attr and node.attr["seed"].i == stored_seed:
                node.attr["seed"].i = values["seed"]
    by_name = dict((node.name, node) for node in graph_def.node)
    for name, value in values["constants"].items():
        if name not in by_name or by_name[name].op != "Const":
            return False
        old = by_name[name].attr["value"].tensor
        by_name[name].attr["value"].tensor.CopyFrom(tf.make_tensor_proto(
            value, dtype=tf.as_dtype(old.dtype), shape=[d.size for d in old.tensor_shape.dim]))
    return True


def entry_key(settings, graph, inputs):
    """The hex key of the graph model_fn builds from ``inputs`` into ``graph``."""
    parts = [FORMAT, sys.version, tf.VERSION, tf.GIT_VERSION, _slim_version(),
             source_digest(), settings,
             [(op.name, op.type) for op in graph.get_operations()],
             [(t.name, t.dtype.name, str(t.shape)) for t in inputs]]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:40]


def add_scaffold_ops(keep_checkpoint_max):
    """The Scaffold's saver and readiness checks, built now so an entry carries them
    (Scaffold.finalize takes them from their collections instead of building its own):
    the saver the Estimator would add, and readiness over every variable."""
    if tf.get_collection(tf.GraphKeys.RESOURCES) or tf.get_collection(tf.GraphKeys.SAVERS):
        raise NotCacheable("the graph already has a saver or shared resources")
    tf.add_to_collection(tf.GraphKeys.SAVERS, tf.train.Saver(
        sharded=True, max_to_keep=keep_checkpoint_max, save_relative_paths=True))
    ready = tf.report_uninitialized_variables()
    tf.add_to_collection(tf.GraphKeys.READY_OP, ready)
    tf.add_to_collection(tf.GraphKeys.READY_FOR_LOCAL_INIT_OP, ready if not tf.local_variables()
                         else tf.report_uninitialized_variables(tf.global_variables()))


class VariablesUnchangedHook(tf.train.SessionRunHook):
    """The saver and readiness checks built with model_fn cover the variables that
    existed then: fail loudly if anything adds one before the session starts."""

    def __init__(self, names):
        self.names = names

    def begin(self):
        now = _variable_names()
        if sorted(now) != sorted(self.names):
            raise RuntimeError(
                "variables appeared after model_fn (%s), so the saver and readiness "
                "checks built with it miss them; run with --graph_cache_dir= (empty)"
                % ", ".join(sorted(set(now) - set(self.names))[:5]))


def _variable_names():
    return [v.op.name for v in tf.global_variables() + tf.local_variables()]


def _to_names(outputs):
    """{name: Tensor | Operation | {name: Tensor} | None} -> the same with graph names."""
    def name(item):
        if item is None:
            return None
        if isinstance(item, dict):
            return {k: name(v) for k, v in item.items()}
        kind = "op" if isinstance(item, tf.Operation) else "tensor"
        return [kind, item.name]
    return {k: name(v) for k, v in outputs.items()}


def _from_names(names, graph):
    def item(value):
        if value is None:
            return None
        if isinstance(value, dict):
            return {k: item(v) for k, v in value.items()}
        kind, name = value
        return (graph.get_operation_by_name(name) if kind == "op"
                else graph.get_tensor_by_name(name))
    return {k: item(v) for k, v in names.items()}


def _input_name(reference):
    """A GraphDef input ("op", "op:1", "^op") as (op name, tensor name or None)."""
    if reference.startswith("^"):
        return reference[1:], None
    op, _, index = reference.partition(":")
    return op, "%s:%s" % (op, index or "0")


Snapshot = collections.namedtuple("Snapshot", "ops functions counts")


def snapshot(graph):
    """The names of the graph's ops and functions and its collection sizes, now."""
    graph_def = graph.as_graph_def()
    return Snapshot(set(n.name for n in graph_def.node),
                    set(f.signature.name for f in graph_def.library.function),
                    dict((k, len(graph.get_collection(k)))
                         for k in graph.get_all_collection_keys()))


def _called(node):
    """Names of the graph functions a NodeDef calls (as its op or in func attributes)."""
    names = [node.op]
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names.extend(f.name for f in attr.list.func)
    return names


def _functions_used(nodes, library):
    """The library's functions ``nodes`` call, directly or through other functions."""
    by_name = dict((f.signature.name, f) for f in library.function)
    used, pending = set(), list(nodes)
    while pending:
        for name in _called(pending.pop()):
            if name in by_name and name not in used:
                used.add(name)
                pending.extend(by_name[name].node_def)
    return used


def _new_part(meta, graph, before):
    """Cuts ``meta`` (the whole graph) down to the nodes, functions and collection
    entries added since ``before``; returns the tensors it reads from before."""
    graph_def = meta.graph_def
    new_nodes = [n for n in graph_def.node if n.name not in before.ops]
    used = _functions_used(new_nodes, graph_def.library)
    if used & before.functions:
        raise NotCacheable("model_fn calls functions built before it")
    inputs = set()
    for node in new_nodes:
        for reference in node.input:
            op, tensor = _input_name(reference)
            if op in before.ops:
                if tensor is None:
                    raise NotCacheable("op %s waits on %s, built before model_fn"
                                       % (node.name, op))
                inputs.add(tensor)
        _drop_colocation_with(node, before.ops)
    del graph_def.node[:]
    graph_def.node.extend(new_nodes)
    library = graph_def.library
    functions = [f for f in library.function if f.signature.name in used]
    gradients = [g for g in library.gradient if g.function_name in used]
    library.Clear()
    library.function.extend(functions)
    library.gradient.extend(gradients)
    for key in list(meta.collection_def):
        kind = meta.collection_def[key].WhichOneof("kind")
        values = getattr(meta.collection_def[key], kind).value if kind else []
        if len(values) != len(graph.get_collection(key)):
            raise NotCacheable("collection %s did not serialize whole" % key)
        kept = list(values)[before.counts.get(key, 0):]
        if kept:
            del values[:]
            values.extend(kept)
        else:
            del meta.collection_def[key]
    for key in graph.get_all_collection_keys():
        if key not in meta.collection_def and \
                len(graph.get_collection(key)) > before.counts.get(key, 0):
            raise NotCacheable("collection %s does not serialize" % key)
    return sorted(inputs)


def _drop_colocation_with(node, ops_before):
    """Colocation hints naming ops built before model_fn (the optimizer's step increment
    with global_step) cannot be imported; placement follows the resource anyway."""
    if "_class" not in node.attr:
        return
    hints = node.attr["_class"].list.s
    kept = [h for h in hints if h.decode("utf-8")[len("loc:@"):] not in ops_before]
    if len(kept) == len(hints):
        return
    if kept:
        del hints[:]
        hints.extend(kept)
    else:
        del node.attr["_class"]


class GraphCache(object):
    """One folder of entries; ``train_graph`` builds or imports into the default graph.
    ``settings``: settings_of the run; ``run_values``: run_values_of it."""

    def __init__(self, directory, settings, run_values, keep_checkpoint_max, logger):
        self.directory = directory
        self.settings = settings
        self.run_values = run_values
        self.keep_checkpoint_max = keep_checkpoint_max
        self.logger = logger

    def train_graph(self, build, inputs):
        """The outputs of ``build()`` ({name: Tensor | Operation | {name: Tensor} |
        None}), built into the default graph or imported from an entry, with a hook
        list for the training run. ``inputs``: the tensors ``build`` reads."""
        graph = tf.get_default_graph()
        path = os.path.join(self.directory, entry_key(self.settings, graph, inputs) + SUFFIX)
        started = time.time()
        before = snapshot(graph)
        loaded = self._load(path, graph, before)
        if loaded is not None:
            outputs, names = loaded
            self.logger.info("graph cache: imported the training graph an earlier run built "
                             "in %.1f s (%s)" % (time.time() - started, path))
            return outputs, [VariablesUnchangedHook(names)]
        outputs = build()
        try:
            add_scaffold_ops(self.keep_checkpoint_max)
        except NotCacheable as reason:
            self.logger.info("graph cache: not stored (%s)" % reason)
            return outputs, []
        names = _variable_names()
        self._store(path, graph, before, outputs, names, started)
        return outputs, [VariablesUnchangedHook(names)]

    def _load(self, path, graph, before):
        """(outputs, variable names) imported from the entry at ``path``, or None."""
        try:
            with open(path, "rb") as handle:
                meta = tf.MetaGraphDef.FromString(handle.read())
            record = json.loads(meta.collection_def.pop(RECORD_KEY).bytes_list.value[0])
        except (IOError, OSError) as err:
            if os.path.exists(path):
                self.logger.info("graph cache: cannot read %s (%s); building the graph"
                                 % (path, err))
            return None
        except Exception as err:  # a damaged entry (protobuf / JSON errors): rebuild
            self.logger.info("graph cache: %s is damaged (%s: %s); removed, building the "
                             "graph" % (path, type(err).__name__, str(err)[:200]))
            _remove_quietly(path)
            return None
        try:
            input_map = dict((name, graph.get_tensor_by_name(name))
                             for name in record["inputs"])
        except (KeyError, ValueError):
            return None  # the graph before model_fn differs (the key should have said)
        if any(n.name in before.ops for n in meta.graph_def.node) or any(
                f.signature.name in before.functions for f in meta.graph_def.library.function):
            return None  # names taken: importing would rename ops
        if not _set_run_values(meta.graph_def, record["seed"], self.run_values):
            return None
        try:
            tf.train.import_meta_graph(meta, input_map=input_map, clear_devices=False)
        except Exception as err:  # TensorFlow's import errors come in several types
            if len(graph.get_operations()) != len(before.ops):
                raise  # half imported: building now would rename ops; nothing to save
            self.logger.info("graph cache: cannot import %s (%s: %s); removed, building "
                             "the graph" % (path, type(err).__name__, str(err)[:200]))
            _remove_quietly(path)
            return None
        try:
            os.utime(path, None)  # most recently used: kept longest
        except OSError:
            pass  # a read-only cache still serves
        return _from_names(record["outputs"], graph), record["variables"]

    def _store(self, path, graph, before, outputs, names, started):
        try:
            saver = graph.get_collection(tf.GraphKeys.SAVERS)[0]
            meta = tf.train.export_meta_graph(graph=graph, clear_devices=False,
                                              saver_def=saver.saver_def)
            inputs = _new_part(meta, graph, before)
        except NotCacheable as reason:
            self.logger.info("graph cache: not stored (%s)" % reason)
            return
        record = {"inputs": inputs, "outputs": _to_names(outputs), "variables": names,
                  "seed": self.run_values["seed"]}
        meta.collection_def[RECORD_KEY].bytes_list.value.append(
            json.dumps(record).encode("utf-8"))
        staged = "%s.%d.tmp" % (path, os.getpid())
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory)
            with open(staged, "wb") as handle:
                handle.write(meta.SerializeToString())
            os.replace(staged, path)  # a reader sees the old entry or the whole new one
        except (IOError, OSError) as err:
            _remove_quietly(staged)  # a full disk leaves no half entry behind
            self.logger.info("graph cache: cannot write %s (%s); later runs build the "
                             "graph afresh too" % (self.directory, err))
            return
        self._prune()
        self.logger.info("graph cache: built the training graph in %.1f s and stored it "
                         "for the next run with these settings (%s)"
                         % (time.time() - started, path))

    def _prune(self):
        entries = [os.path.join(self.directory, n) for n in os.listdir(self.directory)
                   if n.endswith(SUFFIX)]
        entries.sort(key=lambda p: _mtime(p), reverse=True)
        for stale in entries[KEEP_ENTRIES:]:
            _remove_quietly(stale)


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass
