"""Reading, checking and writing HCCL rank tables.

HCCL reports a bad rank table as a hang or a timeout minutes into a run, so every fault
is looked for here first and said in one line: what is wrong and how to fix it. Both
layouts, "legacy" (group_list, the Ascend TF model zoo's) and "1.0" (server_list, newer
CANN and MindSpore), are read into one list of devices so the checks exist once.
"""
import collections
import json
import re

from utils.errors import UserError

Rank = collections.namedtuple("Rank", "rank_id server_id device_id device_ip")
LAYOUTS = ("legacy", "1.0")
MAX_DEVICE_ID = 15
GENERATE = "python -m rank_tables.generate"

# One device as written in the file: raw values, _MISSING where a key is absent.
_Entry = collections.namedtuple("_Entry", "where server_id device_id device_ip rank_id")
_MISSING = object()
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")
_HINTS = {"server_id": "the host's IPv4 address",
          "device_id": "the NPU's index on its server, 0-%d" % MAX_DEVICE_ID,
          "device_ip": "the NPU's address_N from the server's /etc/hccn.conf"}


class RankTableError(UserError):
    """A rank table HCCL would reject or hang on; the message says how to fix it."""


class RankTable(object):
    """A valid table: ranks sorted by rank_id (exactly 0..N-1), servers in file order."""

    def __init__(self, ranks, layout, servers, path=None):
        self.ranks = sorted(ranks, key=lambda rank: rank.rank_id)
        self.layout = layout
        self.servers = list(servers)
        self.path = path

    @property
    def rank_size(self):
        return len(self.ranks)

    def ranks_on(self, server_id):
        ranks = [rank for rank in self.ranks if rank.server_id == server_id]
        if not ranks:
            raise RankTableError("server %s is not in %s; its servers are %s"
                                 % (server_id, _name(self.path), ", ".join(self.servers)))
        return ranks

    def summary(self):
        """One line for logs and the command lines: file, layout, devices and servers."""
        last = self.rank_size - 1
        return "%s (%s layout): %s on %s (%s), %s" % (
            self.path or "rank table", self.layout, _count(self.rank_size, "device"),
            _count(len(self.servers), "server"), ", ".join(self.servers),
            "rank 0" if last == 0 else "ranks 0-%d" % last)


def find_faults(data):
    """Every fault of a parsed JSON object, one line each; an empty list means valid."""
    return _read(data)[2]


def parse(data, path=None):
    """The RankTable of a parsed JSON object; the first fault raises RankTableError."""
    layout, ranks, faults = _read(data)
    if faults:
        raise RankTableError("%s: %s" % (_name(path), faults[0]))
    return RankTable(ranks, layout, _unique(rank.server_id for rank in ranks), path)


def read_json(path):
    """The parsed JSON of a file; missing, unreadable or not JSON is a RankTableError."""
    how = "give the path of an existing table (RANK_TABLE_FILE) or make one with " + GENERATE
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise RankTableError("rank table %s does not exist; %s" % (path, how)) from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise RankTableError("rank table %s is not valid JSON (%s); fix it or make a new one "
                             "with %s" % (path, err, GENERATE)) from None
    except OSError as err:
        raise RankTableError("cannot read rank table %s (%s); %s"
                             % (path, err.strerror or err, how)) from None


def load(path):
    """The RankTable in a file; any problem with it is a one-line RankTableError."""
    return parse(read_json(path), path)


def check_rank_size(table, rank_size):
    """HCCL waits forever for ranks the table lists but RANK_SIZE does not start."""
    if rank_size != table.rank_size:
        raise RankTableError("RANK_SIZE=%d but %s lists %s; set RANK_SIZE=%d or use a table "
                             "with %s" % (rank_size, _name(table.path),
                                          _count(table.rank_size, "device"), table.rank_size,
                                          _count(rank_size, "device")))


# An 8-NPU Ascend 910 server links its NPUs in two HCCS rings, devices 0-3 and 4-7; HCCL
# takes 1, 2, 4 or all 8 of them per server, and 2 or 4 only from one ring.
HCCS_RINGS = ((0, 1, 2, 3), (4, 5, 6, 7))
DEVICES_PER_SERVER = (1, 2, 4, 8)


