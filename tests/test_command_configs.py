"""The evaluator's and the exporter's settings, made in-process as their commands make
them: flags parsed into a fresh FlagValues and checked, the disk read, the config built
from both. Each mistake is the UserError whose line the command prints (exit 2; one
case per command runs end to end in test_bad_command_lines.py), and each config is
built here from values alone, with no file behind them."""
import json
import sys

from absl import flags
import pytest

from evaluation import config as eval_config
from evaluation import sources
from evaluation.config import EvalConfig
from evaluation.sources import EvalSources
from export import config as export_config
from export.config import CheckpointFacts, ExportConfig, ModelSpec
from nets.checkpoint_names import CheckpointNames
from tests.cli_helpers import evaluator_flags, exporter_flags
from utils.checkpoints import read_model_spec
from utils.errors import UserError

DATA = "--dataset_dir=/nowhere/records"
TRAIN = "--checkpoint_path=/nowhere/train"
OUTPUT = "--output=/nowhere/model.tflite"
CHECKPOINT = "/nowhere/train/model.ckpt-7"
# A checkpoint in our own names, with no quantization ranges: its names imply nothing.
OURS = CheckpointNames(CHECKPOINT, {}, {}, None)
RECORDED = {"model_name": "mobilenet_v2_035", "num_classes": 3, "labels_offset": 1,
            "train_image_size": 32, "eval_image_size": 64, "central_fraction": 0.9,
            "preprocessing_name": "inception", "dataset_dir": "/nowhere/records"}


class Dataset(object):
    """What EvalConfig.from_flags asks of a dataset descriptor."""
    num_classes = 5
    dataset_dir = "/nowhere/records"


class ExportedModel(object):
    """What EvalConfig.from_flags asks of an exported model (export.models)."""
    path = "/nowhere/model.onnx"
    image_size, num_classes, labels_offset = 96, 4, 1
    central_fraction, preprocessing_name = 0.8, "inception"
    meta = {"model_name": "mobilenet_v2"}


def eval_sources(**values):
    found = dict(dataset=Dataset(), model=None, directory="/nowhere/train",
                 recorded=RECORDED, names=OURS, checkpoints=None, device="host",
                 device_note=None)
    found.update(values)
    return EvalSources(**found)


def checkpoint_facts(**values):
    facts = dict(checkpoint=CHECKPOINT, recorded=RECORDED, names=OURS, labels=None)
    facts.update(values)
    return CheckpointFacts(**facts)


# ----------------------------------------------------------------------------- evaluator

def test_eval_config_from_values_alone():
    f = evaluator_flags(TRAIN, DATA, "--batch_size=8")
    eval_config.check_flags(f)
    found = eval_sources()
    config = EvalConfig.from_flags(f, found)
    assert config.as_dict() == dict(
        dataset=found.dataset, split="validation", model_name="mobilenet_v2_035",
        num_classes=3, labels_offset=1, image_size=64, preprocessing_name="inception",
        central_fraction=0.9, batch_size=8, max_num_batches=None, use_ema="auto",
        log_every_n_batches=10, eval_dir="/nowhere/train/eval", data_threads=None,
        device="host", precision_mode=None)
    assert config.replace(use_ema="false").as_dict() == dict(config.as_dict(),
                                                               use_ema="false")


def test_eval_flags_win_over_the_record_and_defaults_fill_the_rest():
    f = evaluator_flags(TRAIN, DATA, "--model_name=mobilenet_v2", "--eval_image_size=96",
                        "--labels_offset=0", "--eval_dir=/elsewhere")
    config = EvalConfig.from_flags(f, eval_sources())
    assert (config.model_name, config.image_size, config.labels_offset,
            config.num_classes, config.eval_dir) == ("mobilenet_v2", 96, 0, 3, "/elsewhere")
    bare = EvalConfig.from_flags(f, eval_sources(recorded={}))
    assert (bare.num_classes, bare.central_fraction) == (5, 0.875)  # the dataset's, - 0


def test_eval_config_of_an_exported_model():
    f = evaluator_flags("--model_file=/nowhere/model.onnx", DATA)
    eval_config.check_flags(f)
    config = EvalConfig.from_flags(f, eval_sources(model=ExportedModel(), recorded={},
                                                   names=None, directory="/nowhere"))
    assert (config.model_name, config.num_classes, config.labels_offset, config.image_size,
            config.central_fraction, config.eval_dir) == (
                "mobilenet_v2", 4, 1, 96, 0.8, "/nowhere/eval")
    f = evaluator_flags("--model_file=/nowhere/model.onnx", DATA, "--eval_image_size=64")
    with pytest.raises(UserError, match="--eval_image_size=64 but /nowhere/model.onnx "
                                        "takes 96 px images; drop the flag"):
        EvalConfig.from_flags(f, eval_sources(model=ExportedModel()))


