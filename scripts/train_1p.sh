#!/usr/bin/env bash
# One device: the recipe of train_recipe.sh (RECIPE, default MobileNetV2: batch 256, peak
# LR 0.1) as rank 0 of 1 (one GPU even when the host has more: see run_8p.sh).
# Usage: bash scripts/train_1p.sh DATA_DIR TRAIN_DIR [extra train.py flags...]
#   Checkpoints, summaries and train_log.log go to TRAIN_DIR. Extra flags override the
#   recipe (the last value of a flag wins).
set -euo pipefail
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data_dir="${1:?usage: train_1p.sh DATA_DIR TRAIN_DIR [flags...]}"
train_dir="${2:?usage: train_1p.sh DATA_DIR TRAIN_DIR [flags...]}"
shift 2
export RANK_SIZE=1 RANK_ID=0 DEVICE_ID="${DEVICE_ID:-0}"
source "$scripts/train_recipe.sh"
train_recipe "$data_dir" "$train_dir" --num_gpus=1 "$@"
