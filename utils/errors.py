"""User mistakes end in one clear line and a non-zero exit, never a traceback."""
import sys


class UserError(Exception):
    """A problem the user can fix: the message says what is wrong and how to fix it."""


EXIT_USER_ERROR = 2


def exit_on_user_error(main):
    """Wraps an absl ``main(argv)`` so a UserError prints one line and exits 2."""
    def wrapped(argv):
        try:
            return main(argv)
        except UserError as err:
            sys.stderr.write("error: %s\n" % err)
            sys.stderr.flush()
            sys.exit(EXIT_USER_ERROR)
    wrapped.__name__ = getattr(main, "__name__", "main")
    wrapped.__doc__ = main.__doc__
    return wrapped


def run_reporting_tf_errors(func, *args, **kwargs):
    """Runs ``func``; a data error TensorFlow raises mid-run (corrupt record, label out
    of range, unreadable file) becomes a UserError with its first line."""
    from utils.tf_compat import tf
    try:
        return func(*args, **kwargs)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
            tf.errors.NotFoundError) as err:
        message = (err.message or str(err)).strip().splitlines()
        raise UserError("TensorFlow stopped: %s" % (message[0] if message else type(err).__name__))
