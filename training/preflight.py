"""Pre-flight checks: mistakes that would cost hours, found at second 0.

Each check looks at an Env (flags -> numbers, env.py) and the process environment,
builds no graph and starts no session, and says ok / warning / problem in one line;
a problem's line says what is wrong and how to fix it.

  dataset              every shard of each split's -of-N set present and non-empty; with
                       full=True (train.py --preflight) also the records in each shard,
                       counted from the frame headers, against the dataset's split sizes
  rank table           the HCCL table against RANK_SIZE / RANK_ID / DEVICE_ID /
                       ASCEND_VISIBLE_DEVICES and the servers' HCCS rings; on npu, the
                       vendor's variables that would steer the run (RESTORE_FROM,
                       AOE_MODE, POD_NAME, CM_*...: devices.ascend_environment)
  iterations_per_loop  on npu it must divide every step count the run stops or saves at
  batch and lr         the global batch, the LR per 256 images, and a warning for a
                       one-device LR on many devices
  train_dir            a checkpoint in train_dir would win over a new --restore_path

train.py runs the cheap ones (all but the record counts) before every training run and
stops on a problem (exit 2); `train.py ... --preflight` runs all of them and exits.
"""
import collections
import glob
import math
import os
import re
import sys

from dataloader import record_check
from datasets import dataset_factory, layout
from devices.npu import check_npu_environment, check_vendor_environment
from devices.ranks import rank_info_from_environ
from quantization import fake_quant
from rank_tables import check as rank_check
from training import recipes
from utils.checkpoints import (DAMAGED_DIR, checkpoint_global_step, no_intact_checkpoint,
                               plan_resume, read_model_spec)
from utils.errors import EXIT_USER_ERROR, UserError
from utils.tf_compat import tf

OK, WARNING, PROBLEM = "ok", "warning", "problem"
Result = collections.namedtuple("Result", "name status detail")

CONVERT_HINT = "python -m datasets.build_tfrecords ... --overwrite"

# The project's linear-scaling rule (recipes/, training/recipes.py; Goyal et al. 2017): a
# recipe fixes a peak LR per 256 images and a run uses that rate x global batch / 256,
# so 8 devices of batch 256 take 8x the one-device LR (0.1 -> 0.8). The usual slip is an
# LR left at its one-device value on many devices. We cannot know the LR a user meant,
# so the recipe the run follows (recipes.matching: its model, optimizer, fresh start or
# fine-tune) is the reference: with N > 1 devices the LR is a warning when it lies
# nearer, on a log scale, to the recipe's one-device LR (rate x batch_size / 256) than
# to the linearly scaled one (rate x global batch / 256): lr < one-device LR x sqrt(N).
# Runs no recipe describes are shown, never judged.

_SHARD = re.compile(r"^(?P<split>.+)-(?P<index>\d+)-of-(?P<total>\d+)$")


# ----------------------------------------------------------------------------- dataset

def check_dataset(env, environ, full):
    """The dataset row: (status, detail), as every check returns (see the module's table)."""
    if env.use_synthetic_data:
        return OK, "n/a (--use_synthetic_data reads no records)"
    dataset = env.dataset
    if isinstance(dataset, dataset_factory.UnconvertedDataset):  # --preflight converts nothing
        return OK, dataset.describe_conversion()
    faults, found = [], []
    for split in dataset.splits:
        files = sorted(glob.glob(dataset.file_pattern(split)))
        if not files:
            if split == "train":
                dataset.list_files(split)  # its UserError names the pattern and the fix
            continue
        split_faults = _shard_set_faults(split, files)
        if not split_faults and full:
            split_faults, records = _record_count_faults(dataset, split, files)
            found.append("%s %d records in %s" % (split, records, _count(len(files), "shard")))
        elif not split_faults:
            found.append("%s %s" % (split, _count(len(files), "shard")))
        faults += split_faults
    if faults:
        return PROBLEM, "%s in %s; %s" % ("; ".join(faults), dataset.dataset_dir,
                                          _dataset_fix(dataset))
    summary = ", ".join(found)
    if full:
        summary += " = %s" % _sizes_source(dataset)
    else:
        summary += ", all present and non-empty (record counts: --preflight)"
    return OK, summary


def _shard_set_faults(split, files):
    """What is wrong with a split's shard files as a set: several -of-N sets mixed, names
    of the set missing, empty files."""
    names = [os.path.basename(path) for path in files]
    totals = sorted(set(int(m.group("total")) for m in map(_SHARD.match, names) if m))
    if len(totals) > 1:
        return ["%s shards of %d sets are mixed (%s); keep one set"
                % (split, len(totals), ", ".join("-of-%05d" % t for t in totals))]
    faults = []
    if totals:
        expected = [layout.shard_filename(split, i, totals[0]) for i in range(totals[0])]
        missing = [name for name in expected if name not in names]
        if missing:
            faults.append("%d of the %d %s shards missing (%s)" % (
                len(missing), totals[0], split, _some(missing)))
    empty = [os.path.basename(path) for path in files if os.path.getsize(path) == 0]
    if empty:
        faults.append("%s empty (0 bytes)" % _some(empty))
    return faults


