#!/usr/bin/env bash
# Trains on one device (NPU, GPU or CPU, found automatically) with the 1p recipe.
# Usage: bash scripts/run_1p.sh [DATA_DIR] [extra train.py flags...]
#   DATA_DIR defaults to $DATA_DIR. Results (checkpoints, train_log.log, console log)
#   go to result/1p/ unless RESULT_DIR is set.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${DATA_DIR:-}"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then data_dir="$1"; shift; fi
if [ -z "$data_dir" ]; then
  echo "error: no dataset; usage: bash scripts/run_1p.sh DATA_DIR [flags...] (or set DATA_DIR)" >&2
  exit 2
fi
if [ ! -d "$data_dir" ]; then
  echo "error: dataset dir $data_dir does not exist; pass the folder of TFRecord shards" >&2
  exit 2
fi
result_dir="${RESULT_DIR:-$root/result/1p}"
mkdir -p "$result_dir"
bash "$root/scripts/setup_env.sh"
log="$result_dir/train_$(date +%Y%m%d_%H%M%S).log"
echo "training on one device; console log: $log"
set -o pipefail
bash "$root/scripts/train_1p.sh" "$data_dir" "$result_dir" "$@" 2>&1 | tee "$log"
