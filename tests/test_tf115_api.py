"""TF 1.15 API guard (issue #20). Huawei's Ascend images run this code on TF 1.15 (Python
3.7); CI runs TF 2.15, whose tf.compat.v1 has names 1.15 lacks. Every ``tf.`` chain and
every TensorFlow import in the project's non-test, non-benchmark modules must exist in
TF 1.15's tf.compat.v1, as tests/tf115/compat_v1_api.txt lists it (made from the official
wheels by tests/tf115/make_api_list.py; nothing is downloaded here). This file imports no
TensorFlow and keeps to Python 3.7, so it runs unchanged in the vendor image.

What counts, and what was decided:

* A chain is a run of attribute accesses on the name ``tf`` (``from utils.tf_compat import
  tf``; tf_compat itself binds tf = tensorflow.compat.v1): ``tf.a.b.c``. In
  ``tf.a(x).b`` only ``tf.a`` is a chain: what a call, or an instance we hold, returns is
  out of scope.
* A chain is looked up prefix by prefix. Below a module, a class or an instance made at
  module level (tf.float32) the list has every public member, so a member it lacks fails.
  Past a function, a value or an opaque entry (a class whose bases lie outside the
  wheels, protobuf messages, absl's flags) the chain resolves to that longest known
  prefix and passes: the list cannot know what a function returns or a property holds,
  and refusing there would flag correct code; the prefix itself was checked.
* ``getattr(<tf chain>, "name")`` without a fallback is a static chain and checked;
  ``getattr`` with a fallback and ``hasattr`` are deliberate dynamic accesses (each one
  in the code says why) and allowed. A static chain that such a check guards is missing
  in TF 1.15 by design: it needs an ALLOWED entry (file, chain, why); an entry no failing
  chain uses fails too, so the list stays short.
* ``import tensorflow.x`` needs the module path in the list. ``from M import n`` needs M;
  then n as a module path, or, when M is an API module (tensorflow.compat.v1[.x], or
  tensorflow[.x], TF 1.15's top level being the v1 API), as a name of it. Names inside
  TF's private modules (tensorflow.python...) are not listed: there the module is checked.
"""
import ast
import io
import os
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT
from tests.test_layout import MODULES, attribute_chain
from tests.tf115.make_api_list import CLOSED, string_value

API_LIST = os.path.join(ROOT, "tests", "tf115", "compat_v1_api.txt")
TF_ROOTS = ("tensorflow", "tensorflow_estimator")
# {(path from the repository root, chain): why a chain TF 1.15 lacks is still correct}.
# Empty: every chain the project has exists in TF 1.15, and its two dynamic accesses
# (utils/tf_compat.py do_not_convert, devices/precision.py loss_scale_optimizer) guard
# no static chain TF 1.15 lacks.
ALLOWED = {}


def load_api(path=API_LIST):
    """{dotted name: kind} of the reference list."""
    api = {}
    with io.open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.strip() and not line.startswith("#"):
                name, kind = line.split()
                api[name] = kind
    return api


API = load_api()


def missing_prefix(chain, api=API):
    """The first prefix of a ``tf.`` chain TF 1.15 lacks, or None when it has the chain
    (up to its longest known prefix that is a function, value or opaque entry)."""
    parts = chain.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        kind = api.get(prefix)
        if kind is None:
            return prefix
        if kind not in CLOSED:
            return None
    return None


def _tf_chain(node):
    chain = attribute_chain(node) if isinstance(node, (ast.Attribute, ast.Name)) else None
    return chain if chain and chain.split(".")[0] == "tf" else None


