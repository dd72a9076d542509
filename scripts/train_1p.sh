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
# One device, named by both variables: tf_adapter trains on ASCEND_DEVICE_ID and reads
# DEVICE_ID only when that is unset, so whichever the caller set fills the other (0 when
# neither; train.py refuses the two set to different devices).
export RANK_SIZE=1 RANK_ID=0 ASCEND_DEVICE_ID="${ASCEND_DEVICE_ID:-${DEVICE_ID:-0}}"
export DEVICE_ID="${DEVICE_ID:-$ASCEND_DEVICE_ID}"
source "$scripts/train_recipe.sh"
train_recipe "$data_dir" "$train_dir" --num_gpus=1 "$@"