def topology_faults(table):
    """Servers whose devices HCCL would not group: servers with different device counts
    (Ascend's multi-server rule, for every server kind), and on an 8-NPU server (device
    ids all 0-7) a count other than 1, 2, 4 or 8, or 2 or 4 devices across both HCCS
    rings; other servers follow their own hardware's rules."""
    counts = [(server_id, len(table.ranks_on(server_id))) for server_id in table.servers]
    faults = []
    if len(set(count for _, count in counts)) > 1:
        faults.append("the servers list different numbers of devices (%s) but HCCL needs the "
                      "same number on every server; list as many on each (make the table "
                      "with %s)" % (", ".join("%s: %d" % pair for pair in counts), GENERATE))
    for server_id in table.servers:
        devices = sorted(rank.device_id for rank in table.ranks_on(server_id))
        if max(devices) >= 2 * len(HCCS_RINGS[0]):
            continue
        listed = ", ".join(str(device) for device in devices)
        if len(devices) not in DEVICES_PER_SERVER:
            faults.append("server %s has %s (%s) but HCCL takes 1, 2, 4 or 8 devices per "
                          "server; list 1, 2, 4 or 8 of them (make the table with %s "
                          "--device_ids)" % (server_id, _count(len(devices), "device"),
                                             listed, GENERATE))
        elif len(devices) in (2, 4) and not any(set(devices) <= set(ring)
                                                for ring in HCCS_RINGS):
            faults.append("server %s's devices %s span both HCCS rings (0-3 and 4-7); %d "
                          "devices of a server must lie in one ring, e.g. %s"
                          % (server_id, listed, len(devices),
                             ",".join(str(d) for d in HCCS_RINGS[0][:len(devices)])))
    return faults


def to_json(table_or_ranks, layout):
    """The JSON object of a RankTable or a list of Rank in either layout (ids as strings,
    as the Ascend tools write them)."""
    ranks = sorted(getattr(table_or_ranks, "ranks", table_or_ranks),
                   key=lambda rank: rank.rank_id)

    def device(rank):
        return {"device_id": str(rank.device_id), "device_ip": rank.device_ip}

    if layout == "legacy":
        instances = [{"pod_name": str(rank.rank_id), "server_id": rank.server_id,
                      "rank_id": str(rank.rank_id), "devices": [device(rank)]}
                     for rank in ranks]
        return {"status": "completed", "group_count": "1", "group_list": [{
            "group_name": "hccl_world_group", "device_count": str(len(ranks)),
            "instance_count": str(len(instances)), "instance_list": instances}]}
    if layout == "1.0":
        servers = collections.OrderedDict()
        for rank in ranks:
            servers.setdefault(rank.server_id, []).append(
                dict(device(rank), rank_id=str(rank.rank_id)))
        return {"version": "1.0", "server_count": str(len(servers)), "status": "completed",
                "server_list": [{"server_id": server_id, "host_nic_ip": "reserve",
                                 "device": devices} for server_id, devices in servers.items()]}
    raise RankTableError("unknown rank table layout %r; use one of %s"
                         % (layout, ", ".join(LAYOUTS)))


def _read(data):
    """(layout, ranks in listing order, faults) of a parsed JSON object."""
    if not isinstance(data, dict):
        return None, [], ["the table is not a JSON object (found %s); a rank table is an object "
                          "with group_list or server_list" % type(data).__name__]
    if "server_list" in data:
        layout, entries_of = "1.0", _v1_entries
    elif "group_list" in data:
        layout, entries_of = "legacy", _legacy_entries
    else:
        return None, [], ["the table has neither group_list (legacy layout) nor server_list "
                          "(version 1.0 layout); make one with " + GENERATE]
    faults = []
    if data.get("status") != "completed":
        faults.append('status is %s, not "completed": the table is still being prepared; '
                      'wait for it, or set "status": "completed" once every device is listed'
                      % _show(data.get("status", _MISSING)))
    ranks = _check_entries(entries_of(data, faults), faults)
    return layout, ranks, faults


