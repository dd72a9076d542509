"""Fine-tuning: warm-start from a checkpoint, and train only some scopes.

The restore plan compares the model's variables with the checkpoint by name and shape
before anything is assigned, so a wrong --num_classes or --restore_exclude ends in one
line naming the variable, both shapes and the scope to exclude. --restore_exclude=auto
instead skips what does not fit, within the limit of _check_auto_fit. The plan's report
(counts per block, every skipped and new variable) goes to the training log, or alone to
the console with --restore_dry_run.
"""
import collections

from nets import checkpoint_names, nets_factory
from quantization import fake_quant
from utils.checkpoints import EMA_SUFFIX
from utils.errors import UserError
from utils.tf_compat import tf

AUTO = "auto"
# --restore_exclude=auto fails when a larger share of the backbone does not fit.
MAX_UNFIT_BACKBONE = 0.1

RESTORED, EXCLUDED, SKIPPED, NEW = "restored", "excluded", "skipped", "new"

# One model variable in the plan: its kind above, its shape in the checkpoint (None when
# absent) and in the model.
PlanEntry = collections.namedtuple("PlanEntry", "kind checkpoint_shape model_shape")


class RestorePlan(collections.namedtuple(
        "RestorePlan", "checkpoint exclude restored entries unused sources note")):
    """exclude: the scopes left out, or AUTO; restored: name -> variable; entries:
    name -> PlanEntry in the model's order; unused: Counter of the checkpoint tensors no
    model variable takes, by kind (see _unused); sources: name -> the checkpoint tensor
    it starts from (its moving average when used; automl's name for an automl
    checkpoint); note: the line saying what was recognised in a checkpoint in other
    names (nets/checkpoint_names.describe), or None."""

    def names(self, kind):
        return [name for name, entry in self.entries.items() if entry.kind == kind]

    @property
    def excluded(self):
        return self.names(EXCLUDED)

    @property
    def missing(self):
        return self.names(NEW)

    @property
    def skipped(self):
        return self.names(SKIPPED)


