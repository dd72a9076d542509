#!/usr/bin/env bash
# The whole test suite from a fresh machine: bootstraps .venv, then runs pytest.
# CI (.ci/run) calls exactly this. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${@:-tests}"
