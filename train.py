"""Trains an image classifier: absl flags -> Env -> EstimatorImpl.train().

  python train.py --dataset_dir=DATA --model_name=mobilenet_v2 --max_epoch=300 \
      --batch_size=256 --learning_rate=0.8 --warmup_epochs=5 --train_dir=result/1p
"""
import os
import sys

from absl import flags

import env as env_lib
from training import finetune
import logger as logger_lib
from training import preflight
from estimator_impl import EstimatorImpl
from training.resilience import StopSignals, TrainingStopped, quiet_nan_hook
from utils.errors import (exit_on_user_error, reject_positional_args, run_main,
                          run_reporting_tf_errors)
from utils.files import ensure_writable_dir

env_lib.define_train_flags()
FLAGS = flags.FLAGS


@exit_on_user_error
def main(argv):
    reject_positional_args(argv)
    # SIGTERM / SIGINT from here on: finish the step, write a checkpoint, exit 128 + signal.
    signals = StopSignals().install()
    logger_lib.quiet_tensorflow(FLAGS.verbose)
    if not FLAGS.verbose:
        quiet_nan_hook()
    env = env_lib.Env.from_flags(FLAGS)
    if env.restore_dry_run:  # the warm start's plan only: no session, no train_dir
        finetune.restore_dry_run(env, logger_lib.get_logger())
        return 0
    if env.preflight:  # every check, the table, exit 0 / 2: no graph, no train_dir
        return preflight.preflight_command(env)
    ensure_writable_dir(env.train_dir)
    log_name = "train_log.log" if env.is_chief else "train_log_rank%d.log" % env.rank_id
    log = logger_lib.get_logger(os.path.join(env.train_dir, log_name))
    stopped_by_check = preflight.check_before_training(env, log)  # before any graph
    if stopped_by_check:
        return stopped_by_check
    try:
        run_reporting_tf_errors(EstimatorImpl(env, log, signals).train)
    except TrainingStopped as stopped:
        log.info(stopped.describe())
        sys.exit(stopped.exit_code)
    return 0


if __name__ == "__main__":
    run_main(main)
