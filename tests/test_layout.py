"""The shape of the codebase (README, Layout): entry points and the design's three modules at
the root, every library in a package of its role, imports pointing downward only, no
import cycle, and the device layer alone touching npu_bridge and tf.distribute."""
import ast
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from tests.cli_helpers import ROOT

ENTRY_POINTS = ("train", "eval_image_classifier_mobilenet", "export_model", "predict")
# Lowest first. A module may import its own package and anything in a lower layer;
# packages sharing a layer stay independent of each other.
LAYERS = (
    ("utils",),
    ("quantization",),
    ("nets", "dataloader", "rank_tables"),
    ("datasets",),
    ("devices",),
    ("evaluation",),
    ("training",),
    ("export",),
    ("logger",),
    ("env",),
    ("estimator_impl",),
    ENTRY_POINTS,
)
LAYER_OF = dict((unit, rank) for rank, units in enumerate(LAYERS) for unit in units)
NOT_LIBRARY = ("tests", "benchmarks")


def project_modules():
    """{dotted module name: path} of every module outside tests/ and benchmarks/."""
    modules = {}
    for folder, subfolders, files in os.walk(ROOT):
        relative = os.path.relpath(folder, ROOT)
        subfolders[:] = [d for d in subfolders
                         if os.path.isfile(os.path.join(folder, d, "__init__.py"))
                         and not (relative == "." and d in NOT_LIBRARY)]
        for name in files:
            if not name.endswith(".py"):
                continue
            parts = [] if relative == "." else relative.split(os.sep)
            if name != "__init__.py":
                parts.append(name[:-3])
            modules[".".join(parts)] = os.path.join(folder, name)
    return modules


MODULES = project_modules()


def unit_of(module):
    """The package a module belongs to, or the module itself at the root."""
    return module.split(".")[0]


def imported_modules(path):
    """Project modules the file imports anywhere (function-level imports included)."""
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module + "." + alias.name for alias in node.names]
            names.append(node.module)
        else:
            continue
        for name in names:
            # 'from a.b import c': the module a.b.c when it is one, else a.b.
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


IMPORTS = dict((module, imported_modules(path) - {module})
               for module, path in MODULES.items())


def test_the_layers_cover_every_top_level_unit():
    units = set(unit_of(m) for m in MODULES if m)
    assert units == set(LAYER_OF), ("place the new top-level package or module in LAYERS "
                                    "(and README.md's Layout)", units ^ set(LAYER_OF))


def test_root_holds_only_entry_points_and_the_three_design_modules():
    root_modules = set(m for m in MODULES if m and "." not in m
                       and not os.path.basename(MODULES[m]) == "__init__.py")
    assert root_modules == set(ENTRY_POINTS) | {"env", "estimator_impl", "logger"}


def test_imports_point_downward_only():
    upward = []
    for module, imported in sorted(IMPORTS.items()):
        for target in sorted(imported):
            same_unit = unit_of(module) == unit_of(target)
            if not same_unit and not LAYER_OF[unit_of(target)] < LAYER_OF[unit_of(module)]:
                upward.append("%s imports %s" % (module, target))
    assert upward == []


def find_cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    # Package __init__ files import nothing, so an edge to a package is no edge to its
    # modules; every edge counts, function-level imports included.
    assert find_cycle(IMPORTS) is None


