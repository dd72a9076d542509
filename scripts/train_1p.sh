#!/usr/bin/env bash
# One device: MobileNetV2's recipe scaled to one device (global batch 256, cosine LR
# from 0.1 with 5 warmup epochs, label smoothing 0.1, EMA 0.9999, 300 epochs).
# Usage: bash scripts/train_1p.sh DATA_DIR TRAIN_DIR [extra train.py flags...]
# Extra flags override the recipe (the last value of a flag wins).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${1:?usage: train_1p.sh DATA_DIR TRAIN_DIR [flags...]}"
train_dir="${2:?usage: train_1p.sh DATA_DIR TRAIN_DIR [flags...]}"
shift 2
export RANK_SIZE=1 RANK_ID=0 DEVICE_ID="${DEVICE_ID:-0}"
# The run length is --max_epoch=300 unless the caller gives --max_train_steps or its own
# --max_epoch (the two flags exclude each other).
length=(--max_epoch=300)
for arg in "$@"; do
  case "$arg" in --max_train_steps=*|--max_epoch=*) length=() ;; esac
done
exec "$root/.venv/bin/python" "$root/train.py" \
  --dataset_dir="$data_dir" --train_dir="$train_dir" \
  --model_name=mobilenet_v2 --device=auto \
  --batch_size=256 "${length[@]}" --optimizer=momentum --momentum=0.9 \
  --learning_rate_decay_type=cosine --learning_rate=0.1 --warmup_epochs=5 \
  --weight_decay=0.00004 --label_smoothing=0.1 --moving_average_decay=0.9999 \
  --iterations_per_loop=10 \
  "$@"
