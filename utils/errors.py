"""User mistakes end in one clear line and a non-zero exit, never a traceback."""
import errno
import re
import sys


class UserError(Exception):
    """A problem the user can fix: the message says what is wrong and how to fix it."""


EXIT_USER_ERROR = 2


def error_line(err):
    """The "error: ..." line a command ends with for ``err``: a UserError, or a write that
    found no room on the disk wherever it happened (see no_room_line); None for any
    other exception (a bug: its traceback is wanted)."""
    line = str(err) if isinstance(err, UserError) else no_room_line(err)
    return None if line is None else "error: %s" % line


def flag_error_line(err):
    """The "error: ..." line for a mistake absl's flag parsing found (absl.flags.Error)."""
    return "error: %s (--helpshort lists the flags)" % err


def exit_on_user_error(main):
    """Wraps an absl ``main(argv)`` so a user's mistake (error_line) prints one line and
    exits 2."""
    def wrapped(argv):
        try:
            return main(argv)
        except Exception as err:  # noqa: BLE001 (anything else is re-raised as it was)
            line = error_line(err)
            if line is None:
                raise
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            sys.exit(EXIT_USER_ERROR)
    wrapped.__name__ = getattr(main, "__name__", "main")
    wrapped.__doc__ = main.__doc__
    return wrapped


# ----------------------------------------------------------------------------- full disks

NO_ROOM_ERRNOS = {errno.ENOSPC: "No space left on device", errno.EFBIG: "File too large",
                  errno.EDQUOT: "Disk quota exceeded"}
# TensorFlow's file errors (checkpoints, records, summaries, whatever the exception type
# or the thread it came from) read "<path>; <strerror>".
_TF_NO_ROOM = re.compile(r"(\S+?)(?:\.tempstate\d+)?; (%s)"
                         % "|".join(NO_ROOM_ERRNOS.values()))


def out_of_room(err, path=None):
    """(path, cause) when ``err`` is a write that found no room (a full disk, a quota,
    a file-size limit), else None; ``path`` names the file when the error does not."""
    if isinstance(err, EnvironmentError) and err.errno in NO_ROOM_ERRNOS:
        return err.filename or path or "a file", NO_ROOM_ERRNOS[err.errno]
    match = _TF_NO_ROOM.search(str(err))
    return (match.group(1), match.group(2)) if match else None


def no_room_line(err, path=None):
    """The one line for a write that found no room, or None for any other error. What
    was written before stays whole (every writer here writes a new file and renames it,
    or keeps complete files), so the same command carries on once there is room."""
    found = out_of_room(err, path)
    if found is None:
        return None
    return ("cannot write %s: %s; make room (free disk space, or raise the file-size "
            "limit: ulimit -f) and run the same command again: what was written before "
            "is intact and the run carries on from it" % found)


def _parse_flags_or_exit(argv):
    """absl's flag parsing, but a mistake it finds (a value of the wrong type, an unknown
    flag, a value outside an enum) is one "error:" line and exit 2, like every other
    mistake, instead of absl's "FATAL Flags parsing error" and exit 1."""
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        sys.stderr.write(flag_error_line(err) + "\n")
        sys.stderr.flush()
        sys.exit(EXIT_USER_ERROR)


def reject_positional_args(argv):
    """UserError when absl left words that are not flags (a typo like ``--lr 0.1``)."""
    if len(argv) > 1:
        raise UserError("unexpected arguments %s; flags look like --name=value"
                        % " ".join(argv[1:]))


def _quiet_no_room_in_threads():
    """A writer thread that finds no room (TensorFlow's summary writer) would print its
    traceback; the main thread meets the same error and reports it in one line, so the
    thread's is dropped. (threading.excepthook is Python 3.8+; 3.7 prints it.)"""
    import threading
    default = getattr(threading, "excepthook", None)
    if default is None:
        return

    def hook(args):
        if out_of_room(args.exc_value) is None:
            default(args)
    threading.excepthook = hook


