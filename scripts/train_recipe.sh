# The MobileNetV2 training recipe, written once for train_1p.sh and train_8p.sh (which
# source this file): batch 256 per device, momentum 0.9, cosine LR after 5 warmup epochs,
# weight decay 4e-5, label smoothing 0.1, EMA 0.9999, 300 epochs. Only the peak LR
# differs with the number of devices (linear scaling: 0.1 per 256 images of global batch).
#
# train_recipe DATA_DIR TRAIN_DIR LEARNING_RATE [extra train.py flags...]
#   replaces the shell with train.py. The caller's flags come last, so they override the
#   recipe (the last value of a flag wins); a caller's --max_train_steps or --max_epoch
#   replaces the default --max_epoch=300 (train.py takes only one of the two).
train_recipe() {
  local data_dir="$1" train_dir="$2" learning_rate="$3" arg
  shift 3
  local length=(--max_epoch=300)
  for arg in "$@"; do
    case "$arg" in --max_train_steps=*|--max_epoch=*) length=() ;; esac
  done
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  exec "$root/.venv/bin/python" "$root/train.py" \
    --dataset_dir="$data_dir" --train_dir="$train_dir" \
    --model_name=mobilenet_v2 --device=auto \
    --batch_size=256 "${length[@]}" --optimizer=momentum --momentum=0.9 \
    --learning_rate_decay_type=cosine --learning_rate="$learning_rate" --warmup_epochs=5 \
    --weight_decay=0.00004 --label_smoothing=0.1 --moving_average_decay=0.9999 \
    --iterations_per_loop=10 \
    "$@"
}
