"""Trains an image classifier: absl flags -> Env -> training.loop.TrainingRun.

  python train.py --dataset_dir=DATA --model_name=mobilenet_v2 --max_epoch=300 \
      --batch_size=256 --learning_rate=0.8 --warmup_epochs=5 --train_dir=result/1p
  python train.py --flagfile=recipes/mobilenet_v2.flags --dataset_dir=DATA --train_dir=DIR
  python train.py --flagfile=DIR/flags.txt          # repeats the run that wrote DIR

In order: the flags alone are checked; the log starts (<train_dir>/train_log.log); the
dataset is opened, an image tree or CIFAR archive converted into its cache with the
progress in that log; the Env is derived; the pre-flight checks run; flags.txt is
written; then the training run. --preflight and --restore_dry_run write nothing.
"""
import os
import sys
import time

from absl import flags

from devices import placement
from devices.ranks import rank_info_from_environ
import env as env_lib
import estimator_impl
import logger as logger_lib
from training import finetune, preflight
from training.loop import TrainingRun
from training.resilience import StopSignals, TrainingStopped, quiet_nan_hook
from utils.errors import (exit_on_user_error, reject_positional_args, run_main,
                          run_reporting_tf_errors)
from utils.files import ensure_writable_dir, write_text

env_lib.define_train_flags()
FLAGS = flags.FLAGS


def start_log(flag_values, environ):
    """The run's log: the console and <train_dir>/train_log.log (train_log_rank<k>.log
    on the other ranks), train_dir made first."""
    ensure_writable_dir(flag_values.train_dir)
    rank_id = rank_info_from_environ(environ).rank_id
    name = "train_log.log" if rank_id == 0 else "train_log_rank%d.log" % rank_id
    return logger_lib.get_logger(os.path.join(flag_values.train_dir, name))


def look_without_writing(flag_values, environ):
    """--restore_dry_run or --preflight: the Env from a dataset that is only looked at
    (an image tree is counted, not converted), then the plan or the checks; exit status."""
    console = logger_lib.get_logger()
    env = env_lib.load_env(flag_values, environ, console.info, convert=False)
    if env.restore_dry_run:  # the warm start's plan only: no session, no train_dir
        finetune.restore_dry_run(env, console)
        return 0
    return preflight.preflight_command(env)  # every check, the table, exit 0 / 2


def write_flags_file(env, flag_values):
    """<train_dir>/flags.txt: every flag of this run, for --flagfile to repeat it."""
    path = os.path.join(env.train_dir, env_lib.FLAGS_FILE)
    write_text(path, env_lib.flags_file_text(flag_values, header=(
        "train.py's flags of the run started %s in this folder" % time.strftime("%c"),
        "repeat it with: python train.py --flagfile=%s" % path)))


def check_flags(flag_values, argv):
    """The flags alone, before any file is looked at: a command line's value replaces
    a flagfile's in the other unit (env.prefer_command_line), then every check."""
    env_lib.prefer_command_line(argv, flag_values)
    env_lib.check_flag_values(flag_values)


def derive_env(flag_values, environ):
    """(Env, log) of checked flags: the log started, the dataset opened (converted, if
    need be, into the log), the Env derived."""
    log = start_log(flag_values, environ)
    env = env_lib.Env.from_flags(
        flag_values, env_lib.gather_facts(flag_values, environ, log.info), environ)
    return env, log


def train(flag_values, argv, environ, signals=None):
    """The run of parsed flags (``argv``: the command line as given, for
    env.prefer_command_line; ``environ``: the process environment); exit status.
    UserError for a mistake; TrainingStopped after a signal."""
    check_flags(flag_values, argv)
    if flag_values.restore_dry_run or flag_values.preflight:
        return look_without_writing(flag_values, environ)
    env, log = derive_env(flag_values, environ)
    stopped_by_check = preflight.check_before_training(env, log, environ)  # before any graph
    if stopped_by_check:
        return stopped_by_check
    if env.is_chief:
        write_flags_file(env, flag_values)
    device = placement.create(env, log)
    run = TrainingRun(env, device, lambda warm_start: estimator_impl.build_estimator(
        env, device, log, warm_start), log, signals)
    try:
        run_reporting_tf_errors(run.run)
    except TrainingStopped as stopped:
        log.info(stopped.describe())
        return stopped.exit_code
    return 0


@exit_on_user_error
def main(argv):
    """Trains as the flags say; exit 0, 2 on a user mistake, 128 + signal when stopped."""
    reject_positional_args(argv)
    # SIGTERM / SIGINT from here on: finish the step, write a checkpoint, exit 128 + signal.
    signals = StopSignals().install()
    logger_lib.quiet_tensorflow(FLAGS.verbose)
    if not FLAGS.verbose:
        quiet_nan_hook()
    return train(FLAGS, sys.argv, dict(os.environ), signals)


if __name__ == "__main__":
    run_main(main)
