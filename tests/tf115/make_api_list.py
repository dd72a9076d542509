"""Writes tests/tf115/compat_v1_api.txt, the reference list tests/test_tf115_api.py checks
the project's ``tf.`` chains and ``tensorflow`` imports against (issue #20): everything
TF 1.15's ``tf.compat.v1`` has, read statically from the official wheels.

Run it from the repository root with the project's venv (any Python 3.7+; it never imports
TensorFlow, whose 1.15 wheels need Python 3.7):

    .venv/bin/python tests/tf115/make_api_list.py                # downloads the wheels
    .venv/bin/python tests/tf115/make_api_list.py --wheels DIR   # wheels already in DIR

Without --wheels it runs, into a temporary folder it deletes afterwards,

    python -m pip download --no-deps --only-binary=:all: --python-version 37 \\
        --platform manylinux2010_x86_64 --implementation cp --abi cp37m \\
        tensorflow-cpu==1.15.0 tensorflow-estimator==1.15.1 -d DIR

with the running interpreter's pip. It unzips only the wheels' .py files into another
temporary folder and parses them with ast; --out writes the list elsewhere. Commit only the
list, never the wheels or their code.

What the list holds (its header repeats the kinds):
* ``tf.<name> <kind>``: the names of ``tensorflow_core/_api/v1/compat/v1/`` (each
  __init__.py's import lines), ``estimator`` from tensorflow_estimator 1.15.1's
  ``api/_v1`` tree and ``keras`` from TF's ``python/keras/api/_v1`` tree (the modules
  compat.v1 hooks in), ``flags`` and ``app.flags`` as compat.v1 sets them. Below a class,
  its public members: its body's defs and assignments and those of every base class found
  in the wheels; below an instance made at module level (``float32 = DType(...)``), its
  class's members and the ``self.<name>`` its methods assign.
* ``<module path> import``: every module ``import`` can name: the wheels' .py and .so
  files (``tensorflow_core`` read as ``tensorflow``, the name its shim forwards), and the
  API trees under the names ``tensorflow``'s and ``compat.v1``'s __path__ give them.
"""
from __future__ import print_function

import argparse
import ast
import builtins
import io
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

from utils.files import sha256_of  # noqa: E402 (after the path is set)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "compat_v1_api.txt")
REQUIREMENTS = ("tensorflow-cpu==1.15.0", "tensorflow-estimator==1.15.1")
WHEEL_PREFIXES = ("tensorflow_cpu-1.15.0-", "tensorflow_estimator-1.15.1-")
PIP_PLATFORM = ["--no-deps", "--only-binary=:all:", "--python-version", "37",
                "--platform", "manylinux2010_x86_64", "--implementation", "cp",
                "--abi", "cp37m"]
COMPAT_V1 = "tensorflow_core._api.v1.compat.v1"
# Where the API trees sit, and the import names TF 1.15's __path__ tricks give them.
TREES = (("tensorflow_core._api.v1", "tensorflow"),
         ("tensorflow_core._api.v1.compat.v1", "tensorflow.compat.v1"),
         ("tensorflow_estimator.python.estimator.api._v1.estimator", "tensorflow.estimator"),
         ("tensorflow_estimator.python.estimator.api._v1.estimator",
          "tensorflow.compat.v1.estimator"),
         ("tensorflow_core.python.keras.api._v1.keras", "tensorflow.keras"),
         ("tensorflow_core.python.keras.api._v1.keras", "tensorflow.compat.v1.keras"))
# Members are listed below these kinds; a chain past the others is not followed.
CLOSED = ("module", "class", "instance")
MAX_DEPTH = 8
# Bases from outside the wheels that give a class no public class-level member (an Enum's
# name and value belong to its members, which the class body lists).
MEMBERLESS_BASES = ("enum.Enum", "enum.IntEnum")
HEADER = """\
# TF 1.15's tf.compat.v1, read statically from the official wheels, for
# tests/test_tf115_api.py. Do not edit: regenerate with
#     .venv/bin/python tests/tf115/make_api_list.py   (its docstring says how)
# Wheels read:
{wheels}
# One dotted name a line, then its kind:
#   tf.<name>: what `tf` (tensorflow.compat.v1) has in TF 1.15.
#     module, class, instance: every public member is listed below it; a member
#       not listed is missing in TF 1.15.
#     function, value, opaque: members are not listed (a function, a constant, an
#       object a call makes, a module or class whose members lie outside the wheels,
#       such as protobuf messages and absl's flags).
#   <module path> import: a module TF 1.15 lets `import` name.
"""


def download(folder):
    """The two wheels, fetched into ``folder`` with pip."""
    subprocess.check_call([sys.executable, "-m", "pip", "download"] + PIP_PLATFORM
                          + list(REQUIREMENTS) + ["-d", folder])
    return find_wheels(folder)