def attribute_chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def string_value(node):
    """The text of a string literal, else None: Python 3.8+ parses one as ast.Constant,
    3.7 (the vendor image, where docs/devices.md runs this file) as ast.Str."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if sys.version_info < (3, 8) and isinstance(node, ast.Str):
        return node.s
    return None


def device_layer_uses(source, name="<source>"):
    """Lines of ``source`` that reach npu_bridge or tf.distribute: imports, attribute
    chains and string literals (importlib.import_module("npu_bridge...")), sorted."""
    lines = set()
    for node in ast.walk(ast.parse(source, name)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Attribute):
            names = [attribute_chain(node) or ""]
        elif (string_value(node) or "").startswith("npu_bridge"):
            names = [string_value(node)]
        if any(n.startswith("npu_bridge") or n.startswith("tf.distribute") for n in names):
            lines.add(node.lineno)
    return sorted(lines)


def test_the_device_layer_check_sees_imports_attributes_and_literals():
    source = ("import npu_bridge\n"
              "from npu_bridge.estimator import npu_ops\n"
              "strategy = tf.distribute.MirroredStrategy\n"
              "bridge = importlib.import_module('npu_bridge.npu_init')\n"
              "fine = tf.train.Saver, 'no npu_bridge', distribute\n")
    assert device_layer_uses(source) == [1, 2, 3, 4]


def test_only_the_device_layer_touches_npu_bridge_and_tf_distribute():
    outside = ["%s:%d" % (module, line) for module, path in sorted(MODULES.items())
               if unit_of(module) != "devices"
               for line in device_layer_uses(open(path).read(), path)]
    assert outside == []


def test_every_library_module_imports():
    """Imports every module but the entry points (each defines absl flags at import) in
    one fresh interpreter: a module-level cycle or a broken import fails here."""
    libraries = sorted(m for m in MODULES
                       if m and unit_of(m) not in ENTRY_POINTS)
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run([sys.executable, "-c", code] + libraries, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("package", sorted(m for m, path in MODULES.items()
                                            if os.path.basename(path) == "__init__.py"))
def test_package_init_files_import_nothing(package):
    """So importing one module of a package (python -m devices.launch, which must start
    without TensorFlow) does not import its siblings."""
    assert imported_modules(MODULES[package]) == set()


def test_the_device_contract_declares_what_the_run_calls():
    """Every member the model_fn (estimator_impl) and the training loop (training.loop)
    reach on their device is declared by devices.base.Device, and the device kinds add
    no public member of their own beyond it."""
    from devices import base, cluster, npu
    called = set()
    for module in ("estimator_impl", "training.loop"):
        for node in ast.walk(ast.parse(open(MODULES[module]).read())):
            chain = attribute_chain(node) if isinstance(node, ast.Attribute) else None
            if chain and chain.startswith(("self.device.", "device.")):
                called.add(chain.split("device.")[1].split(".")[0])
    assert called and called <= set(dir(base.Device)), called - set(dir(base.Device))
    for kind in (cluster.TfDevice, npu.NpuDevice):
        public = set(name for name in vars(kind) if not name.startswith("_"))
        assert public <= set(dir(base.Device)) | {"session_config", "run_config_kwargs"}, (
            kind.__name__, public - set(dir(base.Device)))


def last_line(node):
    """The node's last line: end_lineno from Python 3.8; on 3.7, which has none, the
    last line a node inside it starts on (short by a last statement's continuation
    lines at most)."""
    return getattr(node, "end_lineno", None) or max(
        n.lineno for n in ast.walk(node) if hasattr(n, "lineno"))


def test_no_class_is_over_250_lines():
    """A class that long does several jobs (estimator_impl's EstimatorImpl did four)."""
    long_classes = []
    for module, path in sorted(MODULES.items()):
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.ClassDef) and last_line(node) - node.lineno + 1 > 250:
                long_classes.append("%s.%s: %d lines" % (
                    module, node.name, last_line(node) - node.lineno + 1))
    assert long_classes == []