@pytest.mark.parametrize("args, line", [
    ([DATA], "give --checkpoint_path (a checkpoint prefix or directory) or --model_file"),
    ([DATA, TRAIN, "--model_file=/m.onnx"], "give --checkpoint_path"),
    ([TRAIN], "--dataset_dir is required"),
    ([DATA, TRAIN, "--batch_size=0"], "--batch_size=0 must be positive"),
    ([DATA, TRAIN, "--eval_image_size=-32"], "--eval_image_size=-32 must be positive"),
    ([DATA, TRAIN, "--watch", "--watch_timeout=0"], "--watch_timeout=0 must be positive"),
    ([DATA, TRAIN, "--central_fraction=1.5"], "--central_fraction=1.5 must be in (0, 1]"),
    ([DATA, TRAIN, "--watch", "--eval_all_checkpoints"], "drop --eval_all_checkpoints"),
    ([DATA, "--model_file=/m.onnx", "--watch"], "drop them with --model_file"),
    ([DATA, TRAIN, "--average_last=3"], "--average_last=3 averages checkpoints for the "
                                        "ledger; add --ledger"),
    ([DATA, TRAIN, "--ledger", "--watch"], "--ledger evaluates every checkpoint"),
    ([DATA, TRAIN, "--ledger", "--use_ema=false"], "drop --use_ema"),
    ([DATA, TRAIN, "--ledger", "--eval_device=npu"],
     "--ledger measures on the host CPU; drop --eval_device=npu"),
    ([DATA, "--model_file=/m.onnx", "--eval_device=npu"],
     "--model_file runs the exported model in its own runtime on the host CPU; drop "
     "--eval_device=npu"),
    ([DATA, TRAIN, "--eval_device=host", "--eval_precision_mode=force_fp16"],
     "--eval_precision_mode=force_fp16 sets the NPU's precision but --eval_device=host "
     "evaluates on the host CPU; drop it"),
    ([DATA, TRAIN, "--ledger", "--eval_precision_mode=force_fp16"],
     "--eval_precision_mode=force_fp16 sets the NPU's precision but --ledger measures on "
     "the host CPU; drop it"),
])
def test_eval_flag_mistakes(args, line):
    with pytest.raises(UserError) as err:
        eval_config.check_flags(evaluator_flags(*args))
    assert line in str(err.value)