def parse_scopes(text):
    """'A/, B/' -> ('A/', 'B/'); '' or 'none' -> ()."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    return tuple(s.strip() for s in text.split(",") if s.strip())


def parse_restore_exclude(text):
    """--restore_exclude: 'auto' -> AUTO, else its scopes (parse_scopes)."""
    if text is not None and text.strip().lower() == AUTO:
        return AUTO
    return parse_scopes(text)


def in_scopes(name, scopes):
    """True when variable ``name`` lies in one of ``scopes`` (or is one)."""
    return any(name == s.rstrip("/") or name.startswith(s.rstrip("/") + "/") for s in scopes)


def block_of(name):
    """The top-level block scope of a variable: MobilenetV2/expanded_conv_3/... ->
    MobilenetV2/expanded_conv_3."""
    return "/".join(name.split("/")[:2])


def plan_restore(checkpoint, model_variables, exclude, ignore_missing, head_scopes=(),
                 use_ema="auto"):
    """Which model variables the checkpoint initialises; UserError on a misfit.

    exclude: scopes left out, or AUTO: restore whatever fits by name and shape, skip
    the variables of another shape, start the absent ones afresh (``head_scopes``
    bound what may be skipped, see _check_auto_fit); ``ignore_missing`` is for the
    other modes only, where an absent variable is an error without it. Each variable
    starts from its moving average where the checkpoint has one, unless ``use_ema`` is
    "false" (automl's fine-tuning does the same: ft_init_ema). The checkpoint's names
    are read as ours (nets/checkpoint_names.py).
    """
    names = checkpoint_names.read(checkpoint)
    shapes = names.shapes
    take_ema = checkpoint_names.use_moving_averages(names, use_ema)
    auto = exclude == AUTO
    restored, entries, sources = (collections.OrderedDict(), collections.OrderedDict(),
                                  {})
    for var in model_variables:
        name, model_shape = var.op.name, var.shape.as_list()
        source = name + EMA_SUFFIX if take_ema and name + EMA_SUFFIX in shapes else name
        saved = list(shapes[source]) if source in shapes else None
        if not auto and in_scopes(name, exclude):
            kind = EXCLUDED
        elif saved is None:
            kind = NEW
        elif saved != model_shape:
            if not auto:
                raise UserError("cannot restore %s: shape %s in %s but %s in the model; "
                                "leave it out with --restore_exclude=%s/ (or fix "
                                "--num_classes, or try --restore_exclude=auto)"
                                % (name, saved, checkpoint, model_shape, block_of(name)))
            kind = SKIPPED
        else:
            kind = RESTORED
            restored[name] = var
            _check_in_place(names, source, name)
        if saved is not None:
            sources[name] = names.source(source)
        entries[name] = PlanEntry(kind, saved, model_shape)
    plan = RestorePlan(checkpoint, exclude, restored, entries,
                       _unused(names, entries, sources), sources,
                       checkpoint_names.describe(names, use_ema))
    _check_plan(plan, auto, ignore_missing, head_scopes)
    return plan


def _check_in_place(names, source, name):
    """A warm start sets initializers to read the checkpoint as stored, so a tensor
    stored in another shape (automl's dense head) cannot start our variable."""
    if names.reshaped(source):
        raise UserError("cannot start %s from %s's %s %s in place (a dense layer there); "
                        "leave the head out (the default --restore_exclude) or convert the "
                        "checkpoint first: python -m nets.convert_checkpoint --from=automl "
                        "%s OUT" % (name, names.path, names.source(source),
                                    names.sources[source][1], names.path))


def _check_plan(plan, auto, ignore_missing, head_scopes):
    missing = plan.missing
    if missing and not auto and not ignore_missing:
        raise UserError("%s lacks %d of the model's variables (first: %s); check --model_name, "
                        "or pass --ignore_missing_vars to initialise them afresh"
                        % (plan.checkpoint, len(missing), missing[0]))
    if not plan.restored:
        raise UserError("nothing in %s fits the model; check --model_name and "
                        "--restore_exclude" % plan.checkpoint)
    if auto:
        _check_auto_fit(plan, head_scopes)


def _check_auto_fit(plan, head_scopes):
    """The limit of --restore_exclude=auto.

    A new class count changes the head's shapes, and a model may add layers the
    checkpoint lacks: both are expected and start afresh. But when more than
    MAX_UNFIT_BACKBONE of the backbone (the variables outside the head scopes) is
    skipped or absent, the checkpoint is of another network (a wrong --model_name or
    depth multiplier) and the "fine-tune" would quietly train it from scratch: fail.
    """
    backbone = [(name, entry) for name, entry in plan.entries.items()
                if not in_scopes(name, head_scopes)]
    unfit = [(name, entry) for name, entry in backbone if entry.kind != RESTORED]
    if len(unfit) <= MAX_UNFIT_BACKBONE * len(backbone):
        return
    name, entry = unfit[0]
    first = ("%s, absent from the checkpoint" % name if entry.checkpoint_shape is None
             else "%s, shape %s in the checkpoint but %s in the model"
             % (name, entry.checkpoint_shape, entry.model_shape))
    absent = sum(1 for _, e in unfit if e.kind == NEW)
    raise UserError("--restore_exclude=auto: %d of the model's %d backbone variables do not "
                    "fit %s (%d of another shape, %d absent; first: %s): it holds another "
                    "network; check --model_name and its depth multiplier"
                    % (len(unfit), len(backbone), plan.checkpoint, len(unfit) - absent,
                       absent, first))


def _unused(names, entries, sources):
    """Counts of the checkpoint tensors no model variable takes: a model variable's
    companion by its own name (Momentum, ExponentialMovingAverage, RMSProp...), the
    weights whose moving averages were taken instead, global_step, or other."""
    counts = collections.Counter()
    taken = set(sources.values())
    for name in names.shapes:
        if names.source(name) in taken:
            continue
        parent, _, last = name.rpartition("/")
        counts["weights (moving averages taken)" if name in entries else
               last if parent in entries else
               name if name == "global_step" else "other"] += 1
    return counts


def plan_warm_start(env, checkpoint):
    """The restore plan of env's model (already built in the default graph) and the
    lines describing it: what the warm start applies and logs, and what
    --restore_dry_run prints."""
    variables = tf.global_variables(scope=env.model.scope)
    stored = checkpoint_names.read(checkpoint).shapes
    # Quantization-aware training from a float checkpoint: its ranges are learned from
    # the first batches (contrib.quantize's way), so absent range variables are no misfit;
    # nor are ranges of another shape (per-layer ranges, per-channel training).
    fresh = [v for v in variables if fake_quant.is_range_variable(v.op.name)
             and list(stored.get(v.op.name, [None])) != v.shape.as_list()]
    plan = plan_restore(checkpoint, [v for v in variables if v not in fresh],
                        env.restore_exclude, env.ignore_missing_vars,
                        env.model.head_scopes, env.use_ema)
    lines = ([plan.note] if plan.note else []) + report(plan)
    if fresh:
        lines.append("  quantization: %d range variables start from the first batches "
                     "(%s holds none of their shape)" % (len(fresh), checkpoint))
    return plan, lines


def restore_dry_run(env, logger):
    """--restore_dry_run: logs the warm start's plan from the model graph alone (no
    session, no input, nothing written); a misfit raises the UserError training would."""
    with tf.Graph().as_default():
        # Variable names and shapes follow from the model and class count alone, not
        # from the training hyper-parameters, so the plain network function will do.
        size = env.image_size
        nets_factory.get_network_fn(env.model_name, env.num_classes, is_training=True,
                                    quantize=env.quantization)(
            tf.placeholder(tf.float32, [1, size, size, 3]))
        _, lines = plan_warm_start(env, env.restore_checkpoint)
    for line in lines:
        logger.info(line)
    if tf.train.latest_checkpoint(env.train_dir):
        logger.info("note: %s holds a checkpoint; training would resume from it and not "
                    "apply --restore_path" % env.train_dir)
    logger.info("dry run: nothing trained or written; drop --restore_dry_run to train")


def report(plan):
    """A summary line, a table of counts per top-level block (blocks restored whole
    grouped into one row), every skipped and new variable with its shapes, and one line
    counting the checkpoint tensors left unused."""
    if plan.exclude == AUTO:
        summary = ("restored %d variables from %s; skipped %d of another shape; %d new "
                   "(--restore_exclude=auto)" % (len(plan.restored), plan.checkpoint,
                                                 len(plan.skipped), len(plan.missing)))
    else:
        missing = "%d missing" % len(plan.missing)
        if plan.missing:
            missing += " (initialised afresh; first: %s)" % plan.missing[0]
        summary = ("restored %d variables from %s; excluded %d (%s); %s"
                   % (len(plan.restored), plan.checkpoint, len(plan.excluded),
                      ", ".join(plan.exclude) or "nothing excluded", missing))
    lines = [summary] + _block_table(plan)
    # The excluded ones of another shape too: a head of other classes (automl's 21k).
    listed = [(name, entry) for name, entry in plan.entries.items()
              if entry.kind in (SKIPPED, NEW) or entry.kind == EXCLUDED
              and entry.checkpoint_shape not in (None, entry.model_shape)]
    width = max([len(name) for name, _ in listed] or [0])
    saved_width = max([len(str(entry.checkpoint_shape)) for _, entry in listed] or [0])
    for name, entry in listed:
        shapes = ("model %s" % entry.model_shape if entry.kind == NEW else
                  "checkpoint %-*s  model %s" % (saved_width, entry.checkpoint_shape,
                                                 entry.model_shape))
        lines.append("  %-8s %-*s  %s" % (entry.kind, width, name, shapes))
    unused = sorted(plan.unused.items(), key=lambda item: (-item[1], item[0]))
    lines.append("  not used from the checkpoint: %d tensors%s" % (
        sum(plan.unused.values()),
        " (%s)" % ", ".join("%d %s" % (n, kind) for kind, n in unused) if unused else ""))
    return lines


def _block_table(plan):
    kinds = (RESTORED, SKIPPED, NEW, EXCLUDED)
    blocks = collections.OrderedDict()
    for name, entry in plan.entries.items():
        blocks.setdefault(block_of(name), collections.Counter())[entry.kind] += 1
    rows = []  # [first block, last block, block count, Counter]
    for block, counts in blocks.items():
        whole = set(counts) == {RESTORED}
        if whole and rows and set(rows[-1][3]) == {RESTORED}:
            rows[-1][1] = block
            rows[-1][2] += 1
            rows[-1][3].update(counts)
        else:
            rows.append([block, block, 1, counts])
    labels = [first if n == 1 else "%s .. %s (%d blocks)" % (first, last.split("/")[-1], n)
              for first, last, n, _ in rows]
    total = collections.Counter()
    for row in rows:
        total.update(row[3])
    width = max(len(label) for label in labels + ["block"])
    lines = ["  %-*s" % (width, "block") + "".join(" %9s" % kind for kind in kinds)]
    for label, (_, _, _, counts) in zip(labels, rows):
        lines.append("  %-*s" % (width, label) + "".join(" %9d" % counts[k] for k in kinds))
    lines.append("  %-*s" % (width, "total") + "".join(" %9d" % total[k] for k in kinds))
    return lines


def warm_start(plan):
    """Makes the plan's variables start from the checkpoint (their initializers read
    it), so it applies only to a fresh run: a resumed run restores train_dir instead."""
    tf.train.init_from_checkpoint(plan.checkpoint, dict(
        (plan.sources[name], var) for name, var in plan.restored.items()))


def trainable_variables(scopes):
    """The variables to train: all trainable ones, or those under ``scopes``."""
    variables = tf.trainable_variables()
    if not scopes:
        return variables
    chosen = [v for v in variables if in_scopes(v.op.name, scopes)]
    if not chosen:
        raise UserError("--trainable_scopes=%s matches no variable; scopes look like "
                        "MobilenetV2/Logits/" % ",".join(scopes))
    return chosen


def update_ops(scopes):
    """Batch-norm statistic updates of the trained scopes only, so frozen layers keep
    their moving mean and variance exactly."""
    ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    if not scopes:
        return ops
    return [op for op in ops if in_scopes(op.name, scopes)]
