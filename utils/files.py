"""Small file helpers: writable output folders, atomic writes, a file's digest."""
import hashlib
import json
import os
import shutil
import tempfile

from utils.errors import UserError, no_room_line


def ensure_writable_dir(path, flag_name="train_dir"):
    """Creates ``path`` if needed; a UserError naming --flag_name when it cannot be written."""
    try:
        # Every rank of a multi-process run does this on the same folder at once: the
        # folder may appear between the check and makedirs, and each probe needs its own
        # name (with one shared name a rank removed another's probe under it).
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe_"):
            pass
    except (IOError, OSError) as err:
        raise UserError("cannot write to %s (%s); pass a writable --%s"
                        % (path, err.strerror or err, flag_name))


def user_cache_dir(name):
    """$XDG_CACHE_HOME/mobile-classifiers/<name> (~/.cache when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mobile-classifiers", name)


def write_text(path, text, tmp=None):
    """Writes ``text`` via a temporary file (``tmp``, default <path>.tmp) and rename, so
    readers never see half a file and the old one stays whole when the write fails (a
    UserError naming the path then, the temporary file removed)."""
    tmp = tmp or path + ".tmp"
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except EnvironmentError as err:
        remove_path(tmp)
        raise UserError(no_room_line(err, path) or "cannot write %s (%s)"
                        % (path, err.strerror or err))


def write_json(path, payload):
    """``payload`` as indented JSON, written whole (write_text)."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json_if_present(path, advice):
    """The JSON object at ``path``, or {} when there is no file; UserError (ending in
    ``advice``) when it is not valid JSON."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as err:
        raise UserError("%s is not valid JSON (%s); %s" % (path, err, advice))


def path_size(path):
    """Bytes of a file, or of every file under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def remove_path(path):
    """Removes a file, link or folder tree; nothing when there is none."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def publish(staged, output):
    """Moves the finished ``staged`` (file or folder) to ``output``, replacing what was
    there only now: until the first rename the old output is whole, and after a crash
    between the renames it is still there as <output>.old."""
    old = output + ".old"
    remove_path(old)
    if os.path.lexists(output):
        os.rename(output, old)
    os.rename(staged, output)
    remove_path(old)


def sha256_of(path):
    """The hex sha256 of the file ``path``, read in 1 MiB blocks (wheels are 100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
