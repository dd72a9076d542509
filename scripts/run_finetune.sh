#!/usr/bin/env bash
# Fine-tunes a checkpoint on your own images, end to end:
#   1. converts IMAGE_DIR/train and IMAGE_DIR/validation (one folder per class) to TFRecords,
#   2. trains from CHECKPOINT with the head replaced for your classes,
#   3. evaluates the result.
# Usage: bash scripts/run_finetune.sh IMAGE_DIR CHECKPOINT [extra train.py flags...]
#   CHECKPOINT: a checkpoint prefix or directory, e.g. the published
#   mobilenet_v2_1.0_224.ckpt or a training directory of ours.
#   Work goes to result/finetune/ (or $RESULT_DIR); defaults: mobilenet_v2, 10 epochs,
#   head excluded from the restore. Add --freeze_backbone to train the head only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage="usage: bash scripts/run_finetune.sh IMAGE_DIR CHECKPOINT [flags...]"
image_dir="${1:?$usage}"
checkpoint="${2:?$usage}"
shift 2
for split in train validation; do
  if [ ! -d "$image_dir/$split" ]; then
    echo "error: $image_dir/$split is missing; IMAGE_DIR needs train/ and validation/ folders of class folders" >&2
    exit 2
  fi
done
model=mobilenet_v2
for arg in "$@"; do
  case "$arg" in --model_name=*) model="${arg#--model_name=}" ;; esac
done
result="${RESULT_DIR:-$root/result/finetune}"
bash "$root/scripts/setup_env.sh"
py="$root/.venv/bin/python"
cd "$root"

if [ ! -f "$result/records/dataset_meta.json" ]; then
  echo "== converting $image_dir"
  "$py" -m datasets.build_tfrecords --train_directory="$image_dir/train" \
    --validation_directory="$image_dir/validation" --output_directory="$result/records"
fi
echo "== fine-tuning $model from $checkpoint"
"$py" train.py --dataset_dir="$result/records" --train_dir="$result/train" \
  --model_name="$model" --restore_path="$checkpoint" --max_epoch=10 --batch_size=32 \
  --learning_rate=0.01 --warmup_epochs=1 --learning_rate_decay_type=cosine \
  --label_smoothing=0.1 --moving_average_decay=0.999 "$@"
echo "== evaluating"
eval_flags=()
for arg in "$@"; do
  case "$arg" in --train_image_size=*) eval_flags+=("--eval_image_size=${arg#--train_image_size=}") ;;
                 --num_classes=*|--labels_offset=*) eval_flags+=("$arg") ;; esac
done
"$py" eval_image_classifier_mobilenet.py --checkpoint_path="$result/train" \
  --dataset_dir="$result/records" --model_name="$model" "${eval_flags[@]}"
