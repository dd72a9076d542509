#!/usr/bin/env bash
# The test suite from a fresh machine: bootstraps .venv, then runs pytest. CI (.ci/run)
# calls exactly this: the whole suite.
#   bash scripts/run_tests.sh            the whole suite (every test, the slow included)
#   bash scripts/run_tests.sh --quick    the quick tier: every test not marked slow
#                                        (pytest.ini), the lint step among them
# Other arguments go to pytest (a file, -k NAME, --durations=30 ...). The tests run in
# TEST_WORKERS processes (default: one per CPU), each taking whole modules, so a module's
# fixtures are built once; TEST_WORKERS=0 runs them in this process.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
bash scripts/setup_bench_env.sh  # torch: the reference of tests/test_training_parity.py
export PYTHONDONTWRITEBYTECODE=1
args=()
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then
    args+=(-m "not slow")
  else
    args+=("$arg")
  fi
done
# Test files given? Else the whole tests/ folder.
paths=(tests)
for arg in "${args[@]+"${args[@]}"}"; do
  case "$arg" in tests/*|*.py|*::*) paths=() ;; esac
done
workers="${TEST_WORKERS:-$(nproc)}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadscope "${args[@]+"${args[@]}"}" "${paths[@]+"${paths[@]}"}"
