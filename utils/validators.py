"""Checks of flag values that need nothing but the values, shared by every command's
config (training, evaluation, export): each failure is a UserError naming the flag."""
from utils.errors import UserError


def require_positive(values, names):
    """Each of ``names`` (attributes of ``values``, absl FLAGS or any object) is None
    or > 0."""
    for name in names:
        value = getattr(values, name)
        if value is not None and value <= 0:
            raise UserError("--%s=%s must be positive" % (name, value))


def require_fraction(values, names, low_open=False):
    """Each of ``names`` is None or in [0, 1); in (0, 1] with ``low_open`` (a kept
    share: a crop's area, dropout's keep probability)."""
    for name in names:
        value = getattr(values, name)
        if value is None:
            continue
        if low_open and not 0.0 < value <= 1.0:
            raise UserError("--%s=%s must be in (0, 1]" % (name, value))
        if not low_open and not 0.0 <= value < 1.0:
            raise UserError("--%s=%s must be in [0, 1)" % (name, value))


def require_one_of(values, names):
    """Exactly one of ``names`` is given (not None)."""
    given = [name for name in names if getattr(values, name) is not None]
    if len(given) != 1:
        raise UserError("give exactly one of %s" % " and ".join("--" + n for n in names))
