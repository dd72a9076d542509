"""Rank tables: the shipped examples, every fault find_faults must name, and the check
and generate command lines as a user runs them (no TensorFlow anywhere)."""
import json
import os
import subprocess
import sys

import pytest

from rank_tables import table as rank_table
from tests.cli_helpers import ROOT

EXAMPLES = os.path.join(ROOT, "rank_tables")
SERVER_1_IPS = ["192.168.100.101", "192.168.101.101", "192.168.102.101", "192.168.103.101",
                "192.168.100.100", "192.168.101.100", "192.168.102.100", "192.168.103.100"]


def example(name):
    return rank_table.load(os.path.join(EXAMPLES, name))


def cli(tool, *args, **env):
    """Runs python -m rank_tables.TOOL in the repository root; RANK_SIZE only if given."""
    environ = dict(os.environ)
    environ.pop("RANK_SIZE", None)
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "rank_tables." + tool] + list(args), cwd=ROOT,
                          env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)


def error_lines(out):
    """The "error:" lines of a run that must fail as a user mistake: exit 2, nothing else
    on stderr, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), out.stderr
    assert "Traceback" not in out.stderr
    return lines


def test_shipped_examples():
    one, eight, sixteen = example("1p.json"), example("8p.json"), example("16p_2servers.json")
    assert (one.layout, one.rank_size, one.servers) == ("legacy", 1, ["10.0.0.1"])
    assert eight.layout == "legacy" and eight.servers == ["10.0.0.1"]
    assert [(r.rank_id, r.device_id) for r in eight.ranks] == [(i, i) for i in range(8)]
    assert [r.device_ip for r in eight.ranks] == SERVER_1_IPS
    assert sixteen.layout == "1.0" and sixteen.servers == ["10.0.0.1", "10.0.0.2"]
    second = sixteen.ranks_on("10.0.0.2")
    assert [r.rank_id for r in second] == list(range(8, 16))
    assert [r.device_id for r in second] == list(range(8))
    assert sixteen.ranks_on("10.0.0.1") == sixteen.ranks[:8]
    with pytest.raises(rank_table.RankTableError, match="its servers are 10.0.0.1, 10.0.0.2"):
        sixteen.ranks_on("10.0.0.9")


@pytest.mark.parametrize("layout", rank_table.LAYOUTS)
def test_to_json_round_trips(layout):
    sixteen = example("16p_2servers.json")
    again = rank_table.parse(rank_table.to_json(sixteen, layout))
    assert (again.layout, again.ranks, again.servers) == (layout, sixteen.ranks, sixteen.servers)


def test_several_devices_per_instance_are_numbered_in_order():
    data = {"status": "completed", "group_list": [{"instance_list": [
        {"server_id": "10.0.0.1", "devices": [{"device_id": 1, "device_ip": "10.1.0.1"},
                                              {"device_id": 0, "device_ip": "10.1.0.2"}]}]}]}
    assert rank_table.parse(data).ranks == [rank_table.Rank(0, "10.0.0.1", 1, "10.1.0.1"),
                                            rank_table.Rank(1, "10.0.0.1", 0, "10.1.0.2")]


_DROP = object()


def _set(path, value=_DROP):
    """A change to a table: sets (or drops) the value at a path of keys and indexes."""
    def change(data):
        inner = data
        for key in path[:-1]:
            inner = inner[key]
        if value is _DROP:
            del inner[path[-1]]
        else:
            inner[path[-1]] = value
        return data
    return change


INSTANCE = ["group_list", 0, "instance_list"]
BROKEN = {
    "not an object": (lambda data: [data], "not a JSON object"),
    "unknown layout": (lambda data: {"status": "completed"}, "neither group_list"),
    "status": (_set(["status"], "initializing"), "still being prepared"),
    "no status": (_set(["status"]), "status is nothing"),
    "group_count": (_set(["group_count"], "2"), 'set "group_count": "1"'),
    "device_count": (_set(["group_list", 0, "device_count"], "7"), 'set "device_count": "8"'),
    "instance_count": (_set(["group_list", 0, "instance_count"], 9),
                       'set "instance_count": "8"'),
    "two groups": (lambda data: dict(data, group_count="2",
                                     group_list=data["group_list"] * 2),
                   "only one group (hccl_world_group) is supported"),
    "no devices": (_set(INSTANCE, []), "lists no devices"),
    "missing device_ip": (_set(INSTANCE + [2, "devices", 0, "device_ip"]),
                          "instance_list[2].devices[0] has no device_ip"),
    "missing device_id": (_set(INSTANCE + [2, "devices", 0, "device_id"]), "has no device_id"),
    "missing server_id": (_set(INSTANCE + [4, "server_id"]), "instance_list[4] has no server_id"),
    "non-integer device_id": (_set(INSTANCE + [1, "devices", 0, "device_id"], "one"),
                              'device_id "one"'),
    "negative device_id": (_set(INSTANCE + [1, "devices", 0, "device_id"], -1),
                           "device_id -1 at"),
    "device_id over 15": (_set(INSTANCE + [1, "devices", 0, "device_id"], "16"),
                          "not a whole number 0-15"),
    "negative rank_id": (_set(INSTANCE + [1, "rank_id"], "-1"), 'rank_id "-1"'),
    "duplicate device_id": (_set(INSTANCE + [5, "devices", 0, "device_id"], "2"),
                            "device_id 2 appears 2 times on server 10.0.0.1 (ranks 2 and 5)"),
    "duplicate device_ip": (_set(INSTANCE + [3, "devices", 0, "device_ip"], SERVER_1_IPS[0]),
                            "device_ip 192.168.100.101 is used by ranks 0 and 3"),
    "bad device_ip": (_set(INSTANCE + [3, "devices", 0, "device_ip"], "192.168.1.256"),
                      "device_ip \"192.168.1.256\" at group_list[0].instance_list[3]"),
    "bad server_id": (_set(INSTANCE + [0, "server_id"], "server-a"),
                      'server_id "server-a" at group_list[0].instance_list[0] is not a dotted'),
    "rank gap": (_set(INSTANCE + [7, "rank_id"], "9"), "missing: 7; out of range: 9"),
    "duplicate rank_id": (_set(INSTANCE + [7, "rank_id"], "6"), "rank_id 6 is given to 2"),
    "some rank_ids": (_set(INSTANCE + [7, "rank_id"]), "7 of 8 devices have a rank_id"),
    "devices not a list": (_set(INSTANCE + [0, "devices"], {}), "devices must be a list"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_find_faults_names_each_broken_kind(kind):
    breaks, fragment = BROKEN[kind]
    with open(os.path.join(EXAMPLES, "8p.json")) as handle:
        data = breaks(json.load(handle))
    faults = rank_table.find_faults(data)
    assert any(fragment in fault for fault in faults), faults
    assert all("\n" not in fault for fault in faults)
    with pytest.raises(rank_table.RankTableError, match="^rank table x.json: "):
        rank_table.parse(data, "x.json")


@pytest.mark.parametrize("change, fragment", [
    (_set(["server_count"], "3"), 'set "server_count": "2"'),
    (_set(["version"], "2.0"), 'set "version": "1.0"'),
    (_set(["server_list", 1, "device", 0, "device_ip"], "192.168.100.101"),
     "used by ranks 0 and 8"),
    (_set(["server_list", 1, "device", 0, "rank_id"], "0"), "rank_id 0 is given to 2 devices"),
])
def test_find_faults_in_the_1_0_layout(change, fragment):
    with open(os.path.join(EXAMPLES, "16p_2servers.json")) as handle:
        faults = rank_table.find_faults(change(json.load(handle)))
    assert any(fragment in fault for fault in faults), faults


def test_load_and_rank_size_mistakes(tmp_path):
    with pytest.raises(rank_table.RankTableError, match="does not exist"):
        rank_table.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(rank_table.RankTableError, match="is not valid JSON"):
        rank_table.load(str(tmp_path / "bad.json"))
    with pytest.raises(rank_table.RankTableError, match=(
            "RANK_SIZE=4 but rank table .*8p.json lists 8 devices; set RANK_SIZE=8 or use a "
            "table with 4 devices")):
        rank_table.check_rank_size(example("8p.json"), 4)
    rank_table.check_rank_size(example("8p.json"), 8)


def test_check_cli_ok():
    out = cli("check", "rank_tables/8p.json", "--server_id", "10.0.0.1", RANK_SIZE="8")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("ok: rank_tables/8p.json (legacy layout): 8 devices on 1 server "
                          "(10.0.0.1), ranks 0-7\n")


def test_check_cli_faults(tmp_path):
    with open(os.path.join(EXAMPLES, "8p.json")) as handle:
        data = json.load(handle)
    data = _set(["status"], "initializing")(data)
    data = _set(INSTANCE + [3, "devices", 0, "device_ip"], SERVER_1_IPS[0])(data)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    lines = error_lines(cli("check", str(broken)))
    assert len(lines) == 2 and "still being prepared" in lines[0] and "ranks 0 and 3" in lines[1]
    assert error_lines(cli("check", str(tmp_path / "missing.json")))[0].endswith(
        "make one with python -m rank_tables.generate")
    lines = error_lines(cli("check", "rank_tables/8p.json", "--rank_size", "4",
                            "--server_id", "10.0.0.2"))
    assert "RANK_SIZE=4" in lines[0] and "server 10.0.0.2 is not in" in lines[1]
    assert "RANK_SIZE=1" in error_lines(cli("check", "rank_tables/8p.json", RANK_SIZE="1"))[0]
    assert len(error_lines(cli("check", "--rank_size", "x", "rank_tables/8p.json"))) == 1


def test_generate_from_hccn_conf_in_both_layouts(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("".join("address_%d=%s\nnetmask_%d=255.255.255.0\n" % (i, ip, i)
                            for i, ip in enumerate(SERVER_1_IPS)))
    for layout in rank_table.LAYOUTS:
        output = str(tmp_path / ("table_%s.json" % layout))
        out = cli("generate", "--hccn_conf", str(conf), "--layout", layout, "--output", output,
                  SERVER_ID="10.0.0.1")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("wrote %s (%s layout): 8 devices" % (output, layout))
        assert not os.path.exists(output + ".tmp")
        check = cli("check", output, "--rank_size", "8")
        assert check.returncode == 0 and check.stdout.startswith("ok: "), check.stderr
        assert rank_table.load(output).ranks == example("8p.json").ranks
    four = str(tmp_path / "4p.json")
    out = cli("generate", "--hccn_conf", str(conf), "--server_ids", "10.0.0.1",
              "--device_ids", "4,5,6,7", "--output", four)
    assert out.returncode == 0, out.stderr
    assert [r.device_ip for r in rank_table.load(four).ranks] == SERVER_1_IPS[4:]


def test_generate_refuses_mistakes(tmp_path):
    output = str(tmp_path / "8p.json")
    ips = ",".join(SERVER_1_IPS)
    assert cli("generate", "--device_ips", ips, "--server_ids", "10.0.0.1",
               "--output", output).returncode == 0
    before = open(output).read()
    lines = error_lines(cli("generate", "--device_ips", ips, "--server_ids", "10.0.0.1",
                            "--layout", "1.0", "--output", output))
    assert lines == ["error: %s already exists; pass --overwrite to replace it" % output]
    assert open(output).read() == before
    assert cli("generate", "--device_ips", ips, "--server_ids", "10.0.0.1", "--layout", "1.0",
               "--output", output, "--overwrite").returncode == 0
    assert rank_table.load(output).layout == "1.0"
    other = str(tmp_path / "other.json")
    assert "--server_ids" in error_lines(cli("generate", "--device_ips", ips, "--output",
                                             other, SERVER_ID=""))[0]
    assert "not written" in error_lines(cli("generate", "--device_ips", ips + "," + ips,
                                            "--server_ids", "10.0.0.1,10.0.0.2",
                                            "--output", other))[0]
    assert "need 16" in error_lines(cli("generate", "--device_ips", ips, "--output", other,
                                        "--server_ids", "10.0.0.1,10.0.0.2",
                                        "--devices_per_server", "8"))[0]
    assert not os.path.exists(other)


def test_generate_merges_one_server_tables(tmp_path):
    first, merged = str(tmp_path / "a.json"), str(tmp_path / "cluster.json")
    second_ips = [rank.device_ip for rank in example("16p_2servers.json").ranks_on("10.0.0.2")]
    assert cli("generate", "--device_ips", ",".join(second_ips), "--server_ids", "10.0.0.2",
               "--output", first).returncode == 0
    out = cli("generate", "--merge", "rank_tables/8p.json", first, "--layout", "1.0",
              "--output", merged)
    assert out.returncode == 0, out.stderr
    assert "16 devices on 2 servers (10.0.0.1, 10.0.0.2), ranks 0-15" in out.stdout
    table = rank_table.load(merged)
    assert table.ranks == example("16p_2servers.json").ranks
    lines = error_lines(cli("generate", "--merge", "rank_tables/8p.json", "rank_tables/8p.json",
                            "--output", str(tmp_path / "twice.json")))
    assert any("is used by ranks 0 and 8" in line for line in lines)