def _record_count_faults(dataset, split, files):
    """([fault], records) after reading every frame header of the split's shards."""
    records = 0
    for path in files:
        count, damage = record_check.scan_shard(path)
        if damage:
            return ["%s: %s" % (os.path.basename(path), damage)], records + count
        records += count
    expected = dataset.num_samples(split)
    if records != expected:
        return ["the %s shards hold %d records but %s says %d"
                % (split, records, _sizes_source(dataset), expected)], records
    return [], records


def _sizes_source(dataset):
    if dataset.name == "folder":
        return layout.META_FILENAME
    return "the %s dataset descriptor" % dataset.name


def _dataset_fix(dataset):
    if dataset.name == "folder":
        return ("copy the shards again or convert again (%s); the split sizes in %s "
                "must match the records" % (CONVERT_HINT, layout.META_FILENAME))
    return ("copy the shards again; a partial %s needs its own split sizes: convert it "
            "with %s (writes %s)" % (dataset.name, CONVERT_HINT, layout.META_FILENAME))


def _count(number, noun):
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")


def _some(names, shown=3):
    more = len(names) - shown
    return ", ".join(names[:shown]) + (" and %d more" % more if more > 0 else "")


# ----------------------------------------------------------------------------- rank table

def check_rank_table(env, environ, full):
    """The rank table row (see the module's table)."""
    ranks = rank_info_from_environ(environ)
    table_file = environ.get("RANK_TABLE_FILE")
    if env.device == "npu":
        check_vendor_environment(environ)  # POD_NAME and CM_CHIEF_IP undo the table
    if not table_file:
        if env.device == "npu":
            check_npu_environment(environ, ranks.rank_size)  # RANK_SIZE > 1 needs a table
        return OK, "n/a (%s, %s, no RANK_TABLE_FILE)" % (env.device,
                                                         _count(ranks.rank_size, "rank"))
    table, faults = rank_check.problems(table_file, ranks.rank_size)
    if table is not None and not faults:
        faults = _this_rank_faults(table, ranks.rank_id, environ)
    if not faults:
        mine = table.ranks[ranks.rank_id]
        return OK, "%s; rank %d is device %d of %s" % (table.summary(), ranks.rank_id,
                                                       mine.device_id, mine.server_id)
    detail = faults[0]
    if len(faults) > 1:
        detail += " (and %d more: python -m rank_tables.check %s lists them)" % (
            len(faults) - 1, table_file)
    if env.device != "npu":  # HCCL reads the table only on npu
        return WARNING, "%s (RANK_TABLE_FILE is set, but %s runs do not use it)" % (
            detail, env.device)
    return PROBLEM, detail


def _this_rank_faults(table, rank_id, environ):
    """This rank's device in the table against DEVICE_ID / ASCEND_DEVICE_ID (which the
    launcher sets from the table) and its server's devices against
    ASCEND_VISIBLE_DEVICES (the NPUs a container sees, by the table's device ids)."""
    mine = table.ranks[rank_id]
    faults = []
    for name in ("DEVICE_ID", "ASCEND_DEVICE_ID"):
        value = environ.get(name, "").strip()
        if value and value != str(mine.device_id):
            faults.append("%s=%s but %s makes rank %d device %d of server %s; set %s=%d "
                          "(python -m devices.launch sets it from the table)"
                          % (name, value, table.path, rank_id, mine.device_id,
                             mine.server_id, name, mine.device_id))
    visible_text = environ.get("ASCEND_VISIBLE_DEVICES", "").strip()
    if visible_text:
        visible = _device_list(visible_text)
        server = [rank.device_id for rank in table.ranks_on(mine.server_id)]
        if visible is None:
            faults.append("ASCEND_VISIBLE_DEVICES=%s is not a list of device ids like "
                          "0,1,2,3 or 0-3; fix or unset it" % visible_text)
        elif not set(server) <= visible:
            faults.append("%s puts devices %s on server %s but ASCEND_VISIBLE_DEVICES=%s "
                          "hides %s; make them visible or list only visible devices in "
                          "the table" % (table.path, _ids(server), mine.server_id,
                                         visible_text, _ids(sorted(set(server) - visible))))
    return faults


