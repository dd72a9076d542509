"""train.py's flags parsed in-process, as its main sees them, for tests that need real
absl parsing (flagfiles, the command line's precedence) without starting a process."""
import copy

from absl import flags

from datasets import dataset_factory
import env as env_lib


def parse_train_flags(*args):
    """A fresh FlagValues holding copies of train.py's flags, parsed from ``args`` (a
    --flagfile among them) with env.prefer_command_line applied."""
    env_lib.define_train_flags()
    values = flags.FlagValues()
    for flag in flags.FLAGS.get_flags_for_module(env_lib):
        values[flag.name] = copy.deepcopy(flag)
    argv = ["train.py"] + list(args)
    values(argv)
    env_lib.prefer_command_line(argv, values)
    return values


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