def test_env_is_derived_from_values_with_no_file_system(monkeypatch):
    """Env.from_flags reads flags, RunFacts and an environment dict, nothing else: every
    way to look at the disk fails while it runs."""
    import builtins
    import glob
    import io

    import env as env_lib
    from tests.flag_helpers import imagenet_facts, parse_train_flags
    f = parse_train_flags("--dataset_dir=/nowhere", "--train_dir=/nowhere/train",
                          "--max_epoch=2", "--batch_size=64", "--learning_rate_per_256=0.1",
                          "--eval_every_n_epochs=1", "--restore_path=/nowhere/ckpt")
    facts = imagenet_facts(restore_checkpoint="/nowhere/ckpt/model.ckpt-9")

    def looked(*args, **kwargs):
        raise AssertionError("Env.from_flags looked at the file system: %r" % (args,))
    for owner, name in ((builtins, "open"), (io, "open"), (os, "listdir"), (os, "stat"),
                        (os, "scandir"), (os, "walk"), (os.path, "exists"),
                        (os.path, "isdir"), (os.path, "isfile"), (glob, "glob")):
        monkeypatch.setattr(owner, name, looked)
    env = env_lib.Env.from_flags(f, facts, {"RANK_SIZE": "8", "RANK_ID": "3"})
    monkeypatch.undo()
    assert (env.rank_id, env.num_replicas, env.global_batch) == (3, 8, 512)
    assert env.learning_rate == 0.2 and env.steps_per_epoch == 1281167 // 512
    assert env.restore_checkpoint == "/nowhere/ckpt/model.ckpt-9"


def test_the_generated_tables_are_current():
    """README.md's models, docs/recipes.md's recipes and docs/flags.md's flags are what
    docs/make_tables.py writes from nets/, recipes/ and env.py; rerun it after a change."""
    spec = importlib.util.spec_from_file_location(
        "make_tables", os.path.join(ROOT, "docs", "make_tables.py"))
    make_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_tables)
    for path, text in sorted(make_tables.expected_pages().items()):
        assert open(path).read() == text, (
            "%s drifted from the code: run .venv/bin/python docs/make_tables.py"
            % os.path.relpath(path, ROOT))


# ----------------------------------------------------------------------------- conventions

def python_files():
    """Every tracked .py file but the vendor stand-in and TF 1.15's API list's maker."""
    found = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split()
    return [p for p in found if not p.startswith(("tests/npu_stub/", "tests/tf115/"))]