def _legacy_entries(data, faults):
    groups = _list(data, "group_list", "", faults)
    _check_count(data, "group_count", "", "group_list holds", "group", len(groups), faults)
    if len(groups) > 1:
        faults.append("group_list has %d groups but only one group (hccl_world_group) is "
                      "supported; put every device in that one group" % len(groups))
    where = "group_list[0]"
    if not groups or not _is_object(groups[0], where, faults):
        return []
    group, entries = groups[0], []
    instances = _list(group, "instance_list", where, faults)
    for i, instance in enumerate(instances):
        at = "%s.instance_list[%d]" % (where, i)
        if not _is_object(instance, at, faults):
            continue
        server_id = _server_id(instance, at, faults)
        devices = _list(instance, "devices", at, faults)
        rank_id = instance.get("rank_id", _MISSING)
        if rank_id is not _MISSING and len(devices) != 1:
            faults.append("%s has a rank_id and %d devices; give it exactly one device, or "
                          "drop its rank_id to number its devices in listing order"
                          % (at, len(devices)))
        entries += _entries(devices, at + ".devices", server_id, lambda device: rank_id, faults)
    _check_count(group, "instance_count", where, "instance_list holds", "instance",
                 len(instances), faults)
    _check_count(group, "device_count", where, "the group lists", "device", len(entries), faults)
    return entries


def _v1_entries(data, faults):
    if str(data.get("version", "1.0")) != "1.0":
        faults.append('version is %s but a table with server_list is version "1.0"; set '
                      '"version": "1.0"' % _show(data["version"]))
    servers = _list(data, "server_list", "", faults)
    _check_count(data, "server_count", "", "server_list holds", "server", len(servers), faults)
    entries = []
    for i, server in enumerate(servers):
        at = "server_list[%d]" % i
        if _is_object(server, at, faults):
            entries += _entries(_list(server, "device", at, faults), at + ".device",
                                _server_id(server, at, faults),
                                lambda device: device.get("rank_id", _MISSING), faults)
    return entries


def _entries(devices, where, server_id, rank_id_of, faults):
    entries = []
    for j, device in enumerate(devices):
        at = "%s[%d]" % (where, j)
        if _is_object(device, at, faults):
            entries.append(_Entry(at, server_id, _required(device, "device_id", at, faults),
                                  _required(device, "device_ip", at, faults),
                                  rank_id_of(device)))
    return entries


def _check_entries(entries, faults):
    """Faults in the devices' values and between devices; the Ranks (None where a value
    is wrong), in listing order."""
    if not entries:
        faults.append("the table lists no devices; add one per NPU (device_id, device_ip) or "
                      "make the table with " + GENERATE)
        return []
    with_rank = [entry for entry in entries if entry.rank_id is not _MISSING]
    if 0 < len(with_rank) < len(entries):
        first = next(entry.where for entry in entries if entry.rank_id is _MISSING)
        faults.append("%d of %d devices have a rank_id (%s has none); give every device one, "
                      "or none to number them in listing order"
                      % (len(with_rank), len(entries), first))
    ranks = []
    for number, entry in enumerate(entries):
        rank_id = number if not with_rank else _value(entry, "rank_id", faults)
        ranks.append(Rank(rank_id, entry.server_id, _value(entry, "device_id", faults),
                          _value(entry, "device_ip", faults)))
    labels = [_label(rank, entry) for rank, entry in zip(ranks, entries)]
    for (ip,), who in _shared(ranks, labels, ("device_ip",)):
        faults.append("device_ip %s is used by %s; every device needs its own IP"
                      % (ip, _who(who)))
    for (server_id, device_id), who in _shared(ranks, labels, ("server_id", "device_id")):
        faults.append("device_id %d appears %d times on server %s (%s); list each NPU of a "
                      "server once" % (device_id, len(who), server_id, _who(who)))
    wheres = [entry.where for entry in entries]
    for (rank_id,), who in _shared(ranks, wheres, ("rank_id",)):
        faults.append("rank_id %d is given to %d devices (%s); every device needs its own rank_id"
                      % (rank_id, len(who), _who(who)))
    numbers = set(rank.rank_id for rank in ranks)
    if None not in numbers and numbers != set(range(len(ranks))):
        missing = sorted(set(range(len(ranks))) - numbers)
        extra = sorted(numbers - set(range(len(ranks))))
        faults.append("rank ids must be 0-%d for %s; missing: %s%s; renumber them" % (
            len(ranks) - 1, _count(len(ranks), "device"), _and(missing) if missing else "none",
            "; out of range: %s" % _and(extra) if extra else ""))
    return ranks


