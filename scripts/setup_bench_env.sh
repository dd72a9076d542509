#!/usr/bin/env bash
# Creates (or reuses) .venv-bench: benchmarks/requirements.txt (torch CPU, numpy,
# matplotlib), the PyTorch side of the benchmarks and of the training-parity test.
# Idempotent: a second run with unchanged requirements does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="${BENCH_VENV_DIR:-$root/.venv-bench}"
python="${PYTHON:-python3}"
stamp="$bench/.requirements.sha256"
want="$(sha256sum "$root/benchmarks/requirements.txt" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$bench/bin/python" ]; then
  exit 0
fi
echo "setup_bench_env: installing benchmarks/requirements.txt into $bench (first run takes a few minutes)"
[ -x "$bench/bin/python" ] || "$python" -m venv "$bench"
"$bench/bin/python" -m pip install -q --disable-pip-version-check -r "$root/benchmarks/requirements.txt"
echo "$want" > "$stamp"
