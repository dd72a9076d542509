"""The two run sizes of the harness: quick (smoke test) and full (the measurement).

One place holds every step count, so the figures of a run all use the same batch,
resolution, warm-up and window, and a reader of results.json sees them in "settings".
Full mode is sized for this project's 2-core CPU, where a MobileNetV2 step at batch 32,
224 px takes 2.5-4 s and each TF process spends 20-60 s starting: 5 warm-up steps (one
progress window; the first step holds the one-time costs) and 3 measured windows of 5
steps per run, 3 runs per figure, keep the whole run near 25-30 minutes. Lengthen with
harness flags (--measure_steps, --repeats) on a faster machine. Warm-up and measured
steps stay multiples of the window, so windows line up with train.py's progress lines.
"""
import collections

Settings = collections.namedtuple("Settings", [
    "mode",
    "repeats",            # repetitions of every benchmark (figures are medians over them)
    "batch_size",
    "image_size",
    "num_classes",        # every model's head (our train.py gets --num_classes)
    "warmup_steps",       # training steps not measured (allocation, tuning)
    "measure_steps",      # training steps measured after warm-up
    "window",             # steps per throughput window (= train.py --log_every_n_steps)
    "train_images",       # JPEGs the harness writes for the TFRecord benchmarks
    "validation_images",
    "num_image_classes",  # class folders of that tree (labels < num_classes)
    "pipeline_warmup_batches",
    "pipeline_batches",   # batches measured for the input pipeline and the decode ceiling
    "eval_warmup_batches",
    "eval_batches",       # batches the evaluator runs (over the train split's records)
    "timeout_s",          # one subprocess's limit
])

QUICK = Settings(
    mode="quick", repeats=1, batch_size=32, image_size=224, num_classes=1000,
    warmup_steps=1, measure_steps=2, window=1, train_images=128, validation_images=32,
    num_image_classes=4, pipeline_warmup_batches=1, pipeline_batches=4,
    eval_warmup_batches=1, eval_batches=4, timeout_s=300)

FULL = Settings(
    mode="full", repeats=3, batch_size=32, image_size=224, num_classes=1000,
    warmup_steps=5, measure_steps=15, window=5, train_images=500, validation_images=100,
    num_image_classes=10, pipeline_warmup_batches=5, pipeline_batches=40,
    eval_warmup_batches=2, eval_batches=15, timeout_s=600)


def get(quick):
    return QUICK if quick else FULL


def total_steps(settings):
    return settings.warmup_steps + settings.measure_steps
