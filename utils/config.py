"""Config: the one way a command's settings are held, for training (env.Env), the
evaluator (evaluation.config.EvalConfig) and the exporter (export.config.ExportConfig).

A subclass declares its fields once, in FIELDS (rows whose first item is the name,
then at least the meaning), and is built from values alone: deriving them from flags,
and reading the disk to do so, is its ``from_flags``'s caller's business or a separate
step, so a config can be made in a test from a few numbers. Reading a field that was
not given, or writing a name not declared, raises AttributeError; ``replace`` gives a
copy with some fields changed, as a namedtuple's ``_replace`` does.
"""


class Config(object):
    """Settings declared by the subclass's FIELDS; nothing else may be set."""

    FIELDS = ()

    @classmethod
    def field_names(cls):
        return tuple(row[0] for row in cls.FIELDS)

    def __init__(self, **values):
        unknown = sorted(set(values) - set(self.field_names()))
        if unknown:
            raise TypeError("%s has no field %s (its FIELDS declare them)"
                            % (type(self).__name__, ", ".join(unknown)))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        if name not in self.field_names():
            raise AttributeError("%s has no field %s (its FIELDS declare them)"
                                 % (type(self).__name__, name))
        object.__setattr__(self, name, value)

    def as_dict(self):
        """{name: value} of the fields that were given."""
        return dict((name, self.__dict__[name]) for name in self.field_names()
                    if name in self.__dict__)

    def replace(self, **changes):
        """A copy with ``changes`` applied."""
        values = self.as_dict()
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other):
        return type(self) is type(other) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % item for item in sorted(self.as_dict().items())))
