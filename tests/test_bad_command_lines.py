"""Hostile command lines for every program a user runs: wrong types, negative sizes,
conflicting flags, missing paths, unknown names, unreadable rank tables. Each must end
in one line saying what is wrong, a non-zero exit (2), and never a traceback. (The
evaluator's and the exporter's flag mistakes are checked in-process in
test_command_configs.py.)

train.py's mistakes are found in-process, as its main finds them (a Python start that
imports TensorFlow costs seconds); one end-to-end case per program proves the wiring.
The processes run two at a time, all once per module; every case is then one test on
its recorded output."""
from concurrent import futures
import json
import os
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT, TIMEOUT_S, _env
from tests.flag_helpers import train_error_line

MODEL = "--model_name=mobilenet_v2_035"


# train.py's mistakes, found in-process as its main finds them (absl's parse, the checks
# of the flags, the Env's derivation; tests/flag_helpers.train_error_line), each with a
# --train_dir of its own: (id, arguments, extra environment, a fragment of the line).
TRAIN_CASES = [
    ("batch_not_a_number", ["--dataset_dir={data}", "--max_epoch=1", "--batch_size=abc"], {},
     "--batch_size=abc"),
    ("negative_batch", ["--dataset_dir={data}", "--max_epoch=1", "--batch_size=-4"], {},
     "--batch_size=-4"),
    ("unknown_device", ["--dataset_dir={data}", "--max_epoch=1", "--device=tpu"], {},
     "--device"),
    ("unknown_flag", ["--dataset_dir={data}", "--max_epoch=1", "--no_such_flag=1"], {},
     "no_such_flag"),
    ("stray_argument", ["--dataset_dir={data}", "--max_epoch=1", "extra"], {}, "extra"),
    ("both_checkpoint_schedules", ["--dataset_dir={data}", "--max_epoch=1",
                                   "--save_checkpoints_steps=5", "--save_checkpoints_secs=60"],
     {}, "not both"),
    ("zero_checkpoint_secs", ["--dataset_dir={data}", "--max_epoch=1",
                              "--save_checkpoints_secs=0"], {},
     "--save_checkpoints_secs=0 must be positive"),
    ("negative_labels_offset", ["--dataset_dir={data}", "--max_epoch=1", "--labels_offset=-1"],
     {}, "--labels_offset"),
    ("zero_image_size", ["--dataset_dir={data}", "--max_epoch=1", "--train_image_size=0",
                         MODEL], {}, "--train_image_size=0"),
    ("batch_above_dataset", ["--dataset_dir={data}", "--max_epoch=1", "--batch_size=1000",
                             MODEL], {}, "exceeds"),
    ("bad_loss_scale", ["--dataset_dir={data}", "--max_epoch=1", "--loss_scale=big"], {},
     "--loss_scale"),
    ("mixed_precision_on_cpu", ["--dataset_dir={data}", "--max_epoch=1", "--mixed_precision",
                                MODEL], {}, "GPU"),
    ("missing_restore_path", ["--dataset_dir={data}", "--max_epoch=1",
                              "--restore_path={missing}", MODEL, "--train_image_size=32",
                              "--batch_size=4"], {}, "--restore_path"),
    ("unreadable_dataset_meta", ["--dataset_dir={bad_meta}", "--max_epoch=1"], {},
     "dataset_meta.json"),
    ("unfinished_conversion", ["--dataset_dir={unfinished}", "--max_epoch=1"], {},
     "did not finish"),
    ("rank_size_not_a_number", ["--dataset_dir={data}", "--max_epoch=1"],
     {"RANK_SIZE": "two"}, "RANK_SIZE"),
    ("garbage_tf_config", ["--dataset_dir={data}", "--max_epoch=1"],
     {"TF_CONFIG": "{not json"}, "TF_CONFIG"),
    ("both_learning_rates", ["--dataset_dir={data}", "--max_epoch=1", "--learning_rate=0.1",
                             "--learning_rate_per_256=0.1"], {}, "not both"),
    ("freeze_bn_without_quantization", ["--dataset_dir={data}", "--max_epoch=1",
                                        "--freeze_bn_epochs=1"], {}, "--quantize_delay"),
    ("freeze_bn_delay_without_quantization", ["--dataset_dir={data}", "--max_epoch=1",
                                              "--freeze_bn_delay=10"], {},
     "give --quantize_delay too"),
    ("per_channel_without_quantization", ["--dataset_dir={data}", "--max_epoch=1",
                                          "--quantize_per_channel"], {},
     "--quantize_per_channel ranges the weights of quantization-aware training: give "
     "--quantize_delay too"),
    ("quantize_delay_below_minus_one", ["--dataset_dir={data}", "--max_epoch=1",
                                        "--quantize_delay=-2"], {}, "--quantize_delay=-2"),
    ("missing_dataset_dir", ["--dataset_dir={missing}", "--max_epoch=1"], {}, "{missing}"),
    ("both_lengths", ["--dataset_dir={data}", "--max_epoch=1", "--max_train_steps=3"], {},
     "exactly one of --max_epoch"),
    ("unknown_model", ["--dataset_dir={data}", "--max_epoch=1", "--model_name=vgg"], {},
     "mobilenet_v2"),
    ("unwritable_train_dir", ["--dataset_dir={data}", "--max_epoch=1", "--batch_size=4",
                              "--train_dir=/proc/nope"], {}, "--train_dir"),
    ("allreduce_split_not_100", ["--dataset_dir={data}", "--max_epoch=1",
                                 "--allreduce_split=size:60,30"], {}, "add up to 90, not 100"),
    ("allreduce_split_unknown_kind", ["--dataset_dir={data}", "--max_epoch=1",
                                      "--allreduce_split=layers:3,9"], {},
     "--allreduce_split=layers:3,9: give size:P1,P2,..."),
    ("allreduce_split_descending", ["--dataset_dir={data}", "--max_epoch=1",
                                    "--allreduce_split=idx:159,20"], {}, "must ascend"),
    ("zero_hccl_timeout", ["--dataset_dir={data}", "--max_epoch=1", "--hccl_timeout=0"], {},
     "--hccl_timeout=0"),
    ("unknown_compile_cache_mode", ["--dataset_dir={data}", "--max_epoch=1",
                                    "--op_compiler_cache_mode=fast"], {},
     "op_compiler_cache_mode"),
]

