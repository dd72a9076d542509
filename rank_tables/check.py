"""Says whether a rank table is usable before HCCL hangs on it.

    python -m rank_tables.check FILE [--rank_size N] [--server_id ID]

Prints one "ok:" line and exits 0, or prints every fault as an "error:" line on stderr
and exits 2. Without --rank_size, RANK_SIZE from the environment is checked when set.
"""
import argparse
import os
import sys

from rank_tables import table as rank_table

EXIT_FAULTS = 2


class Parser(argparse.ArgumentParser):
    """argparse whose usage mistakes are one "error:" line too, like every other fault."""

    def error(self, message):
        self.exit(EXIT_FAULTS, "error: %s (see --help)\n" % message)


def fail(lines):
    """Prints each line as an "error:" line on stderr; the exit status for faults."""
    for line in lines:
        sys.stderr.write("error: %s\n" % line)
    return EXIT_FAULTS


def problems(path, rank_size=None, server_id=None):
    """(RankTable or None, every fault found in the file, one line each); a table HCCL
    reads but cannot group on its servers (rank_table.topology_faults) comes back too."""
    try:
        data = rank_table.read_json(path)
    except rank_table.RankTableError as err:
        return None, [str(err)]
    faults = ["rank table %s: %s" % (path, fault) for fault in rank_table.find_faults(data)]
    if faults:
        return None, faults
    table = rank_table.parse(data, path)
    faults += ["rank table %s: %s" % (path, fault)
               for fault in rank_table.topology_faults(table)]
    checks = []
    if rank_size is not None:
        checks.append(lambda: rank_table.check_rank_size(table, rank_size))
    if server_id is not None:
        checks.append(lambda: table.ranks_on(server_id))
    for check in checks:
        try:
            check()
        except rank_table.RankTableError as err:
            faults.append(str(err))
    return table, faults


def main(argv=None):
    """Checks a rank table file; exit 0 when it suits the run, 2 otherwise."""
    parser = Parser(prog="python -m rank_tables.check", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="the rank table (JSON) to check")
    parser.add_argument("--rank_size", type=int, help="the RANK_SIZE the run will use "
                        "(default: $RANK_SIZE when set)")
    parser.add_argument("--server_id", help="a server that must be in the table")
    args = parser.parse_args(argv)
    rank_size = args.rank_size
    if rank_size is None and os.environ.get("RANK_SIZE"):
        try:
            rank_size = int(os.environ["RANK_SIZE"])
        except ValueError:
            return fail(["RANK_SIZE=%s is not a whole number; set it to the number of "
                         "devices, or unset it" % os.environ["RANK_SIZE"]])
    table, faults = problems(args.file, rank_size, args.server_id)
    if faults:
        return fail(faults)
    print("ok: " + table.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
