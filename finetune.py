"""Fine-tuning: warm-start from a checkpoint, and train only some scopes.

The restore plan compares the model's variables with the checkpoint by name and shape
before anything is assigned, so a wrong --num_classes or --restore_exclude ends in one
line naming the variable, both shapes and the scope to exclude.
"""
import collections

from utils.errors import UserError
from utils.tf_compat import tf

RestorePlan = collections.namedtuple("RestorePlan", "checkpoint restored excluded missing")


def parse_scopes(text):
    """'A/, B/' -> ('A/', 'B/'); '' or 'none' -> ()."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    return tuple(s.strip() for s in text.split(",") if s.strip())


def in_scopes(name, scopes):
    return any(name == s.rstrip("/") or name.startswith(s.rstrip("/") + "/") for s in scopes)


def plan_restore(checkpoint, model_variables, exclude_scopes, ignore_missing):
    """Which model variables the checkpoint initialises; UserError on a misfit."""
    shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    restored, excluded, missing = collections.OrderedDict(), [], []
    for var in model_variables:
        name = var.op.name
        if in_scopes(name, exclude_scopes):
            excluded.append(name)
        elif name not in shapes:
            missing.append(name)
        elif list(shapes[name]) != var.shape.as_list():
            scope = "/".join(name.split("/")[:2]) + "/"
            raise UserError("cannot restore %s: shape %s in %s but %s in the model; leave it "
                            "out with --restore_exclude=%s (or fix --num_classes)"
                            % (name, list(shapes[name]), checkpoint, var.shape.as_list(), scope))
        else:
            restored[name] = var
    if missing and not ignore_missing:
        raise UserError("%s lacks %d of the model's variables (first: %s); check --model_name, "
                        "or pass --ignore_missing_vars to initialise them afresh"
                        % (checkpoint, len(missing), missing[0]))
    if not restored:
        raise UserError("nothing in %s fits the model; check --model_name and "
                        "--restore_exclude" % checkpoint)
    return RestorePlan(checkpoint, restored, excluded, missing)


def warm_start(plan):
    """Makes the plan's variables start from the checkpoint (their initializers read
    it), so it applies only to a fresh run: a resumed run restores train_dir instead."""
    tf.train.init_from_checkpoint(plan.checkpoint, dict(plan.restored))


def describe(plan, exclude_scopes):
    missing = "%d missing" % len(plan.missing)
    if plan.missing:
        missing += " (initialised afresh; first: %s)" % plan.missing[0]
    return ("restored %d variables from %s; excluded %d (%s); %s"
            % (len(plan.restored), plan.checkpoint, len(plan.excluded),
               ", ".join(exclude_scopes) or "nothing excluded", missing))


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
