# Published training recipes, for train_1p.sh and train_8p.sh (which source this file).
# RECIPE picks one of recipes/<name>.flags (default mobilenet_v2); each file is an absl
# flagfile saying what it trains, the top-1 its source reports and every setting, with
# the learning rate per 256 images (train.py scales it to the global batch). The table:
# docs/recipes.md.
#
# train_recipe DATA_DIR TRAIN_DIR [extra train.py flags...] replaces the shell with
#   train.py --flagfile=recipes/$RECIPE.flags. The caller's flags come after it, so they
#   override the recipe; a --max_train_steps, --learning_rate or --freeze_bn_delay given
#   there replaces the recipe's --max_epoch, --learning_rate_per_256 or
#   --freeze_bn_epochs (train.py's rule). RECIPE_DRY_RUN=1 prints the command instead
#   (and, on stderr, the rank and device variables it would run with).
train_recipe() {
  local data_dir="$1" train_dir="$2" arg
  shift 2
  local root recipe="${RECIPE:-mobilenet_v2}"
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local flagfile="$root/recipes/$recipe.flags"
  if [ ! -f "$flagfile" ]; then
    local known
    known="$(cd "$root/recipes" && ls -- *.flags | sed 's/\.flags$//' | paste -sd ' ')"
    echo "error: RECIPE=$recipe is not a recipe; choose one of: $known" >&2
    exit 2
  fi
  if grep -q '^# requires: --restore_path' "$flagfile"; then
    local restore=""
    for arg in "$@"; do
      case "$arg" in --restore_path=?*) restore=1 ;; esac
    done
    if [ -z "$restore" ]; then
      echo "error: RECIPE=$recipe fine-tunes a checkpoint: pass --restore_path=$(sed -n 's/^# requires: --restore_path (\(.*\))$/\1/p' "$flagfile")" >&2
      exit 2
    fi
  fi
  local command=("$root/.venv/bin/python" "$root/train.py" --flagfile="$flagfile"
    --dataset_dir="$data_dir" --train_dir="$train_dir" --device=auto "$@")
  if [ -n "${RECIPE_DRY_RUN:-}" ]; then
    echo "RANK_ID=${RANK_ID-} RANK_SIZE=${RANK_SIZE-} DEVICE_ID=${DEVICE_ID-}" \
      "ASCEND_DEVICE_ID=${ASCEND_DEVICE_ID-}" >&2
    echo "${command[@]}"
    return 0
  fi
  exec "${command[@]}"
}