def find_wheels(folder):
    found = []
    for prefix in WHEEL_PREFIXES:
        names = sorted(n for n in os.listdir(folder)
                       if n.startswith(prefix) and n.endswith(".whl"))
        if not names:
            sys.exit("no %s*.whl in %s" % (prefix, folder))
        found.append(os.path.join(folder, names[0]))
    return found


def module_name(member):
    """The dotted module a wheel member is, or None: 'a/b/__init__.py' -> 'a.b'."""
    parts = member.split("/")
    if parts[0].endswith(".data"):  # tensorflow_cpu-1.15.0.data/purelib/...
        parts = parts[2:]
    if not parts or parts[0] not in ("tensorflow", "tensorflow_core",
                                     "tensorflow_estimator"):
        return None
    last = parts[-1]
    if last == "__init__.py":
        parts = parts[:-1]
    elif last.endswith(".py"):
        parts[-1] = last[:-3]
    elif last.endswith(".so"):
        parts[-1] = last.split(".")[0]
    else:
        return None
    return ".".join(parts)


def unzip_sources(wheels, folder):
    """Extracts the wheels' .py files into ``folder``; {module: path} of those, and None
    for extension modules (.so), whose names are all we read."""
    modules = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                name = module_name(member)
                if name is None:
                    continue
                if member.endswith(".py"):
                    modules[name] = archive.extract(member, folder)
                else:
                    modules.setdefault(name, None)
    return modules


class Entity(object):
    """What a name is bound to: ``kind`` (see HEADER) plus what its members come from."""

    def __init__(self, kind, module=None, node=None, of_class=None):
        self.kind, self.module, self.node, self.of_class = kind, module, node, of_class


FUNCTION, VALUE, OPAQUE = Entity("function"), Entity("value"), Entity("opaque")


def is_public(name, in_module):
    """Names without a leading underscore; in a module also __version__ and the like (a
    class's __init__ and kin are Python's, not TF's)."""
    dunder = name.startswith("__") and name.endswith("__")
    return not name.startswith("_") or (in_module and dunder)


def block_statements(body):
    """Statements of a module or class body, into if/try/with blocks but not defs."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                for child in block_statements(inner):
                    yield child


def string_value(node):
    # ast.Str (Python 3.7) keeps the text in .s, ast.Constant (3.8+) in .value.
    for field in ("value", "s"):
        value = getattr(node, field, None)
        if isinstance(value, str):
            return value
    return None


def namedtuple_fields(call):
    """The fields of ``collections.namedtuple('N', fields)``, or None for another call."""
    name = getattr(call.func, "attr", getattr(call.func, "id", None))
    if name != "namedtuple" or len(call.args) < 2:
        return None
    fields = call.args[1]
    text = string_value(fields)
    if text is not None:
        return text.replace(",", " ").split()
    if isinstance(fields, (ast.List, ast.Tuple)):
        return [string_value(e) for e in fields.elts if string_value(e)]
    return None


def dotted(node):
    """'a.b.c' for an attribute chain on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id] + parts[::-1])


def builtin_class(name):
    """True for bases with no public class-level member of their own that tf code reaches:
    object and the exception classes."""
    value = getattr(builtins, name, None)
    return value is object or (isinstance(value, type) and issubclass(value, BaseException))


class Wheels(object):
    """Static name resolution over the unzipped wheels: what a module binds, what a class
    has, following imports, assignments and base classes as far as the wheels' code goes."""

    def __init__(self, modules):
        self.modules = modules  # {module: path of its .py, None for a .so}
        self._namespaces = {}
        self._members = {}

    def real(self, name):
        """The wheel module an import name means, or None: TF 1.15's ``tensorflow`` shim
        forwards to tensorflow_core, whose __path__ adds its _api/v1 tree."""
        if name == "tensorflow" or name.startswith("tensorflow."):
            rest = name[len("tensorflow"):]
            for root in ("tensorflow_core", "tensorflow_core._api.v1"):
                if root + rest in self.modules:
                    return root + rest
        return name if name in self.modules else None

    def module_entity(self, module):
        if self.modules.get(module) is None:
            return OPAQUE  # an extension module: its names are not in any .py
        api = "._api.v1." in module + "." or ".api._v1." in module + "."
        return Entity("module" if api else "private", module)

    def namespace(self, module):
        """{name: binding} for what the module's top level binds, the last binding winning;
        '*' lists its star imports, '.' its ``a.b[.c] = value`` assignments."""
        if module not in self._namespaces:
            bindings = {"*": [], ".": []}
            path = self.modules.get(module)
            try:
                with io.open(path, encoding="utf-8") as stream:
                    tree = ast.parse(stream.read(), path)
            except (TypeError, SyntaxError, UnicodeDecodeError):
                tree = ast.Module(body=[])  # no source we can read: binds nothing known
            package = module if path and path.endswith("__init__.py") else \
                module.rpartition(".")[0]
            for node in block_statements(tree.body):
                self._bind(node, package, bindings)
            self._namespaces[module] = bindings
        return self._namespaces[module]

    @staticmethod
    def _bind(node, package, bindings):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bindings[alias.asname] = ("module", alias.name)
                else:
                    top = alias.name.split(".")[0]
                    bindings[top] = ("module", top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                if alias.name == "*":
                    bindings["*"].append(base)
                else:
                    bindings[alias.asname or alias.name] = ("from", base, alias.name)
        elif isinstance(node, ast.ClassDef):
            bindings[node.name] = ("class", node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bindings[node.name] = ("function",)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in getattr(node, "targets", [getattr(node, "target", None)]):
                if isinstance(target, ast.Name):
                    bindings[target.id] = ("expr", node.value)
                elif isinstance(target, ast.Attribute):
                    chain = dotted(target)
                    if chain:
                        bindings["."].append((chain.split("."), node.value))

    def lookup(self, module, name, seen=frozenset()):
        """What ``module.name`` is, or None when the wheels do not say."""
        if (module, name) in seen:
            return None
        seen = seen | {(module, name)}
        bindings = self.namespace(module)
        if name in bindings and name not in "*.":
            return self._resolve(module, bindings[name], seen)
        if module + "." + name in self.modules:
            return self.module_entity(module + "." + name)
        for source in bindings["*"]:
            real = self.real(source)
            found = real and self.lookup(real, name, seen)
            if found:
                return found
        return None

    def _resolve(self, module, binding, seen):
        kind = binding[0]
        if kind == "module":
            real = self.real(binding[1])
            return self.module_entity(real) if real else Entity("external", binding[1])
        if kind == "from":
            real = self.real(binding[1])
            if real is None:  # from outside the wheels: absl, six, enum, google.protobuf
                return Entity("external", binding[1] + "." + binding[2])
            if real + "." + binding[2] in self.modules:
                return self.module_entity(real + "." + binding[2])
            return self.lookup(real, binding[2], seen) or OPAQUE
        if kind == "class":
            return Entity("class", module, binding[1])
        if kind == "function":
            return FUNCTION
        return self.evaluate(module, binding[1], seen)

    def evaluate(self, module, expr, seen=frozenset()):
        """What an expression at the top level of ``module`` is, as far as we can tell."""
        if isinstance(expr, ast.Name):
            found = self.lookup(module, expr.id, seen)
            if found:
                return found
            return Entity("builtin") if builtin_class(expr.id) else OPAQUE
        if isinstance(expr, ast.Attribute):
            return self.member(self.evaluate(module, expr.value, seen), expr.attr,
                               seen) or OPAQUE
        if isinstance(expr, ast.Call):
            if namedtuple_fields(expr) is not None:
                return Entity("fields", node=namedtuple_fields(expr))
            made_by = self.evaluate(module, expr.func, seen)
            if made_by.kind == "class":
                return Entity("instance", of_class=made_by)
        return VALUE

    def member(self, entity, name, seen=frozenset()):
        if entity.kind in ("module", "private"):
            return self.lookup(entity.module, name, seen)
        if entity.kind in ("class", "instance"):
            return self.members(entity).get(name)
        if entity.kind == "external":
            return Entity("external", entity.module + "." + name)
        return None

    def members(self, entity):
        """{name: entity} of a module, class or instance (public or not)."""
        if entity.kind == "module":
            return self._module_members(entity.module)
        if entity.kind == "class":
            return self.class_members(entity)[0]
        if entity.kind == "instance":
            found = dict(self.class_members(entity.of_class)[0])
            found.update((name, VALUE) for name in self._self_attributes(entity.of_class))
            return found
        return {}

    def is_closed(self, entity):
        """True when ``members`` has every member the entity has."""
        if entity.kind == "module":
            return True
        if entity.kind in ("class", "instance"):
            return self.class_members(entity.of_class or entity)[1]
        return False

    def _module_members(self, module):
        bindings = self.namespace(module)
        found = dict((name, self._resolve(module, binding, frozenset()))
                     for name, binding in bindings.items() if name not in "*.")
        # compat.v1 sets app.flags from its own __init__: _current_module.app.flags = flags
        parent, _, last = module.rpartition(".")
        for chain, value in self.namespace(parent)["."] if parent else ():
            if chain[:2] == ["_current_module", last] and len(chain) == 3:
                found[chain[2]] = self.evaluate(parent, value)
        return found

    def class_members(self, cls):
        """({name: entity}, closed) of a class: its bases' members, then its own."""
        key = id(cls.node)
        if key not in self._members:
            self._members[key] = ({}, False)  # reached again while being read: open
            found, closed = {}, True
            for base in reversed(self._bases(cls)):  # the first base wins, as in the MRO
                if base.kind == "fields":  # a namedtuple: its fields and tuple's methods
                    found.update((name, VALUE) for name in base.node + ["count", "index"])
                elif base.kind == "class":
                    base_members, base_closed = self.class_members(base)
                    found.update(base_members)
                    closed = closed and base_closed
                elif base.kind != "builtin" and not (base.kind == "external"
                                                     and base.module in MEMBERLESS_BASES):
                    closed = False  # a base outside the wheels: its members are unknown
            found.update(self._body_members(cls))
            self._members[key] = (found, closed)
        return self._members[key]

    def _bases(self, cls):
        """Each base class as an entity (six.with_metaclass(meta, *bases) read as bases)."""
        bases = []
        for expr in cls.node.bases:
            if isinstance(expr, ast.Call) and getattr(expr.func, "attr", "") == \
                    "with_metaclass":
                bases.extend(self.evaluate(cls.module, e) for e in expr.args[1:])
            else:
                bases.append(self.evaluate(cls.module, expr))
        return bases

    def _body_members(self, cls):
        found = {}
        for node in block_statements(cls.node.body):
            if isinstance(node, ast.ClassDef):
                found[node.name] = Entity("class", cls.module, node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[node.name] = FUNCTION
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in getattr(node, "targets", [getattr(node, "target", None)]):
                    if isinstance(target, ast.Name):
                        found[target.id] = VALUE
        # Set on the class after its body: GraphKeys.X = ... at module level.
        for chain, _ in self.namespace(cls.module)["."]:
            if len(chain) == 2 and chain[0] == cls.node.name:
                found[chain[1]] = VALUE
        return found

    def _self_attributes(self, cls, depth=0):
        """Names the methods of a class and its bases assign on ``self``."""
        names = set()
        for node in ast.walk(cls.node):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        for base in self._bases(cls) if depth < MAX_DEPTH else ():
            if base.kind == "class":
                names |= self._self_attributes(base, depth + 1)
        return names

    def emit(self, name, entity, out, path=()):
        """Writes ``name``'s kind into ``out`` and, below a module, class or instance,
        its public members'."""
        kind = entity.kind if entity.kind in CLOSED + ("function", "value") else "opaque"
        key = entity.module if kind == "module" else id(entity.node or entity.of_class)
        if kind in CLOSED and (key in path or len(path) >= MAX_DEPTH
                               or not self.is_closed(entity)):
            kind = "opaque"  # a cycle, or members we cannot all read: not followed
        out[name] = kind
        if kind in CLOSED:
            for member, value in sorted(self.members(entity).items()):
                if is_public(member, kind == "module"):
                    self.emit(name + "." + member, value, out, path + (key,))


def import_paths(modules):
    """Every module path ``import`` can name in TF 1.15."""
    paths = set()
    for module in modules:
        if module.startswith("tensorflow_core"):
            paths.add("tensorflow" + module[len("tensorflow_core"):])
        else:
            paths.add(module)
        for root, alias in TREES:
            if module == root or module.startswith(root + "."):
                paths.add(alias + module[len(root):])
    return paths


def api_list(wheels, sources_folder):
    """{name: kind} of the reference list, read from the wheels."""
    modules = unzip_sources(wheels, sources_folder)
    reader = Wheels(modules)
    names = {}
    reader.emit("tf", reader.module_entity(COMPAT_V1), names)
    for path in import_paths(modules):
        names[path] = "import"
    return names


def write_list(names, wheels, out):
    listed = "\n".join("#     %s  sha256 %s" % (os.path.basename(w), sha256_of(w))
                       for w in wheels)
    with open(out, "w") as stream:
        stream.write(HEADER.format(wheels=listed))
        for name in sorted(names):
            stream.write("%s %s\n" % (name, names[name]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", help="folder already holding the two wheels "
                        "(default: download them into a temporary folder)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the list")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tf115_wheels_") as downloads, \
            tempfile.TemporaryDirectory(prefix="tf115_sources_") as sources:
        wheels = find_wheels(args.wheels) if args.wheels else download(downloads)
        names = api_list(wheels, sources)
        write_list(names, wheels, args.out)
    kinds = {}
    for kind in names.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    print("wrote %s: %d names (%s)" % (args.out, len(names), ", ".join(
        "%d %s" % (kinds[k], k) for k in sorted(kinds))))


if __name__ == "__main__":
    main()
