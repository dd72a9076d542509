"""Plots TRAINING_PARITY.json's "equal_budget" curves (top-1 per epoch, one line per run)
into a PNG. Runs in .venv-bench (matplotlib is a benchmark requirement, not the pipeline's).

  python benchmarks/plot_curves.py benchmarks/TRAINING_PARITY.json OUT.png [KEY]

KEY: which of the file's results (default "equal_budget").
"""
import json
import sys
import textwrap

import matplotlib
matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402 (after choosing the file-only backend)

STYLES = ("-", "--", ":", "-.")


def plot(result, path):
    figure, axes = pyplot.subplots(figsize=(6.4, 4.2))
    for colour, (label, runs) in enumerate(sorted(result["curves"].items())):
        for style, seed in zip(STYLES, sorted(runs)):
            curve = runs[seed]
            axes.plot(range(1, len(curve) + 1), curve, style, color="C%d" % colour,
                      marker="o", label="%s, seed %s" % (label, seed))
    axes.set_xticks(range(1, max(len(c) for runs in result["curves"].values()
                                 for c in runs.values()) + 1))
    axes.set_xlabel("epoch")
    axes.set_ylabel("top-1, 10,000 CIFAR-10 test images (%)")
    axes.set_title(textwrap.fill("%s: %s" % (result["recipe"], result["budget"]), 90),
                   fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        plot(json.load(handle)[sys.argv[3] if len(sys.argv) > 3 else "equal_budget"],
             sys.argv[2])
