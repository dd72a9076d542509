"""What the evaluator reads before its settings are made: the dataset, the folder of
the checkpoints and the model_spec.json training wrote there, the names of the one
checkpoint evaluated, the checkpoints a sweep covers, and the device it can run on
(whether npu_bridge imports, the Ascend device nodes). evaluation/config.py makes the
settings from these and the flags, reading nothing itself."""
import os

from datasets import dataset_factory
from devices import inference, placement
from evaluation.config import host_only_reason
from nets import checkpoint_names
from utils.checkpoints import list_checkpoints, read_model_spec, resolve_checkpoint
from utils.config import Config
from utils.errors import UserError


class EvalSources(Config):
    """What read_sources found."""

    FIELDS = (
        ("dataset", "the dataset of --dataset_dir; its --split has shards"),
        ("model", "the exported model of --model_file (export.models), else None"),
        ("directory", "the folder of --checkpoint_path or --model_file (eval_dir's parent)"),
        ("recorded", "model_spec.json of that folder (utils.checkpoints.read_model_spec) "
                     "over what the checkpoint's names imply; {} for --model_file"),
        ("names", "nets.checkpoint_names view of the one checkpoint evaluated, else None"),
        ("checkpoints", "the folder's checkpoints, oldest first, for "
                        "--eval_all_checkpoints and --ledger; else None"),
        ("device", "where the network runs: npu or host (--eval_device resolved by "
                   "devices.placement; host for --ledger and --model_file)"),
        ("device_note", "why the host when --eval_device did not say so, else None"),
    )


def read_sources(f, model=None):
    """EvalSources for the evaluator's flags ``f`` (checked by config.check_flags);
    ``model``: the exported model the caller loaded from --model_file."""
    if f.watch and os.path.isfile(f.checkpoint_path):  # it may not exist yet
        raise UserError("--watch needs the training directory as --checkpoint_path (it may "
                        "not exist yet), got the file %s" % f.checkpoint_path)
    device, device_note = _eval_device(f)
    checkpoints = _swept_checkpoints(f)
    dataset = dataset_factory.get_dataset(f.dataset_name, f.dataset_dir, f.dataset_cache_dir)
    if f.split not in dataset.splits:
        raise UserError("--split=%s: the dataset has %s" % (f.split, ", ".join(dataset.splits)))
    dataset.list_files(f.split)  # no shards: one clear line now, not a TF error later
    if model is not None:
        return EvalSources(dataset=dataset, model=model, directory=checkpoint_dir(f.model_file),
                           recorded={}, names=None, checkpoints=None, device=device,
                           device_note=device_note)
    directory = checkpoint_dir(f.checkpoint_path, f.watch)
    recorded = read_model_spec(directory)
    names = _single_checkpoint_names(f)
    if names is not None:  # what automl's names say, below what training recorded
        recorded = dict(checkpoint_names.implied_spec(names, dataset.num_classes),
                        **recorded)
    return EvalSources(dataset=dataset, model=None, directory=directory, recorded=recorded,
                       names=names, checkpoints=checkpoints, device=device,
                       device_note=device_note)


def _eval_device(f):
    """(device, note): the host for the ledger and exported models, else --eval_device
    resolved (auto: npu where npu_bridge imports and an Ascend device is visible)."""
    reason = host_only_reason(f)
    if reason:
        return inference.HOST, reason
    return placement.resolve_eval_device(f.eval_device)


def checkpoint_dir(path, is_directory=False):
    """The folder of --checkpoint_path (itself when a directory, or one to watch)."""
    return path if is_directory or os.path.isdir(path) else os.path.dirname(path) or "."


def _swept_checkpoints(f):
    """The checkpoints of --checkpoint_path, oldest first, for --eval_all_checkpoints and
    --ledger (UserError when it is no directory or holds none); else None."""
    path = f.checkpoint_path
    if not (f.eval_all_checkpoints or f.ledger):
        return None
    if not os.path.isdir(path):
        raise UserError("%s needs the training directory as --checkpoint_path, got %s"
                        % ("--ledger" if f.ledger else "--eval_all_checkpoints", path))
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise UserError("no checkpoint in %s; point --checkpoint_path at a training "
                        "directory" % path)
    return checkpoints


def _single_checkpoint_names(f):
    """nets/checkpoint_names.py's view of the one checkpoint --checkpoint_path names
    (None for sweeps and --model_file); UserError when its names are automl's of
    another network than a given --model_name."""
    if f.model_file or f.watch or f.eval_all_checkpoints or f.ledger:
        return None
    return checkpoint_names.read(resolve_checkpoint(f.checkpoint_path, verify=False),
                                 f.model_name if f["model_name"].present else None)