def tf_uses(tree):
    """([(line, chain)] static chains on ``tf``, [line] dynamic accesses) of a module."""
    inner = set(id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute))
    chains, dynamic = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner and _tf_chain(node):
            chains.append((node.lineno, _tf_chain(node)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "hasattr") and len(node.args) >= 2 and \
                _tf_chain(node.args[0]) and string_value(node.args[1]):
            if node.func.id == "getattr" and len(node.args) == 2:
                chains.append((node.lineno, _tf_chain(node.args[0]) + "."
                               + string_value(node.args[1])))
            else:
                dynamic.append(node.lineno)
    return chains, dynamic


def _api_name(module, api):
    """The ``tf.`` name of an API module path (tensorflow.compat.v1.x, tensorflow.x), or
    None for a private one."""
    for root in ("tensorflow.compat.v1", "tensorflow"):
        if module == root or module.startswith(root + "."):
            name = "tf" + module[len(root):]
            if api.get(name) == "module":
                return name
    return None


def import_problems(tree, api=API):
    """[(line, what)] for the TensorFlow imports of a module that TF 1.15 lacks."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            problems.extend((node.lineno, n) for n in names
                            if n.split(".")[0] in TF_ROOTS and api.get(n) != "import")
        elif isinstance(node, ast.ImportFrom) and not node.level and \
                node.module.split(".")[0] in TF_ROOTS:
            if api.get(node.module) != "import":
                problems.append((node.lineno, node.module))
                continue
            api_name = _api_name(node.module, api)
            for alias in node.names:
                if api.get(node.module + "." + alias.name) == "import":
                    continue
                if api_name and missing_prefix(api_name + "." + alias.name, api):
                    problems.append((node.lineno, "%s.%s" % (node.module, alias.name)))
    return problems


def check_source(source, path, api=API):
    """(["path:line what" TF 1.15 lacks], [chains checked], dynamic accesses) of a module."""
    tree = ast.parse(source, path)
    chains, dynamic = tf_uses(tree)
    found = ["%s:%d %s" % (path, line, chain) for line, chain in chains
             if missing_prefix(chain, api)]
    found += ["%s:%d import %s" % (path, line, what)
              for line, what in import_problems(tree, api)]
    return found, [chain for _, chain in chains], len(dynamic)


def project_report():
    """(failing uses outside ALLOWED, allowed ones that failed, chains, distinct chains,
    dynamic accesses) over every non-test, non-benchmark module."""
    failing, allowed_used, chains, distinct, dynamic = [], set(), 0, set(), 0
    for module, path in sorted(MODULES.items()):
        relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
        with io.open(path, encoding="utf-8") as stream:
            source = stream.read()
        found, checked, dynamic_here = check_source(source, relative)
        chains += len(checked)
        distinct.update(checked)
        dynamic += dynamic_here
        for problem in found:
            key = (relative, problem.split(" ")[-1])
            if key in ALLOWED:
                allowed_used.add(key)
            else:
                failing.append(problem)
    return failing, allowed_used, chains, len(distinct), dynamic


def test_the_project_uses_only_what_tf115_has():
    failing, _, chains, distinct, dynamic = project_report()
    print("checked %d tf chains (%d distinct) in %d modules; %d dynamic accesses allowed"
          % (chains, distinct, len(MODULES), dynamic))
    assert chains > 100, "the walker found almost no tf chain: is it broken?"
    assert failing == [], "missing in TF 1.15's tf.compat.v1:\n" + "\n".join(failing)


def test_every_allowed_chain_still_fails():
    """An ALLOWED entry no failing chain uses is stale: delete it."""
    _, allowed_used, _, _, _ = project_report()
    assert set(ALLOWED) - allowed_used == set()


@pytest.mark.parametrize("snippet", [
    "strategy = tf.distribute.MultiWorkerMirroredStrategy()",  # TF 2.x only
    "keys = tf.GraphKeys.NO_SUCH_KEY",
    "train = tf.estimator.ModeKeys.NO_SUCH_MODE",
    "cls = getattr(tf.distribute, 'MultiWorkerMirroredStrategy')",
    "import tensorflow.experimental.dtensor",
    "from tensorflow.compat.v1.distribute import MultiWorkerMirroredStrategy",
])
def test_the_guard_reports_what_tf115_lacks(snippet):
    source = "from utils.tf_compat import tf\n" + snippet + "\n"
    found, _, _ = check_source(source, "snippet.py")
    assert len(found) == 1 and found[0].startswith("snippet.py:2 "), found


@pytest.mark.parametrize("snippet", [
    "opt = tf.train.MomentumOptimizer(0.1, 0.9)",
    "ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)",
    "train = tf.estimator.ModeKeys.TRAIN",
    "ds = tf.data.Dataset.from_tensors(1).repeat()",
    "low = tf.int64.min",
    "value = tf.Summary.Value(tag='x')",  # a protobuf message: its members are opaque
    "step = tf.train.get_global_step().op.name",  # past a call: out of scope
    "fn = getattr(tf.distribute, 'MultiWorkerMirroredStrategy', None)",  # dynamic
    "import tensorflow.compat.v1 as tf",
    "from tensorflow.python.framework import ops",
    "from tensorflow.compat.v1 import estimator",
])
def test_the_guard_passes_what_tf115_has(snippet):
    source = "from utils.tf_compat import tf\n" + snippet + "\n"
    assert check_source(source, "snippet.py")[0] == []


def test_the_guard_imports_no_tensorflow():
    """So it runs as is in the vendor image (pytest --noconftest skips conftest's tf)."""
    code = ("import sys, tests.test_tf115_api\n"
            "print(sorted(m for m in sys.modules if m.startswith('tensorflow')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr
