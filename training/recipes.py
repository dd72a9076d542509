"""The published training recipes: recipes/<name>.flags, absl flagfiles that train.py
reads with --flagfile (RECIPE=<name> in the scripts passes it). Their comment lines say
what each is:

  # title: what it trains and how, in a line
  # expected_top1: the top-1 (percent) its source reports, when one does
  # source: where that number and the settings come from
  # requires: --restore_path (...)   a fine-tune: the run must name its starting point

Pre-flight reads the rate per 256 images from here; the README's recipe table is
generated from here (docs/tables.py); nothing else keeps a copy.
"""
import collections
import os
import re

from utils.errors import UserError

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "recipes")
SUFFIX = ".flags"
_HEADER = re.compile(r"^#\s*(title|expected_top1|source|requires|parity|measured):\s*(.*?)\s*$")

# ``flags``: {flag name: its value as written}; ``requires_restore_path``: a fine-tune;
# ``parity``: how it compares with an independent implementation (benchmarks/
# training_parity.py, equal_budget.py), ``measured``: what it reached here; None if not.
Recipe = collections.namedtuple(
    "Recipe", "name path title expected_top1 source requires_restore_path flags parity "
              "measured")


def names():
    """The recipes' names, sorted."""
    return sorted(n[:-len(SUFFIX)] for n in os.listdir(RECIPES_DIR) if n.endswith(SUFFIX))


def path_of(name):
    """recipes/<name>.flags; UserError listing the recipes when there is none."""
    path = os.path.join(RECIPES_DIR, name + SUFFIX)
    if not os.path.isfile(path):
        raise UserError("RECIPE=%s is not a recipe; choose one of %s"
                        % (name, ", ".join(names())))
    return path


def load(name):
    """The Recipe ``name``, read from its file."""
    path = path_of(name)
    header, values = {}, collections.OrderedDict()
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            match = _HEADER.match(line)
            if match:
                header[match.group(1)] = match.group(2)
            elif line.startswith("--"):
                flag, _, value = line[2:].partition("=")
                values[flag] = value
    expected = header.get("expected_top1")
    return Recipe(name, path, header.get("title", ""),
                  float(expected) if expected else None, header.get("source"),
                  header.get("requires", "").startswith("--restore_path"), values,
                  header.get("parity"), header.get("measured"))


def load_all():
    """Every Recipe, by name."""
    return [load(name) for name in names()]


def matching(model_name, optimizer, fine_tune):
    """The recipe a run follows, or None: among the recipes with its optimizer and the
    same kind of start (fresh or fine-tune from --restore_path), the one whose model is
    the longest prefix of ``model_name`` (mobilenet_v2 for mobilenet_v2_140, and
    mobilenet_v2_cifar for itself)."""
    candidates = [r for r in load_all() if r.flags.get("optimizer") == optimizer
                  and r.requires_restore_path == fine_tune
                  and model_name.startswith(r.flags["model_name"])]
    candidates.sort(key=lambda r: -len(r.flags["model_name"]))
    return candidates[0] if candidates else None