def _in_standard_library(top):
    """sys.stdlib_module_names from Python 3.10; on 3.7 (the vendor image), which has no
    list, a module built in or found in the standard library's folder, not in its
    site-packages."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names
    if top in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(top)
    stdlib = sysconfig.get_paths()["stdlib"] + os.sep
    return bool(spec and spec.origin and spec.origin.startswith(stdlib)
                and "site-packages" not in spec.origin)


def _import_group(module):
    """0 standard library, 1 third party, 2 this project."""
    top = module.split(".")[0]
    if top == "__future__" or _in_standard_library(top):
        return 0
    return 2 if top in set(unit_of(m) for m in MODULES) | set(NOT_LIBRARY) else 1


def import_order_problems(path):
    """What is out of order in the file's leading imports: groups (standard library,
    third party, ours) in that order, each sorted by module name (``import a`` and
    ``from a import b`` side by side, as isort's force_sort_within_sections), the names
    of a ``from`` import sorted, one module per ``import``."""
    body = ast.parse(open(os.path.join(ROOT, path)).read(), path).body
    if body and isinstance(body[0], ast.Expr) and string_value(body[0].value) is not None:
        body = body[1:]
    nodes = []
    for node in body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            break
        nodes.append(node)
    modules = [n.names[0].name if isinstance(n, ast.Import) else n.module for n in nodes]
    keys = [(_import_group(m), m.lower(), isinstance(n, ast.ImportFrom))
            for m, n in zip(modules, nodes)]
    problems = [] if keys == sorted(keys) else ["imports out of order"]
    for node in nodes:
        names = [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom) and names != sorted(names):
            problems.append("line %d: names not sorted" % node.lineno)
        if isinstance(node, ast.Import) and len(names) > 1:
            problems.append("line %d: one module per import" % node.lineno)
    return problems


def test_imports_are_sorted():
    unsorted = dict((path, import_order_problems(path)) for path in python_files())
    assert dict((p, found) for p, found in unsorted.items() if found) == {}


def test_the_import_check_reads_past_the_docstring(tmp_path):
    """Both cases open with a docstring, as the project's files do. os sorts after numpy
    by name, so the first passes only with the groups told apart (os standard, numpy
    third party, utils ours)."""
    grouped = str(tmp_path / "grouped.py")
    with open(grouped, "w") as handle:
        handle.write('"""Doc."""\nimport os\n\nimport numpy as np\n\n'
                     'from utils import files\n')
    assert import_order_problems(grouped) == []
    shuffled = str(tmp_path / "shuffled.py")
    with open(shuffled, "w") as handle:
        handle.write('"""Doc."""\nfrom utils import files\nimport os\n')
    assert import_order_problems(shuffled) == ["imports out of order"]


def test_one_docstring_style():
    """Docstrings are prose (PEP 257): a summary line, then sentences; arguments are
    named in ``double backticks``, as ``name``: meaning where a list helps; no Google or
    NumPy sections. Every public function of a library module has one."""
    sections = re.compile(r"^\s*(Args|Arguments|Returns|Raises|Parameters):\s*$|:param ",
                          re.M)
    found = []
    for module, path in sorted(MODULES.items()):
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                continue
            doc = ast.get_docstring(node) or ""
            if sections.search(doc):
                found.append("%s:%s uses a section header" % (module, getattr(
                    node, "name", "module")))
        for node in ast.parse(open(path).read(), path).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") \
                    and ast.get_docstring(node) is None:
                found.append("%s.%s has no docstring" % (module, node.name))
    assert found == []


def test_every_module_is_python_3_7():
    """Ascend's TF 1.15 image runs Python 3.7: no walrus, no positional-only parameters,
    no newer syntax in anything but the tests (which run here only)."""
    newer = []
    for path in python_files():
        if path.startswith("tests/"):
            continue
        try:
            ast.parse(open(os.path.join(ROOT, path)).read(), path, feature_version=(3, 7))
        except SyntaxError as err:
            newer.append("%s:%s %s" % (path, err.lineno, err.msg))
    assert newer == []


def _has_quick_tests(tree):
    """True when a test module has a test the quick tier runs: one not marked slow, in a
    module without ``pytestmark = pytest.mark.slow``."""
    def slow(node):
        return "slow" in ast.dump(node)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "pytestmark" for t in node.targets) and slow(node):
            return False
    return any(isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
               and not any(slow(d) for d in node.decorator_list) for node in tree.body)


def test_the_quick_tier_covers_every_package():
    """bash scripts/run_tests.sh --quick (-m "not slow") reaches every package and root
    module: some test module with quick tests imports it (or a tests/ helper it imports
    does), or runs it as a program."""
    tests = os.path.join(ROOT, "tests")
    pending = [os.path.join(tests, n) for n in sorted(os.listdir(tests))
               if n.startswith("test_") and n.endswith(".py")
               and _has_quick_tests(ast.parse(open(os.path.join(tests, n)).read()))]
    reached, seen = set(), set()
    while pending:  # the quick test modules and the tests/ helpers they import
        path = pending.pop()
        seen.add(path)
        reached.update(unit_of(m) for m in imported_modules(path))
        reached.update(_entry_points_run(path))
        for helper in _imported_test_helpers(path):
            if helper not in seen:
                pending.append(helper)
    assert set(LAYER_OF) - reached == set()


def _entry_points_run(path):
    """The entry points a test file runs as programs (names "train.py" and the like)."""
    texts = (string_value(node) for node in ast.walk(ast.parse(open(path).read(), path)))
    return set(text[:-3] for text in texts
               if text and text.endswith(".py") and text[:-3] in ENTRY_POINTS)


def _imported_test_helpers(path):
    """Paths of the tests/ modules (not test_*) that a test file imports."""
    found = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            helper = os.path.join(ROOT, *name.split(".")) + ".py"
            if name.startswith("tests.") and os.path.isfile(helper):
                found.append(helper)
    return found
