#!/usr/bin/env bash
# Trains on every device of this server (8 Ascend NPUs from the rank table, every visible
# GPU, or CPU worker processes), one process per device, with the 8p recipe (train_8p.sh).
# Usage: bash scripts/run_8p.sh [DATA_DIR] [extra train.py flags...]
#   DATA_DIR defaults to $DATA_DIR. --device=npu|gpu|cpu among the flags also tells the
#   launcher which devices to use (default: found automatically).
#   Results go to result/8p/ unless RESULT_DIR is set: rank k's console log to
#   RESULT_DIR/k/train.log (rank 0's is also shown here), the shared train_dir
#   RESULT_DIR/train gets rank 0's checkpoints, summaries and train_log.log.
#   RANK_TABLE_FILE (default rank_tables/8p.json), SERVER_ID (several servers: run this on
#   each) and RANK_SIZE are read by the launcher: python -m devices.launch --help.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/dataset_arg.sh"
take_dataset_dir run_8p.sh "$@"
shift "$data_args_used"
result_dir="${RESULT_DIR:-$root/result/8p}"
mkdir -p "$result_dir"
bash "$root/scripts/setup_env.sh"
device=()
for arg in "$@"; do
  case "$arg" in --device=*) device=("$arg") ;; esac
done
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"  # for python -m devices.launch
exec "$root/.venv/bin/python" -m devices.launch --result_dir="$result_dir" "${device[@]}" \
  -- bash "$root/scripts/train_8p.sh" "$data_dir" "$result_dir/train" "$@"
