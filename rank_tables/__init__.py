"""HCCL rank tables for multi-NPU runs: the shipped examples, a library that reads and
checks them (table.py), and two command lines: check.py says whether a table is usable
before HCCL hangs on it, generate.py writes one from /etc/hccn.conf or a list of IPs."""
