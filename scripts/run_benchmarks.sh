#!/usr/bin/env bash
# Performance harness of issue #8: our training / input / eval / start-up figures against
# Keras and PyTorch peers, written to benchmarks/RESULTS.md and benchmarks/results.json.
#   bash scripts/run_benchmarks.sh            # full measurement (run on an idle machine)
#   bash scripts/run_benchmarks.sh --quick    # smoke test: tiny step counts, one repetition
# Other arguments go to benchmarks/harness.py (--only=..., --repeats=N, --out_dir=...).
# Installs what it needs, idempotently: .venv (scripts/setup_env.sh) for ours and Keras,
# .venv-bench (scripts/setup_bench_env.sh) for the PyTorch peer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh

bash scripts/setup_bench_env.sh
bench="${BENCH_VENV_DIR:-$root/.venv-bench}"

exec "$root/.venv/bin/python" -m benchmarks.harness --bench_python="$bench/bin/python" "$@"
