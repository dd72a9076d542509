#!/usr/bin/env bash
# Trains on one device (NPU, GPU or CPU, found automatically) with the 1p recipe.
# Usage: bash scripts/run_1p.sh [DATA_DIR] [extra train.py flags...]
#   DATA_DIR defaults to $DATA_DIR. Results (checkpoints, train_log.log, console log)
#   go to result/1p/ unless RESULT_DIR is set.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/dataset_arg.sh"
take_dataset_dir run_1p.sh "$@"
shift "$data_args_used"
result_dir="${RESULT_DIR:-$root/result/1p}"
mkdir -p "$result_dir"
bash "$root/scripts/setup_env.sh"
log="$result_dir/train_$(date +%Y%m%d_%H%M%S).log"
echo "training on one device; console log: $log"
set -o pipefail
bash "$root/scripts/train_1p.sh" "$data_dir" "$result_dir" "$@" 2>&1 | tee "$log"
