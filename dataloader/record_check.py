"""Looking into TFRecord shards from Python, to name the shard and record a failure
came from (TensorFlow's own errors name neither).

A TFRecord file is a run of frames: uint64 length, uint32 CRC of the length, the record,
uint32 CRC of the record. scan_shard walks the frames reading only their 12-byte
headers, so it finds a shard cut short (an interrupted copy, a full disk) in about a
second per million records; first_unreadable_record reads a whole shard, checksums
included, for the rarer damage inside it.
"""
import os
import struct

from utils.errors import tf_error_line

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC-32C of the length
FOOTER_BYTES = 4   # uint32 masked CRC-32C of the record


def scan_shard(path):
    """(complete records, None) when the frames fill the file exactly, else (complete
    records before the damage, what is wrong in words)."""
    size = os.path.getsize(path)
    count, offset = 0, 0
    with open(path, "rb") as handle:
        while offset < size:
            handle.seek(offset)
            header = handle.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES:
                return count, ("the file ends %d bytes into the header of record %d "
                               "(cut short)" % (len(header), count))
            length = struct.unpack("<Q", header[:8])[0]
            end = offset + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                return count, ("record %d needs %d bytes but the file ends %d bytes after "
                               "its start (cut short)"
                               % (count, end - offset, size - offset))
            offset = end
            count += 1
    return count, None


def cut_short_shards(files):
    """[(path, complete records, what is wrong)] for every shard scan_shard finds damaged."""
    found = []
    for path in files:
        count, problem = scan_shard(path)
        if problem:
            found.append((path, count, problem))
    return found


def first_unreadable_record(path):
    """(index, TensorFlow's complaint) of the first record of ``path`` that fails to
    read (checksum, length), or None when every record reads."""
    from utils.tf_compat import tf
    count = 0
    try:
        for _ in tf.io.tf_record_iterator(path):
            count += 1
    except tf.errors.OpError as err:
        return count, tf_error_line(err)
    return None
