"""Command lines of our own programs (train.py, the evaluator) as the harness runs them,
and how their output turns into figures. No TF here: the harness runs them as
subprocesses, so each figure includes exactly what a user's run pays.
"""
import os

from benchmarks import measure


def train_flags(settings, dataset_dir, train_dir, synthetic, max_steps, log_every):
    """train.py flags shared by the Estimator runs and the bare-session loop, so both
    build the same graph. Checkpoints only at the end (the Estimator always writes one
    there); progress lines every ``log_every`` steps are the measurement windows."""
    flags = ["--dataset_dir=%s" % dataset_dir, "--train_dir=%s" % train_dir,
             "--model_name=mobilenet_v2", "--num_classes=%d" % settings.num_classes,
             "--train_image_size=%d" % settings.image_size,
             "--batch_size=%d" % settings.batch_size, "--max_train_steps=%d" % max_steps,
             "--log_every_n_steps=%d" % log_every, "--save_checkpoints_steps=1000000",
             "--device=cpu", "--optimizer=momentum", "--momentum=0.9"]
    if synthetic:
        flags.append("--use_synthetic_data")
    return flags


def train_command(python, repo_root, flags):
    return [python, os.path.join(repo_root, "train.py")] + list(flags)


def training_figure(lines, settings):
    """{"median": img/s, "windows": [...]} of one train.py run's steady-state lines."""
    return measure.summarize(measure.progress_rates(lines, settings.warmup_steps,
                                                    settings.window))


def eval_command(python, repo_root, settings, dataset_dir, checkpoint_dir, eval_dir):
    """The evaluator over the train split's records (more batches than validation holds),
    full batches only, a progress line per batch."""
    return [python, os.path.join(repo_root, "eval_image_classifier_mobilenet.py"),
            "--checkpoint_path=%s" % checkpoint_dir, "--dataset_dir=%s" % dataset_dir,
            "--model_name=mobilenet_v2", "--num_classes=%d" % settings.num_classes,
            "--eval_image_size=%d" % settings.image_size,
            "--batch_size=%d" % settings.batch_size, "--split=train",
            "--max_num_batches=%d" % settings.eval_batches, "--log_every_n_batches=1",
            "--eval_dir=%s" % eval_dir, "--device=cpu"]


def eval_figure(lines, settings):
    return measure.summarize(measure.eval_rates(lines, settings.eval_warmup_batches, 1))


def startup_seconds(timed_lines):
    """Seconds from process launch to train.py's first progress line (None if none)."""
    return measure.first_progress_time(timed_lines)