@pytest.mark.parametrize("args, fragment", [
    (["--watch_interval=soon"], "--watch_interval=soon"),
    (["--batch_size=abc"], "--batch_size=abc"),
    (["--use_ema=maybe"], "--use_ema"),
    (["--eval_device=gpu"], "--eval_device"),
    (["--eval_precision_mode=fp8"], "--eval_precision_mode"),
    (["--no_such_flag=1"], "no_such_flag"),
])
def test_eval_flags_absl_refuses(args, fragment):
    """What absl refuses while parsing; utils.errors.run_main prints it as one line."""
    with pytest.raises(flags.Error) as err:
        evaluator_flags(DATA, TRAIN, *args)
    assert fragment in str(err.value)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small dataset, an empty folder, a file, a missing path, a folder whose
    model_spec.json is broken."""
    from tests.ds_helpers import write_tiny_dataset
    tmp = tmp_path_factory.mktemp("configs")
    paths = {"missing": str(tmp / "no" / "such"), "file": str(tmp / "a_file"),
             "empty": str(tmp / "empty"), "bad_spec": str(tmp / "bad_spec")}
    paths["data"] = write_tiny_dataset(str(tmp / "ds"), num_classes=2, per_class=2)
    (tmp / "a_file").write_text("not a checkpoint\n")
    (tmp / "empty").mkdir()
    (tmp / "bad_spec").mkdir()
    (tmp / "bad_spec" / "model_spec.json").write_text("{not json")
    return paths


@pytest.mark.parametrize("args, line", [
    (["--checkpoint_path={missing}"], "no checkpoint at {missing}"),
    (["--checkpoint_path={empty}"], "no checkpoint in {empty}"),
    (["--checkpoint_path={empty}", "--split=test"], "--split=test: the dataset has"),
    (["--checkpoint_path={file}", "--watch"], "got the file {file}"),
    (["--checkpoint_path={file}", "--eval_all_checkpoints"],
     "--eval_all_checkpoints needs the training directory as --checkpoint_path"),
    (["--checkpoint_path={empty}", "--ledger"], "no checkpoint in {empty}"),
    (["--checkpoint_path={bad_spec}", "--watch"], "model_spec.json is not valid JSON"),
    (["--checkpoint_path={empty}", "--eval_device=npu"],
     "--eval_device=npu but npu_bridge does not import; run inside Ascend's TensorFlow "
     "image with the CANN environment sourced, or pass --eval_device=host"),
])
def test_what_the_evaluator_reads_first(world, args, line, monkeypatch):
    monkeypatch.setitem(sys.modules, "npu_bridge", None)  # not installed (as here)
    f = evaluator_flags("--dataset_dir=" + world["data"], *[a.format(**world) for a in args])
    eval_config.check_flags(f)
    with pytest.raises(UserError) as err:
        sources.read_sources(f)
    assert line.format(**world) in str(err.value)


# ----------------------------------------------------------------------------- exporter

def test_export_config_from_values_alone():
    f = exporter_flags(TRAIN, OUTPUT, "--format=tflite_int8")
    export_config.check_flags(f)
    config = ExportConfig.from_flags(f, checkpoint_facts(
        labels=["background", "cat", None, "dog", "extra"]))
    assert config.spec == ModelSpec(
        model_name="mobilenet_v2_035", num_classes=3, labels_offset=1, image_size=64,
        central_fraction=0.9, preprocessing_name="inception", quantization=None)
    assert config.class_names == ["cat", "1", "dog"]
    assert (config.checkpoint, config.format, config.output, config.opset) == (
        CHECKPOINT, "tflite_int8", "/nowhere/model.tflite", 13)
    assert (config.calibration_dataset_dir, config.calibration_split,
            config.num_calibration_images) == ("/nowhere/records", "train", 200)


def test_export_flags_win_and_only_int8_calibrates():
    f = exporter_flags(TRAIN, OUTPUT, "--format=tflite", "--image_size=96",
                       "--labels_offset=0", "--num_classes=4")
    config = ExportConfig.from_flags(f, checkpoint_facts())
    assert (config.spec.image_size, config.spec.labels_offset, config.spec.num_classes,
            config.class_names, config.calibration_dataset_dir) == (96, 0, 4, None, None)


def test_export_needs_what_nothing_recorded():
    bare = checkpoint_facts(recorded={})
    with pytest.raises(UserError, match="pass --model_name"):
        export_config.model_spec(bare)
    with pytest.raises(UserError, match="pass --num_classes"):
        export_config.model_spec(bare, model_name="mobilenet_v2_035")
    spec = export_config.model_spec(bare, model_name="mobilenet_v2_035", num_classes=10)
    assert (spec.image_size, spec.labels_offset, spec.central_fraction) == (224, 0, 0.875)
    f = exporter_flags(TRAIN, OUTPUT, "--format=tflite_int8", "--model_name=mobilenet_v2",
                       "--num_classes=10")
    with pytest.raises(UserError, match="tflite_int8 needs --calibration_dataset_dir"):
        ExportConfig.from_flags(f, bare)


@pytest.mark.parametrize("args, line", [
    ([OUTPUT], "--checkpoint_path is required"),
    ([TRAIN], "--output is required"),
    ([TRAIN, OUTPUT, "--image_size=0"], "--image_size=0 must be positive"),
    ([TRAIN, OUTPUT, "--num_classes=-3"], "--num_classes=-3 must be positive"),
    ([TRAIN, OUTPUT, "--num_calibration_images=0"],
     "--num_calibration_images=0 must be positive"),
    ([TRAIN, OUTPUT, "--central_fraction=0"], "--central_fraction=0.0 must be in (0, 1]"),
])
def test_export_flag_mistakes(args, line):
    with pytest.raises(UserError) as err:
        export_config.check_flags(exporter_flags(*args))
    assert line in str(err.value)


@pytest.mark.parametrize("args, fragment", [
    (["--format=jpeg"], "--format"),
    (["--opset=new"], "--opset=new"),
    (["--use_ema=maybe"], "--use_ema"),
])
def test_export_flags_absl_refuses(args, fragment):
    with pytest.raises(flags.Error) as err:
        exporter_flags(TRAIN, OUTPUT, *args)
    assert fragment in str(err.value)


# ----------------------------------------------------------------------------- model_spec.json

@pytest.mark.parametrize("written, train_size, eval_size", [
    ({"image_size": 64}, None, 64),  # before train_image_size was recorded
    ({"image_size": 64, "train_image_size": 32}, 32, 64),  # "image_size": the eval size
    ({"eval_image_size": 64, "train_image_size": 32}, 32, 64),
])
def test_model_spec_json_sizes_old_and_new(tmp_path, written, train_size, eval_size):
    (tmp_path / "model_spec.json").write_text(json.dumps(dict(
        written, model_name="mobilenet_v2_035", num_classes=3)))
    spec = read_model_spec(str(tmp_path))
    assert (spec["train_image_size"], spec["eval_image_size"]) == (train_size, eval_size)
    assert "image_size" not in spec
    # Both commands evaluate and export at the eval size.
    f = evaluator_flags(TRAIN, DATA)
    assert EvalConfig.from_flags(f, eval_sources(recorded=spec)).image_size == eval_size
    assert export_config.model_spec(checkpoint_facts(recorded=spec)).image_size == eval_size


def test_model_spec_json_absent_or_not_an_object(tmp_path):
    assert read_model_spec(str(tmp_path)) == {}
    (tmp_path / "model_spec.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="model_spec.json holds no JSON object"):
        read_model_spec(str(tmp_path))
