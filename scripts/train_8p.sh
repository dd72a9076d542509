#!/usr/bin/env bash
# One rank of an 8-device run: the recipe of train_recipe.sh (RECIPE, default MobileNetV2:
# batch 256 per device, global 2048 on 8 devices, peak LR 0.8 = 0.1 x 8, linear scaling
# with RANK_SIZE).
# Usage: bash scripts/train_8p.sh DATA_DIR TRAIN_DIR [extra train.py flags...]
#   Started once per device by `python -m devices.launch` (see run_8p.sh), which sets
#   RANK_ID / RANK_SIZE / DEVICE_ID (and RANK_TABLE_FILE or TF_CONFIG); this script sets
#   none of them. Every rank gets the same TRAIN_DIR: rank 0 writes the checkpoints,
#   summaries and train_log.log there, rank k>0 only train_log_rank<k>.log. Extra flags
#   override the recipe (the last value of a flag wins).
set -euo pipefail
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data_dir="${1:?usage: train_8p.sh DATA_DIR TRAIN_DIR [flags...]}"
train_dir="${2:?usage: train_8p.sh DATA_DIR TRAIN_DIR [flags...]}"
shift 2
source "$scripts/train_recipe.sh"
train_recipe "$data_dir" "$train_dir" "$@"
