"""Training on the digits (conftest's ``digits``) as the export and quantization tests
do: one set of flags for every run, so that a fine-tune starts as its float model did."""
import os

from tests.cli_helpers import run_python

MODEL = "mobilenet_v2_035"
# Deterministic: two runs write the same checkpoint tensors bit for bit. The random
# crops (--min_crop_area below 1) are not seeded by --seed (the v1 op
# sample_distorted_bounding_box, called without a seed, ignores the graph-level one),
# and with them the same command gave top-1 0.66-0.9 from run to run; 1.0 crops the
# whole image, and one data thread fixes the order of whatever the pipeline draws.
TRAIN_FLAGS = ("--model_name=" + MODEL, "--train_image_size=32", "--batch_size=32",
               "--optimizer=momentum", "--learning_rate_decay_type=cosine",
               "--label_smoothing=0.1", "--bn_decay=0.9", "--min_crop_area=1.0",
               "--random_flip=false", "--data_threads=1", "--log_every_n_steps=100",
               "--seed=3")
# The shared float model's run: 10 epochs of the 1438 training images, 32 a step.
FLOAT_EPOCHS = 10
FLOAT_FLAGS = ("--max_epoch=%d" % FLOAT_EPOCHS, "--learning_rate=0.02", "--warmup_epochs=1",
               "--moving_average_decay=0.99")

# The QAT fine-tune of the float model (conftest's ``digits_qat``): 2 epochs (88 steps),
# quantized from the first, batch norm frozen from step 60.
QAT_FLAGS = ("--max_epoch=2", "--learning_rate=0.001", "--restore_exclude=none",
             "--quantize_delay=0", "--freeze_bn_delay=60")


def train(digits, name, *flags):
    """(train_dir, completed process) of train.py on the digits into ``digits``/``name``
    with TRAIN_FLAGS and ``flags``; fails the test if it fails."""
    train_dir = os.path.join(digits, name)
    out = run_python("train.py", "--dataset_dir=" + os.path.join(digits, "records"),
                     "--train_dir=" + train_dir, *(TRAIN_FLAGS + flags))
    assert out.returncode == 0, out.stderr[-3000:]
    return train_dir, out


def evaluator(digits, name):
    """An in-process Evaluator of the digits' validation split (batches of 100, host),
    writing into ``digits``/``name``."""
    import logger as logger_lib
    from datasets import dataset_factory
    from evaluation.config import EvalConfig
    from evaluation.evaluator import Evaluator
    return Evaluator(EvalConfig(
        dataset=dataset_factory.get_dataset("auto", os.path.join(digits, "records")),
        split="validation", model_name=MODEL, num_classes=10, labels_offset=0,
        image_size=32, preprocessing_name="inception", central_fraction=0.875,
        batch_size=100, max_num_batches=None, use_ema="auto", log_every_n_batches=100,
        eval_dir=os.path.join(digits, name), data_threads=1, device="host",
        precision_mode=None), logger_lib.get_logger())
