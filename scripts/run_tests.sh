#!/usr/bin/env bash
# The test suite from a fresh machine: bootstraps .venv, then runs pytest. CI (.ci/run)
# calls exactly this: the whole suite.
#   bash scripts/run_tests.sh            the whole suite (every test, the slow included)
#   bash scripts/run_tests.sh --quick    the quick tier: every test not marked slow
#                                        (pytest.ini), the lint step among them
# Other arguments go to pytest (a file, -k NAME, --durations=30 ...).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
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
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${args[@]+"${args[@]}"}" "${paths[@]+"${paths[@]}"}"
