"""This process's place among the training processes: rank and rank count.

From TF_CONFIG's cluster (GPU / CPU multi-worker, set by scripts/run_8p.sh or by you
across hosts), else RANK_ID / RANK_SIZE as Ascend's launchers set them. Imports no
TensorFlow.
"""
import collections
import json

from utils.errors import UserError

RankInfo = collections.namedtuple("RankInfo", "rank_id rank_size")


def tf_config_ranks(environ):
    """(rank_id, rank_size) from TF_CONFIG's cluster (chief first, then workers), or
    None when TF_CONFIG is absent or names a single task."""
    raw = environ.get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        tasks = ([("chief", i) for i in range(len(cluster.get("chief", [])))]
                 + [("worker", i) for i in range(len(cluster.get("worker", [])))])
        if len(tasks) <= 1:
            return None
        return tasks.index((task["type"], int(task["index"]))), len(tasks)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError("TF_CONFIG is not a cluster this trainer understands; it needs "
                        '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                        '"worker", "index": i}} (a "chief" list is optional)')


def env_int(environ, name, default):
    """The integer environment variable ``name``; ``default`` when unset or empty."""
    value = environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError("environment variable %s=%r is not an integer" % (name, value))


def rank_info_from_environ(environ):
    """This process's RankInfo: from TF_CONFIG's cluster, else RANK_ID / RANK_SIZE; 0 of 1
    when absent. When both are set they must agree."""
    rank_size = env_int(environ, "RANK_SIZE", 1)
    rank_id = env_int(environ, "RANK_ID", 0)
    from_cluster = tf_config_ranks(environ)
    if from_cluster is not None:
        given = (environ.get("RANK_ID"), environ.get("RANK_SIZE"))
        if given != (None, None) and (rank_id, rank_size) != from_cluster:
            raise UserError("TF_CONFIG makes this process rank %d of %d but RANK_ID=%s "
                            "RANK_SIZE=%s; make them agree or unset RANK_ID / RANK_SIZE"
                            % (from_cluster + given))
        rank_id, rank_size = from_cluster
    if rank_size < 1:
        raise UserError("RANK_SIZE=%d: must be >= 1" % rank_size)
    if not 0 <= rank_id < rank_size:
        raise UserError("RANK_ID=%d is outside [0, RANK_SIZE=%d)" % (rank_id, rank_size))
    return RankInfo(rank_id, rank_size)
