#!/usr/bin/env bash
# Creates (or reuses) .venv at the repository root with the pinned requirements.
# Idempotent: a second run with unchanged requirements files does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV_DIR:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/no-deps-requirements.txt" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
echo "setup_env: installing pinned requirements into $venv (first run takes a few minutes)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  -r "$root/no-deps-requirements.txt"
echo "$want" > "$stamp"
echo "setup_env: ready"