def _device_list(text):
    """The set of ids in "0,1,4-7", or None when it is not such a list."""
    ids = set()
    for part in text.split(","):
        match = re.match(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$", part)
        if not match:
            return None
        first = int(match.group(1))
        ids.update(range(first, int(match.group(2) or first) + 1))
    return ids


def _ids(numbers):
    return ",".join(str(n) for n in numbers)


# ----------------------------------------------------------------------------- device loop

def check_iterations_per_loop(env, environ, full):
    """The iterations_per_loop row (see the module's table)."""
    loop = env.iterations_per_loop
    if env.device != "npu":
        return OK, "n/a (%s): --iterations_per_loop=%d groups steps only on npu" % (
            env.device, loop)
    counts = [("max_train_steps", env.max_train_steps)]
    if env.save_checkpoints_steps:
        counts.append(("save_checkpoints_steps", env.save_checkpoints_steps))
    if env.eval_every_steps:
        counts.append(("the eval interval (--eval_every_n_epochs)", env.eval_every_steps))
    shown = ", ".join("%s %d" % count for count in counts)
    misfits = [name for name, steps in counts if steps % loop]
    if not misfits:
        return OK, "%d divides %s" % (loop, shown)
    common = 0
    for _, steps in counts:
        common = math.gcd(common, steps)
    fits = max(d for d in range(1, min(loop, common) + 1) if common % d == 0)
    return PROBLEM, ("--iterations_per_loop=%d does not divide %s (%s): on npu one "
                     "session.run runs %d steps, so stops and saves fall only on its "
                     "multiples; use --iterations_per_loop=%d or step counts that are "
                     "multiples of %d" % (loop, " and ".join(misfits), shown, loop, fits,
                                          loop))


# ----------------------------------------------------------------------------- batch and LR

def check_batch_and_lr(env, environ, full):
    """The batch and lr row: the LR per 256 images against the run's recipe."""
    devices = env.num_replicas
    per_256 = env.learning_rate * 256.0 / env.global_batch
    shown = "global batch %d = %d x %s; lr %g = %.4g per 256 images" % (
        env.global_batch, env.batch_size, _count(devices, "device"), env.learning_rate,
        per_256)
    reference = _recipe_rate(env)
    if reference is None:
        return OK, shown + " (no recipe to compare with)"
    recipe, rate = reference
    scaled = rate * env.global_batch / 256.0
    one_device = rate * env.batch_size / 256.0
    if devices > 1 and env.learning_rate < one_device * math.sqrt(devices):
        return WARNING, ("lr %g for global batch %d (%d x %d devices) is %.4g per 256; the "
                         "%s recipe scales %g per 256 linearly with the global batch: "
                         "--learning_rate=%g (%g is near a one-device LR)"
                         % (env.learning_rate, env.global_batch, env.batch_size, devices,
                            per_256, recipe, rate, scaled, env.learning_rate))
    return OK, "%s (%s recipe: %g per 256)" % (shown, recipe, rate)


def _recipe_rate(env):
    """(recipe name, LR per 256 images) of the recipe the run follows, or None."""
    recipe = recipes.matching(env.model_name, env.optimizer_name,
                              bool(env.restore_checkpoint))
    if recipe is None:
        return None
    return recipe.name, float(recipe.flags["learning_rate_per_256"])


# ----------------------------------------------------------------------------- train_dir

def check_train_dir(env, environ, full):
    """Damaged checkpoints in train_dir (training moves them aside and resumes from the
    newest intact one, or stops when none is), and --restore_path against a checkpoint
    to resume from (see _resume_over_restore_path)."""
    checkpoint, damaged = plan_resume(env.train_dir, full=full)
    if damaged and checkpoint is None and not env.allow_fresh_start:
        return PROBLEM, no_intact_checkpoint(env.train_dir, damaged)
    unlike = _resume_quantization(env, checkpoint)
    if unlike:
        return PROBLEM, unlike
    status, detail = _resume_over_restore_path(env, checkpoint)
    if not damaged:
        return status, detail
    prefix, problem = damaged[0]
    return (PROBLEM if status == PROBLEM else WARNING), (
        "%s is damaged (%s)%s and will be moved to %s; %s"
        % (os.path.basename(prefix), problem,
           ", with %d older ones" % (len(damaged) - 1) if len(damaged) > 1 else "",
           os.path.join(env.train_dir, DAMAGED_DIR), detail))


def _resume_over_restore_path(env, checkpoint):
    """A checkpoint in train_dir wins over --restore_path (the Estimator resumes from
    its model_dir). Resuming a fine-tune with its own command is fine: model_spec.json
    records where the run in train_dir started (Env.model_spec)."""
    train_dir = env.train_dir
    given = env.restore_checkpoint
    if checkpoint is None:
        return OK, "%s holds no checkpoint: starts from %s" % (
            train_dir, "--restore_path %s" % given if given else "scratch")
    step = _step_of(checkpoint)
    if not given:
        return OK, "resumes from %s (step %d)" % (checkpoint, step)
    spec = read_model_spec(train_dir)
    recorded = spec.get("restore_path")
    if "restore_path" in spec and recorded and _same_file(recorded, given):
        return OK, "resumes from %s (step %d) of the fine-tune from %s" % (
            checkpoint, step, given)
    if "restore_path" not in spec:
        origin = "keeps no record of where it started"
    else:
        origin = "started from %s" % (recorded or "scratch")
    return PROBLEM, (
        "--restore_path=%s would be ignored: %s already holds %s (step %d), which the run "
        "resumes from, and that training %s; use a fresh --train_dir, or delete %s's "
        "checkpoints to start from --restore_path, or drop --restore_path to resume"
        % (given, train_dir, os.path.basename(checkpoint), step, origin, train_dir))


def _quantization_of(variable_shapes):
    """How a checkpoint (its {name: shape}) was trained: None (float), "per tensor" or
    "per channel" (its weight ranges' shapes)."""
    if not fake_quant.holds_ranges(variable_shapes):
        return None
    return "per channel" if fake_quant.per_channel_ranges(variable_shapes) else "per tensor"


def _resume_quantization(env, checkpoint):
    """The problem line when the checkpoint to resume was trained with other
    quantization than this run's flags ask for (float, per-tensor or per-channel ranges),
    else None. Its variables would not restore into this run's graph (missing or
    reshaped ranges stop TensorFlow with a line naming no cause), or, resumed as float,
    its ranges would be dropped without a word."""
    if checkpoint is None:
        return None
    try:
        trained = _quantization_of(dict(tf.train.list_variables(checkpoint)))
    except (tf.errors.OpError, ValueError):  # unreadable: the damage checks say so
        return None
    settings = env.quantization
    asked = None if settings is None else (
        "per channel" if settings.per_channel else "per tensor")
    if trained == asked:
        return None
    how = {None: "float", "per tensor": "quantization-aware, per-tensor weight ranges",
           "per channel": "quantization-aware, per-channel weight ranges"}
    flags = {None: "without --quantize_delay",
             "per tensor": "with --quantize_delay and without --quantize_per_channel",
             "per channel": "with --quantize_delay and --quantize_per_channel"}
    return ("%s (step %d) in %s was trained %s, and this run's flags ask for %s: resume "
            "it %s, or start from it in a fresh --train_dir with --restore_path=%s"
            % (os.path.basename(checkpoint), _step_of(checkpoint), env.train_dir,
               how[trained], how[asked], flags[trained], checkpoint))


def _step_of(checkpoint):
    try:
        return checkpoint_global_step(checkpoint)
    except (tf.errors.OpError, ValueError, IndexError):  # unreadable: the name's step
        match = re.search(r"-(\d+)$", checkpoint)
        return int(match.group(1)) if match else -1


def _same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


# ----------------------------------------------------------------------------- running

CHECKS = (
    ("dataset", check_dataset),
    ("rank table", check_rank_table),
    ("iterations_per_loop", check_iterations_per_loop),
    ("batch and lr", check_batch_and_lr),
    ("train_dir", check_train_dir),
)


def run_checks(env, environ=None, full=False):
    """[Result] of every check, in CHECKS order; full adds the record counts. A check
    that raises a UserError (the project's one-line mistakes) reports it as its problem."""
    environ = os.environ if environ is None else environ
    results = []
    for name, check in CHECKS:
        try:
            status, detail = check(env, environ, full)
        except UserError as err:
            status, detail = PROBLEM, str(err)
        results.append(Result(name, status, detail))
    return results


def table_lines(results):
    """The aligned table: check name, status, detail."""
    width = max(len(result.name) for result in results + [Result("preflight check", "", "")])
    rows = [("preflight check", "status", "detail")] + list(results)
    return ["%-*s  %-7s  %s" % (width, name, status, detail) for name, status, detail in rows]


def report_problems(results, stream=None):
    """Writes each problem as one "error:" line; the exit status (2 with problems, else 0)."""
    stream = stream or sys.stderr
    problems = [result for result in results if result.status == PROBLEM]
    for result in problems:
        stream.write("error: %s\n" % result.detail)
    stream.flush()
    return EXIT_USER_ERROR if problems else 0


def preflight_command(env, environ=None):
    """train.py --preflight: every check, the table on stdout; creates nothing."""
    results = run_checks(env, environ, full=True)
    for line in table_lines(results):
        print(line)
    counts = collections.Counter(result.status for result in results)
    print("preflight: %s, %s" % (_count(counts[PROBLEM], "problem"),
                                 _count(counts[WARNING], "warning")))
    sys.stdout.flush()
    return report_problems(results)


def check_before_training(env, log, environ=None):
    """The cheap checks at the start of every run, their table in the training log;
    the exit status: 2 when a problem must stop the run, else 0."""
    results = run_checks(env, environ, full=False)
    for line in table_lines(results):
        log.info(line)
    return report_problems(results)
