#!/usr/bin/env bash
# End to end on a real small dataset, from a fresh machine: scikit-learn's digits ->
# JPEG image tree -> TFRecord shards (our converter) -> train MobileNetV2-0.35 at 32 px
# on the CPU -> evaluate the final checkpoint -> top-1 / top-5 -> int8 TFLite -> its top-1.
# Work goes to demo_output/ (or $DEMO_DIR); a rerun reuses what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
py="$root/.venv/bin/python"
work="${DEMO_DIR:-$root/demo_output}"
start=$SECONDS

if [ ! -d "$work/images" ]; then
  echo "== 1/5 writing the digits as an image tree"
  "$py" -m datasets.digits_demo --output_dir="$work/images.partial" --image_size=32
  mv "$work/images.partial" "$work/images"
fi
if [ ! -f "$work/records/dataset_meta.json" ]; then
  echo "== 2/5 converting the image tree to TFRecord shards"
  "$py" -m datasets.build_tfrecords --train_directory="$work/images/train" \
    --validation_directory="$work/images/validation" --output_directory="$work/records" \
    --train_shards=4 --validation_shards=2 --overwrite
fi
echo "== 3/5 training mobilenet_v2_035 at 32 px (progress: step, epoch, images/sec, ETA)"
"$py" train.py --dataset_dir="$work/records" --train_dir="$work/train" \
  --model_name=mobilenet_v2_035 --train_image_size=32 --batch_size=32 --max_epoch=40 \
  --optimizer=momentum --learning_rate=0.005 --learning_rate_decay_type=cosine \
  --warmup_epochs=1 --weight_decay=0.00004 --label_smoothing=0.1 --bn_decay=0.9 \
  --moving_average_decay=0.99 --min_crop_area=0.5 --random_flip=false \
  --log_every_n_steps=50 "$@"
echo "== 4/5 evaluating the final checkpoint on the validation split"
"$py" eval_image_classifier_mobilenet.py --checkpoint_path="$work/train" \
  --dataset_dir="$work/records" --batch_size=100 | tee "$work/eval.log"
echo "== 5/5 exporting it as a full-integer int8 TFLite model and evaluating that"
"$py" export_model.py --checkpoint_path="$work/train" --format=tflite_int8 \
  --output="$work/model_int8.tflite" --overwrite
"$py" eval_image_classifier_mobilenet.py --model_file="$work/model_int8.tflite" \
  --dataset_dir="$work/records" --batch_size=100 --eval_dir="$work/train/eval" \
  | tee -a "$work/eval.log"
echo "demo finished in $((SECONDS - start)) s; results: $work/train/eval/eval_results.json"
