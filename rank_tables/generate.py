"""Writes a rank table, so nobody has to type device IPs into JSON by hand.

    python -m rank_tables.generate --output FILE (--hccn_conf PATH | --device_ips IP,IP,...)
        [--server_ids 10.0.0.1[,10.0.0.2...]] [--devices_per_server N] [--device_ids 0,1,2,3]
        [--layout legacy|1.0] [--overwrite]
    python -m rank_tables.generate --merge A.json B.json ... --output FILE [--layout ...]

Ranks are numbered server by server, devices in the order given; --merge joins one-server
tables into a cluster table, renumbering the ranks in file order. The result is checked
before it is written (atomically), and an existing file is replaced only with --overwrite.
"""
import argparse
import json
import os
import re
import sys

from rank_tables import table as rank_table
from rank_tables.check import Parser, fail
from utils.errors import UserError
from utils.files import write_text

_ADDRESS = re.compile(r"\s*address_([0-9]+)\s*=\s*(\S+)\s*$")


def read_hccn_conf(path):
    """{device index: device IP} from the address_N=IP lines of /etc/hccn.conf."""
    try:
        with open(path, encoding="utf-8") as handle:
            matches = [_ADDRESS.match(line) for line in handle]
    except (OSError, ValueError) as err:
        raise rank_table.RankTableError("cannot read %s (%s); give the path of the server's "
                                        "hccn.conf or list the IPs with --device_ips"
                                        % (path, getattr(err, "strerror", None) or err)) from None
    addresses = dict((int(match.group(1)), match.group(2)) for match in matches if match)
    if not addresses:
        raise rank_table.RankTableError("%s has no address_N=IP lines; configure the NPUs "
                                        "with hccn_tool first or use --device_ips" % path)
    return addresses


def new_ranks(args):
    """The ranks that --hccn_conf or --device_ips with the server and device options give."""
    servers = _words(args.server_ids or os.environ.get("SERVER_ID", ""))
    if not servers:
        raise rank_table.RankTableError("no server id: pass --server_ids (each server's IPv4 "
                                        "address, e.g. 10.0.0.1) or set SERVER_ID")
    device_ids = args.device_ids
    if device_ids is None and args.devices_per_server is not None:
        device_ids = list(range(args.devices_per_server))
    if args.devices_per_server is not None and len(device_ids) != args.devices_per_server:
        raise rank_table.RankTableError("--device_ids lists %d devices but --devices_per_server "
                                        "is %d; give one of them"
                                        % (len(device_ids), args.devices_per_server))
    if args.hccn_conf:
        if len(servers) != 1:
            raise rank_table.RankTableError("--hccn_conf describes one server but --server_ids "
                                            "names %d; make one table per server and join them "
                                            "with --merge" % len(servers))
        addresses = read_hccn_conf(args.hccn_conf)
        device_ids = sorted(addresses) if device_ids is None else device_ids
        missing = [str(i) for i in device_ids if i not in addresses]
        if missing:
            raise rank_table.RankTableError("%s has no address for device %s; choose devices "
                                            "it lists with --device_ids"
                                            % (args.hccn_conf, ", ".join(missing)))
        ips = [addresses[i] for i in device_ids]
    else:
        ips = _words(args.device_ips)
        if device_ids is None:
            device_ids = list(range(len(ips) // len(servers)))
        if len(ips) != len(servers) * len(device_ids):
            raise rank_table.RankTableError(
                "--device_ips lists %d addresses but %d server(s) x %d devices need %d; give "
                "one IP per device, server by server" % (len(ips), len(servers),
                                                         len(device_ids),
                                                         len(servers) * len(device_ids)))
    pairs = [(server, device_id) for server in servers for device_id in device_ids]
    return [rank_table.Rank(number, server, device_id, ip)
            for number, ((server, device_id), ip) in enumerate(zip(pairs, ips))]


def merged_ranks(paths):
    """The ranks of several tables, one after another, renumbered from 0."""
    ranks = []
    for path in paths:
        for rank in rank_table.load(path).ranks:
            ranks.append(rank._replace(rank_id=len(ranks)))
    return ranks


def write(data, path):
    """Writes the table whole (utils.files.write_text): a reader never sees half."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def main(argv=None):
    """Writes a rank table for the servers and devices given."""
    parser = Parser(prog="python -m rank_tables.generate",
                    description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="the rank table to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hccn_conf", metavar="PATH",
                        help="this server's hccn.conf, e.g. /etc/hccn.conf")
    source.add_argument("--device_ips", metavar="IP,IP,...",
                        help="the device IPs, server by server")
    source.add_argument("--merge", nargs="+", metavar="TABLE",
                        help="rank tables to join, ranks renumbered in file order")
    parser.add_argument("--server_ids", metavar="ID,...",
                        help="the servers' IPv4 addresses (default: $SERVER_ID)")
    parser.add_argument("--devices_per_server", type=int, metavar="N",
                        help="use devices 0..N-1 of each server (default: all of hccn.conf, "
                        "or as many as --device_ips gives per server)")
    parser.add_argument("--device_ids", type=_device_ids, metavar="ID,...",
                        help="the device ids used on each server, e.g. 0,1,2,3")
    parser.add_argument("--layout", choices=rank_table.LAYOUTS, default="legacy",
                        help="legacy (group_list, the default) or 1.0 (server_list)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    args = parser.parse_args(argv)
    if args.merge and (args.server_ids, args.device_ids, args.devices_per_server) != (
            None, None, None):
        return fail(["--merge takes the servers and devices from the tables; leave out "
                     "--server_ids, --device_ids and --devices_per_server"])
    if os.path.exists(args.output) and not args.overwrite:
        return fail(["%s already exists; pass --overwrite to replace it" % args.output])
    try:
        ranks = merged_ranks(args.merge) if args.merge else new_ranks(args)
    except rank_table.RankTableError as err:
        return fail([str(err)])
    data = rank_table.to_json(ranks, args.layout)
    faults = rank_table.find_faults(data)
    if faults:
        return fail(["%s not written: %s" % (args.output, fault) for fault in faults])
    try:
        write(data, args.output)
    except UserError as err:  # write_text names the path and the cause
        return fail([str(err)])
    print("wrote " + rank_table.parse(data, args.output).summary())
    return 0


def _words(text):
    return [word.strip() for word in text.split(",") if word.strip()]


def _device_ids(text):
    """argparse type of --device_ids: whole numbers, comma-separated."""
    if not re.fullmatch(r"[0-9]+(\s*,\s*[0-9]+)*", text.strip()):
        raise argparse.ArgumentTypeError("%r is not a comma-separated list of device "
                                         "numbers, e.g. 0,1,2,3" % text)
    return [int(word) for word in _words(text)]


if __name__ == "__main__":
    sys.exit(main())