def _value(entry, key, faults):
    """The checked value of one of an entry's fields, None if missing or wrong."""
    raw = getattr(entry, key)
    if raw is _MISSING:
        return None
    if key == "device_ip":
        if _is_ipv4(raw):
            return raw
        faults.append("device_ip %s at %s is not a dotted IPv4 address; use %s"
                      % (_show(raw), entry.where, _HINTS["device_ip"]))
        return None
    number = _whole(raw)
    if key == "device_id" and (number is None or number > MAX_DEVICE_ID):
        faults.append("device_id %s at %s is not a whole number 0-%d; use %s"
                      % (_show(raw), entry.where, MAX_DEVICE_ID, _HINTS["device_id"]))
        return None
    if number is None:
        faults.append("%s %s at %s is not a whole number >= 0; number the devices 0..N-1"
                      % (key, _show(raw), entry.where))
    return number


def _server_id(obj, where, faults):
    server_id = _required(obj, "server_id", where, faults)
    if server_id is _MISSING:
        return None
    if not _is_ipv4(server_id):
        faults.append("server_id %s at %s is not a dotted IPv4 address; use %s"
                      % (_show(server_id), where, _HINTS["server_id"]))
        return None
    return server_id


def _required(obj, key, where, faults):
    if key not in obj:
        faults.append('%s has no %s; add "%s": %s' % (where, key, key, _HINTS[key]))
        return _MISSING
    return obj[key]


def _list(obj, key, where, faults):
    value = obj.get(key, _MISSING)
    if isinstance(value, list):
        return value
    faults.append("%s must be a list, found %s" % (_path(where, key), _show(value)))
    return []


def _is_object(value, where, faults):
    if isinstance(value, dict):
        return True
    faults.append("%s must be an object, found %s" % (where, _show(value)))
    return False


def _check_count(obj, key, where, holder, noun, real, faults):
    """A declared count (group_count, device_count, ...) must match what is listed."""
    if key in obj and _whole(obj[key]) != real:
        faults.append('%s is %s but %s %s; set "%s": "%d"'
                      % (_path(where, key), _show(obj[key]), holder, _count(real, noun),
                         key, real))


def _shared(ranks, labels, fields):
    """(values, labels) of each combination of the fields' values that more than one
    rank has; ranks with a wrong (None) value among the fields are left out."""
    holders = collections.OrderedDict()
    for rank, label in zip(ranks, labels):
        key = tuple(getattr(rank, field) for field in fields)
        if None not in key:
            holders.setdefault(key, []).append(label)
    return [(key, who) for key, who in holders.items() if len(who) > 1]


def _label(rank, entry):
    return "rank %d" % rank.rank_id if rank.rank_id is not None else entry.where


def _who(labels):
    """'ranks 0 and 3' when every label is a rank, else the labels themselves."""
    if all(label.startswith("rank ") for label in labels):
        return "ranks " + _and([label[len("rank "):] for label in labels])
    return _and(labels)


def _and(items):
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else "%s and %s" % (", ".join(items[:-1]), items[-1])


def _whole(value):
    """A whole number >= 0 given as an int or a string of digits, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and re.fullmatch("[0-9]+", value):
        return int(value)
    return None


def _is_ipv4(value):
    match = isinstance(value, str) and _IPV4.fullmatch(value)
    return bool(match) and all(int(part) <= 255 for part in match.groups())


def _unique(items):
    return list(collections.OrderedDict.fromkeys(items))


def _show(value):
    if value is _MISSING:
        return "nothing"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _count(number, noun):
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")


def _path(where, key):
    return "%s.%s" % (where, key) if where else key


def _name(path):
    return "rank table %s" % path if path else "the rank table"
