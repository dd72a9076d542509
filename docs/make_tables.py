"""Writes the tables of the README and the manuals from their one home in the code:

  models   README.md          nets/: each family's VARIANTS rows (sizes, published top-1)
  recipes  docs/recipes.md    recipes/<name>.flags (training/recipes.py reads them)
  flags    docs/flags.md      env.py's flag definitions (their help is the meaning)
  eval_flags  docs/evaluation.md  the evaluator's own flags (evaluation/config.py)

Each table sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`.

  .venv/bin/python docs/make_tables.py           rewrite them
  .venv/bin/python docs/make_tables.py --check   exit 1, naming the files, if any drifted

tests/test_layout.py fails when a page differs from what this writes.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402 (after the path is set)

import env as env_lib  # noqa: E402
from evaluation import config as eval_config  # noqa: E402
from nets import nets_factory  # noqa: E402
from training import recipes  # noqa: E402

PAGES = (("models", "README.md"), ("recipes", "docs/recipes.md"), ("flags", "docs/flags.md"),
         ("eval_flags", "docs/evaluation.md"))


def _row(cells):
    return "| %s |" % " | ".join(cells)


def _table(header, rows):
    return "\n".join([_row(header), _row(["---"] * len(header))] + [_row(r) for r in rows])


def _top1(value, dataset):
    if value is None:
        return "none published"
    return "%s%s" % (value, "" if dataset in (None, "ImageNet") else " " + dataset)


def models_table():
    rows = []
    for name in nets_factory.model_names():
        info = nets_factory.get_model_info(name)
        rows.append(["`%s`" % name, info.scope,
                     "%d / %d" % (info.default_image_size, info.default_eval_image_size),
                     _top1(info.published_top1, info.published_top1_dataset),
                     info.published_top1_source or ""])
    return _table(["model", "scope", "train / eval px", "published top-1", "source"], rows)


def recipes_table():
    rows = []
    for recipe in recipes.load_all():
        f = recipe.flags
        rows.append(["`%s`" % recipe.name, recipe.title, "`%s`" % f["model_name"],
                     f["batch_size"], f["learning_rate_per_256"], f["max_epoch"],
                     "%s (%s)" % (_top1(recipe.expected_top1, None), recipe.source)
                     if recipe.expected_top1 is not None else "none published",
                     recipe.parity or "not checked", recipe.measured or "not measured"])
    return _table(["RECIPE", "what it trains", "model", "batch / device",
                   "peak LR per 256 images", "epochs", "published top-1",
                   "parity with an independent implementation", "measured here"], rows)


def _flags_table(flag_list):
    rows = []
    for flag in flag_list:
        default = flag.default_as_str.strip("'") if flag.default is not None else ""
        rows.append(["`--%s`" % flag.name, default or "none",
                     " ".join(flag.help.split()).replace("|", "\\|")])
    return _table(["flag", "default", "meaning"], rows)


def flags_table():
    env_lib.define_train_flags()
    return _flags_table(flags.FLAGS.get_flags_for_module(env_lib))


def eval_flags_table():
    values = flags.FlagValues()
    eval_config.define_flags(values)
    return _flags_table(values.get_flags_for_module(eval_config))


TABLES = {"models": models_table, "recipes": recipes_table, "flags": flags_table,
          "eval_flags": eval_flags_table}


def generated(text, name, table):
    """``text`` with the region of table ``name`` replaced by ``table``."""
    pattern = re.compile(r"(<!-- generated: %s -->\n).*?(\n<!-- end generated: %s -->)"
                         % (name, name), re.S)
    if not pattern.search(text):
        raise ValueError("no <!-- generated: %s --> region" % name)
    return pattern.sub(lambda m: m.group(1) + table + m.group(2), text)


def expected_pages():
    """{page path: its text with every table as the code gives it now}."""
    pages = {}
    for name, page in PAGES:
        path = os.path.join(ROOT, page)
        text = pages.get(path) or open(path).read()
        pages[path] = generated(text, name, TABLES[name]())
    return pages


def main(argv):
    drifted = []
    for path, text in sorted(expected_pages().items()):
        if open(path).read() == text:
            continue
        drifted.append(os.path.relpath(path, ROOT))
        if "--check" not in argv:
            with open(path, "w") as handle:
                handle.write(text)
    if drifted:
        print("%s %s" % ("drifted:" if "--check" in argv else "rewrote:", ", ".join(drifted)))
    return 1 if drifted and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
