"""train.py's flags parsed in-process, as its main sees them, for tests that need real
absl parsing (flagfiles, the command line's precedence) without starting a process."""
import copy

from absl import flags

from datasets import dataset_factory
import env as env_lib
from utils import errors


def fresh_train_flags():
    """A FlagValues holding unparsed copies of train.py's flags."""
    env_lib.define_train_flags()
    values = flags.FlagValues()
    for flag in flags.FLAGS.get_flags_for_module(env_lib):
        values[flag.name] = copy.deepcopy(flag)
    return values


def parse_train_flags(*args):
    """fresh_train_flags parsed from ``args`` (a --flagfile among them) with
    env.prefer_command_line applied."""
    values = fresh_train_flags()
    argv = ["train.py"] + list(args)
    values(argv)
    env_lib.prefer_command_line(argv, values)
    return values


def train_error_line(args, environ=None):
    """The "error: ..." line train.py ends with for the command line ``args`` in the
    process environment ``environ``, found in-process as its main finds it (absl's
    parse, train.train's steps up to the Env, the same formatters), or None when none
    of them stops it: the run itself is not started."""
    import train
    values = fresh_train_flags()
    argv = ["train.py"] + list(args)
    try:
        left = values(argv)
    except flags.Error as err:
        return errors.flag_error_line(err)
    try:
        errors.reject_positional_args(left)
        train.check_flags(values, argv)
        train.derive_env(values, environ or {})
    except Exception as err:  # noqa: BLE001 (what is no user error fails the test)
        line = errors.error_line(err)
        if line is None:
            raise
        return line
    return None


def imagenet_facts(device="cpu", restore_checkpoint=None, train_images=1281167):
    """RunFacts of an ImageNet folder that is never looked at (the descriptor is built
    from numbers only)."""
    dataset = dataset_factory.DatasetSpec("imagenet", "/nowhere/imagenet", 1001,
                                          {"train": train_images, "validation": 50000})
    return env_lib.RunFacts(dataset=dataset, device=device, visible_gpus=0,
                            restore_checkpoint=restore_checkpoint)


def cifar10_facts(restore_checkpoint=None):
    dataset = dataset_factory.DatasetSpec("cifar10", "/nowhere/cifar10", 10,
                                          {"train": 50000, "validation": 10000})
    return env_lib.RunFacts(dataset=dataset, device="cpu", visible_gpus=0,
                            restore_checkpoint=restore_checkpoint)