def run_main(main):
    """absl's app.run(main) with _parse_flags_or_exit (absl-py too old to take a flags
    parser keeps its own message)."""
    import inspect
    from absl import app
    _quiet_no_room_in_threads()
    if "flags_parser" in inspect.signature(app.run).parameters:
        app.run(main, flags_parser=_parse_flags_or_exit)
    else:
        app.run(main)


def run_reporting_tf_errors(func, *args, **kwargs):
    """Runs ``func``; a data error TensorFlow raises mid-run (corrupt record, label out
    of range, unreadable file) becomes a UserError with its telling line; a bad record
    the input pipeline caught is named by shard file and record index."""
    from utils.tf_compat import tf
    try:
        return func(*args, **kwargs)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
            tf.errors.NotFoundError) as err:
        bad = bad_record_in(err)
        if bad is not None:
            raise UserError("%s; fix or re-create that shard (python -m "
                            "datasets.build_tfrecords)" % bad)
        raise UserError("TensorFlow stopped: %s" % tf_error_line(err))


# ----------------------------------------------------------------------------- bad records

# The input pipeline's assertion for a bad record carries this tag, then the shard file,
# the record's index in it, the problem code, the stored label, --labels_offset and the
# number of classes (see dataloader/data_provider.py).
BAD_RECORD_TAG = "bad-record"
RECORD_OK, BAD_LABEL, NOT_AN_IMAGE, UNDECODABLE, NOT_AN_EXAMPLE, CUT_SHORT = range(6)
_BAD_RECORD = re.compile(r"\[%s\] \[(.*?)\] \[(-?\d+)\] \[(-?\d+)\] \[(-?\d+)\] \[(-?\d+)\] "
                         r"\[(-?\d+)\]" % BAD_RECORD_TAG)
# Lines of TensorFlow's error text that say where, not what.
_WHERE_LINES = re.compile(r"^(Graph execution error:|Detected at node|Node:|File \"|"
                          r"\s|\[\[|Original stack trace|Traceback)")


def describe_record_problem(problem, label=-1, labels_offset=0, num_classes=0):
    """What is wrong with a record, in words, from its problem code."""
    if problem == BAD_LABEL:
        return ("label %d (image/class/label %d - --labels_offset %d) is outside [0, %d)"
                % (label - labels_offset, label, labels_offset, num_classes))
    return {NOT_AN_IMAGE: "image/encoded is not a JPEG, PNG, GIF or BMP image",
            UNDECODABLE: "image/encoded does not decode as an image",
            NOT_AN_EXAMPLE: "not a tf.train.Example with image/encoded and "
                            "image/class/label",
            CUT_SHORT: "the record is cut short or fails its checksum (truncated or "
                       "damaged shard); the records after it in that shard are lost"
            }.get(problem, "problem %d" % problem)


def describe_bad_record(path, index, problem, label=-1, labels_offset=0, num_classes=0):
    """The one line naming a bad record: its shard, its index and what is wrong."""
    return "bad record in %s: record %d (counting from 0): %s" % (
        path, index, describe_record_problem(problem, label, labels_offset, num_classes))


def bad_record_in(err):
    """describe_bad_record's line when ``err`` is the input pipeline's bad-record
    assertion, else None."""
    match = _BAD_RECORD.search(getattr(err, "message", None) or str(err))
    if match is None:
        return None
    numbers = [int(x) for x in match.groups()[1:]]
    return describe_bad_record(match.group(1), *numbers)


def tf_error_line(err):
    """The line of a TensorFlow error that says what went wrong (TF 2.x puts "Graph
    execution error:" and the Python stack of the failing op first)."""
    lines = [l.strip() for l in (getattr(err, "message", None) or str(err)).splitlines()]
    telling = [l for l in lines if l and not _WHERE_LINES.match(l)]
    if not telling:
        return lines[0] if lines and lines[0] else type(err).__name__
    return telling[0].rstrip("'")
