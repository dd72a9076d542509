# Published training recipes, written once for train_1p.sh and train_8p.sh (which source
# this file). RECIPE picks one (default mobilenet_v2):
#
#   RECIPE                      per-device batch, peak LR per 256 images, expected top-1
#   mobilenet_v2                256, 0.1,   72.0 (1.0, TF-Slim) - momentum, cosine, 300 epochs
#   mnasnet_a1, mnasnet_b1      128, 0.016, 75.2 / 74.0 (paper) - RMSProp eps 1e-3, 350 epochs
#   mobilenet_v3_large, _small  128, 0.00625, 75.2 / 67.4 (paper) - RMSProp, exp. decay
#   efficientnet_v2_s_finetune  64,  0.0005, 83.9 (automl, ImageNet-1k) - from --restore_path
#   mobilenet_v2_cifar10        128, 0.2,   94.43 (kuangliu/pytorch-cifar) - 32 px, stride 8,
#   mobilenet_v3_small_cifar10  128, 0.2,   none published - SGD, cosine, 200 epochs
#   mobilenet_v2_cifar10_qat    128, 0.01,  93.56 (MindSpore SimQAT) - int8 QAT fine-tune of
#                               a mobilenet_v2_cifar10 run (--restore_path), 15 epochs
#
# The peak LR scales linearly with the global batch (batch x RANK_SIZE devices).
#
# train_recipe DATA_DIR TRAIN_DIR [extra train.py flags...] replaces the shell with
#   train.py. The caller's flags come last, so they override the recipe (the last value
#   of a flag wins); a caller's --max_train_steps or --max_epoch replaces the recipe's
#   --max_epoch (train.py takes only one of the two). RECIPE_DRY_RUN=1 prints the command
#   instead of running it.
train_recipe() {
  local data_dir="$1" train_dir="$2" arg
  shift 2
  local recipe="${RECIPE:-mobilenet_v2}" batch lr_per_256 epochs flags
  case "$recipe" in
    mobilenet_v2)
      batch=256 lr_per_256=0.1 epochs=300
      flags=(--model_name=mobilenet_v2 --optimizer=momentum --momentum=0.9
             --learning_rate_decay_type=cosine --warmup_epochs=5 --weight_decay=0.00004
             --label_smoothing=0.1 --moving_average_decay=0.9999) ;;
    mnasnet_a1|mnasnet_b1)
      batch=128 lr_per_256=0.016 epochs=350
      flags=(--model_name="$recipe" --optimizer=rmsprop --rmsprop_decay=0.9 --momentum=0.9
             --opt_epsilon=0.001 --warmup_epochs=5 --learning_rate_decay_type=exponential
             --learning_rate_decay_factor=0.97 --num_epochs_per_decay=2.4
             --weight_decay=0.00001 --label_smoothing=0.1 --moving_average_decay=0.9999
             --bn_decay=0.99 --dropout_keep_prob=0.8) ;;
    mobilenet_v3_large|mobilenet_v3_small)
      batch=128 lr_per_256=0.00625 epochs=350
      flags=(--model_name="$recipe" --optimizer=rmsprop --rmsprop_decay=0.9 --momentum=0.9
             --opt_epsilon=0.001 --learning_rate_decay_type=exponential
             --learning_rate_decay_factor=0.99 --num_epochs_per_decay=3
             --weight_decay=0.00001 --dropout_keep_prob=0.8 --moving_average_decay=0.9999
             --bn_decay=0.99) ;;
    efficientnet_v2_s_finetune)
      batch=64 lr_per_256=0.0005 epochs=15
      flags=(--model_name=efficientnet_v2_s --train_image_size=384 --optimizer=rmsprop
             --rmsprop_decay=0.9 --momentum=0.9 --opt_epsilon=0.001
             --learning_rate_decay_type=fixed --warmup_epochs=1 --weight_decay=0.00001
             --label_smoothing=0.1 --moving_average_decay=0.9996 --drop_path_rate=0.2
             --dropout_keep_prob=1.0 --bn_decay=0.9 --clip_gradient_norm=5) ;;
    mobilenet_v2_cifar10|mobilenet_v3_small_cifar10)
      # kuangliu/pytorch-cifar's main.py: SGD 0.1 at batch 128, momentum 0.9, weight
      # decay 5e-4 (torch's = slim's L2 scale), cosine over 200 epochs, no warmup, pad-4
      # crops and flips (the cifar preprocessing), batch-norm momentum 0.1, no dropout.
      batch=128 lr_per_256=0.2 epochs=200
      flags=(--model_name="${recipe%10}" --train_image_size=32 --optimizer=momentum
             --momentum=0.9 --learning_rate_decay_type=cosine --warmup_epochs=0
             --weight_decay=0.0005 --label_smoothing=0 --dropout_keep_prob=1.0
             --bn_decay=0.9) ;;
    mobilenet_v2_cifar10_qat)
      # Quantization-aware fine-tune of the float CIFAR-10 model, as TF-Slim advises
      # (quantize from the start of a fine-tune) and MindSpore's SimQAT does: the
      # float recipe at a twentieth of its rate, batch norm frozen for the last third
      # (5 of 15 epochs of 50,000 images at the global batch).
      batch=128 lr_per_256=0.01 epochs=15
      local restore="" global_batch steps_per_epoch
      for arg in "$@"; do
        case "$arg" in --restore_path=*) restore="${arg#--restore_path=}" ;; esac
      done
      if [ -z "$restore" ]; then
        echo "error: RECIPE=$recipe fine-tunes a float checkpoint: pass --restore_path=TRAIN_DIR of a RECIPE=mobilenet_v2_cifar10 run" >&2
        exit 2
      fi
      global_batch=$((batch * ${RANK_SIZE:-1}))
      steps_per_epoch=$(((50000 + global_batch - 1) / global_batch))
      flags=(--model_name=mobilenet_v2_cifar --train_image_size=32 --optimizer=momentum
             --momentum=0.9 --learning_rate_decay_type=cosine --warmup_epochs=0
             --weight_decay=0.0005 --label_smoothing=0 --dropout_keep_prob=1.0
             --bn_decay=0.9 --restore_exclude=none --quantize_delay=0
             --freeze_bn_delay=$((steps_per_epoch * 10))) ;;
    *)
      echo "error: RECIPE=$recipe is not a recipe; choose mobilenet_v2, mnasnet_a1, mnasnet_b1, mobilenet_v3_large, mobilenet_v3_small, efficientnet_v2_s_finetune, mobilenet_v2_cifar10, mobilenet_v3_small_cifar10 or mobilenet_v2_cifar10_qat" >&2
      exit 2 ;;
  esac
  local length=(--max_epoch="$epochs")
  for arg in "$@"; do
    case "$arg" in --max_train_steps=*|--max_epoch=*) length=() ;; esac
  done
  local learning_rate
  learning_rate="$(awk -v r="$lr_per_256" -v b="$batch" -v n="${RANK_SIZE:-1}" \
                   'BEGIN { printf "%.6g", r * b * n / 256 }')"
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local command=("$root/.venv/bin/python" "$root/train.py"
    --dataset_dir="$data_dir" --train_dir="$train_dir" --device=auto
    --batch_size="$batch" "${length[@]}" --learning_rate="$learning_rate"
    --iterations_per_loop=10 "${flags[@]}" "$@")
  if [ -n "${RECIPE_DRY_RUN:-}" ]; then
    echo "${command[@]}"
    return 0
  fi
  exec "${command[@]}"
}