# (id, how to run: "script" | "module" | "bash", what, arguments, extra environment,
#  a fragment the error line must hold). {name} in an argument is a path of `world`.
# One case per program a user runs, for the way from a flag to the error line and exit 2
# (the quick tier's: each costs a Python start with TensorFlow).
WIRING_CASES = [
    ("train_dataset_is_a_file", "script", "train.py",
     ["--dataset_dir={file}", "--max_epoch=1", "--train_dir={tmp}/train_e2e"], {},
     "{file} is a file"),
    ("eval_missing_checkpoint", "script", "eval_image_classifier_mobilenet.py",
     ["--dataset_dir={data}", "--checkpoint_path={missing}"], {}, "{missing}"),
    ("export_missing_checkpoint", "script", "export_model.py",
     ["--checkpoint_path={missing}", "--output={tmp}/m.tflite", "--format=tflite"], {},
     "{missing}"),
    ("predict_no_model", "script", "predict.py", ["{file}"], {}, "--model is required"),
]

CASES = [
    # python -m datasets.build_tfrecords
    ("convert_no_input", "module", "datasets.build_tfrecords",
     ["--output_directory={tmp}/out1"], {}, "--train_directory"),
    ("convert_missing_images", "module", "datasets.build_tfrecords",
     ["--train_directory={missing}", "--output_directory={tmp}/out2"], {}, "{missing}"),
    ("convert_zero_shards", "module", "datasets.build_tfrecords",
     ["--train_directory={images}", "--output_directory={tmp}/out3", "--train_shards=0"], {},
     "--train_shards=0"),
    ("convert_output_is_a_file", "module", "datasets.build_tfrecords",
     ["--train_directory={images}", "--output_directory={file}"], {}, "--output_directory"),
    ("convert_output_holds_a_conversion", "module", "datasets.build_tfrecords",
     ["--train_directory={images}", "--output_directory={data}"], {}, "--overwrite"),
    ("convert_threads_not_a_number", "module", "datasets.build_tfrecords",
     ["--train_directory={images}", "--output_directory={tmp}/out4", "--num_threads=many"],
     {}, "--num_threads"),
    # python -m devices.launch, the shell launchers, python -m rank_tables.check
    ("launch_no_command", "module", "devices.launch", ["--device=cpu"], {}, "no command"),
    ("launch_unknown_device", "module", "devices.launch", ["--device=tpu", "--", "true"], {},
     "--device"),
    ("launch_zero_ranks", "module", "devices.launch",
     ["--device=cpu", "--rank_size=0", "--", "true"], {}, "--rank_size=0"),
    ("launch_ranks_not_a_number", "module", "devices.launch",
     ["--device=cpu", "--rank_size=two", "--", "true"], {}, "--rank_size"),
    ("launch_negative_grace", "module", "devices.launch",
     ["--device=cpu", "--grace_s=-1", "--", "true"], {}, "--grace_s"),
    ("launch_port_out_of_range", "module", "devices.launch",
     ["--device=cpu", "--rank_size=2", "--base_port=70000", "--", "true"], {}, "70000"),
    ("launch_npu_missing", "module", "devices.launch", ["--device=npu", "--", "true"], {},
     "npu_bridge"),
    ("launch_rank_size_env_not_a_number", "module", "devices.launch",
     ["--device=cpu", "--", "true"], {"RANK_SIZE": "x"}, "RANK_SIZE=x"),
    ("launch_unreadable_rank_table", "module", "devices.launch",
     ["--device=npu", "--rank_table={garbage_table}", "--", "true"],
     {"PYTHONPATH": os.path.join(ROOT, "tests", "npu_stub")}, "{garbage_table}"),
    ("run_1p_missing_dataset", "bash", "run_1p.sh", ["{missing}"], {}, "{missing}"),
    ("run_1p_no_dataset", "bash", "run_1p.sh", [], {"DATA_DIR": ""}, "no dataset"),
    ("run_8p_missing_dataset", "bash", "run_8p.sh", ["{missing}"], {}, "{missing}"),
    ("rank_table_missing", "module", "rank_tables.check", ["{missing}"], {}, "{missing}"),
    ("rank_table_not_json", "module", "rank_tables.check", ["{garbage_table}"], {},
     "{garbage_table}"),
    ("rank_table_is_a_directory", "module", "rank_tables.check", ["{empty}"], {}, "{empty}"),
    ("rank_table_wrong_rank_size", "module", "rank_tables.check",
     [os.path.join(ROOT, "rank_tables", "8p.json"), "--rank_size=4"], {}, "4"),
    ("rank_table_rank_size_not_a_number", "module", "rank_tables.check",
     [os.path.join(ROOT, "rank_tables", "8p.json"), "--rank_size=four"], {}, "--rank_size"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The paths the cases name."""
    from tests.ds_helpers import write_image_tree, write_tiny_dataset
    tmp = tmp_path_factory.mktemp("bad_lines")
    paths = {"tmp": str(tmp), "missing": str(tmp / "no" / "such" / "thing"),
             "file": str(tmp / "a_file.txt"), "empty": str(tmp / "empty_dir"),
             "images": str(tmp / "images"), "bad_meta": str(tmp / "bad_meta"),
             "unfinished": str(tmp / "unfinished"),
             "garbage_table": str(tmp / "table.json")}
    paths["data"] = write_tiny_dataset(str(tmp / "ds"), num_classes=2, per_class=20, size=32)
    with open(paths["file"], "w") as handle:
        handle.write("not a dataset\n")
    os.makedirs(paths["empty"])
    write_image_tree(paths["images"], num_classes=2, per_class=2, size=16)
    for name, meta in (("bad_meta", "{not json"), ("unfinished", None)):
        os.makedirs(paths[name])
        if meta is not None:
            with open(os.path.join(paths[name], "dataset_meta.json"), "w") as handle:
                handle.write(meta)
    with open(os.path.join(paths["unfinished"], ".tmp-conversion.json"), "w") as handle:
        json.dump({"fingerprint": "0"}, handle)
    with open(paths["garbage_table"], "w") as handle:
        handle.write('{"group_list": [')
    return paths


def _run(case, paths):
    _, how, what, args, env, _ = case
    args = [a.format(**paths) for a in args]
    if how == "script":
        command = [sys.executable, os.path.join(ROOT, what)] + args
    elif how == "module":
        command = [sys.executable, "-m", what] + args
    else:
        command = ["bash", os.path.join(ROOT, "scripts", what)] + args
    environ = _env(env)
    if how != "script" and "RANK_SIZE" not in env:
        environ.pop("RANK_SIZE", None)  # the launchers read it
    return subprocess.run(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=TIMEOUT_S)


def _run_all(cases, world):
    """{case id: CompletedProcess}, two processes at a time."""
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {case[0]: pool.submit(_run, case, world) for case in cases}
        return {name: job.result() for name, job in jobs.items()}


@pytest.fixture(scope="module")
def wiring_outcomes(world):
    return _run_all(WIRING_CASES, world)


@pytest.fixture(scope="module")
def outcomes(world):
    return _run_all(CASES, world)


def _assert_one_line(out, fragment):
    everything = out.stdout + out.stderr
    assert "Traceback" not in everything, everything[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, (out.returncode, everything[-3000:])
    assert fragment in errors[0], errors[0]


def test_the_tables_are_long_enough():
    names = [case[0] for case in WIRING_CASES + CASES] + [
        "train_" + case[0] for case in TRAIN_CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", WIRING_CASES, ids=[case[0] for case in WIRING_CASES])
def test_each_program_ends_a_mistake_in_one_line(case, wiring_outcomes, world):
    _assert_one_line(wiring_outcomes[case[0]], case[5].format(**world))


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[case[0] for case in TRAIN_CASES])
def test_train_py_says_what_is_wrong_in_one_line(case, world):
    name, args, environ, fragment = case
    # A --train_dir of its own, unless the case gives one (the last value wins).
    args = ["--train_dir=%s/train_%s" % (world["tmp"], name)] + [a.format(**world)
                                                                 for a in args]
    line = train_error_line(args, dict({"RANK_SIZE": "1", "RANK_ID": "0"}, **environ))
    assert line is not None and line.startswith("error: "), line
    assert "\n" not in line and fragment.format(**world) in line, line


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_one_line_saying_what_is_wrong(case, outcomes, world):
    _assert_one_line(outcomes[case[0]], case[5].format(**world))
