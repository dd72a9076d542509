"""The lint step: ruff with pyflakes' checks (ruff.toml at the root) over every file, so
an undefined name, or an import or variable left unused, fails the quick tier."""
import subprocess
import sys

from tests.cli_helpers import ROOT


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", ROOT],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_would_catch_an_undefined_name(tmp_path):
    """The step is live: the same configuration fails a file with an undefined name and
    an unused import."""
    bad = tmp_path / "bad.py"
    bad.write_text(u"import os\n\n\ndef f():\n    return undefined_name\n")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--config", str(ROOT) + "/ruff.toml", str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "F401" in done.stdout and "F821" in done.stdout
