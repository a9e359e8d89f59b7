"""RecordIO framing, image headers and .idx files, checked against an independent reader written here
from MXNet's format description, not from the implementation."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from deepvision.data.records import (
    IndexMismatchError,
    IRHeader,
    RecordError,
    RecordFile,
    RecordReader,
    pack_header,
    read_index,
    unpack_header,
)
from deepvision.data.records import recordio as rio
from deepvision.datasets.records import (
    MXIndexedRecordIO,
    MXRecordIO,
    RecordWriter,
    frame_record,
    rebuild_index,
    write_index,
)
from deepvision.errors import UserError
from deepvision.fileio import file_mode

MAGIC = 0xCED7230A


# -- an independent reader, from the format description ----------------------------------------------------
def independent_read(data: bytes) -> list[tuple[int, bytes]]:
    """(offset of the first magic word, payload) of every record of a RecordIO byte string."""
    records, pos, start, parts = [], 0, None, []
    while pos < len(data):
        magic, lrec = struct.unpack("<II", data[pos : pos + 8])
        assert magic == MAGIC, f"bad magic at {pos}"
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        body = data[pos + 8 : pos + 8 + length]
        assert len(body) == length
        if cflag in (0, 1):
            assert not parts
            start = pos
        parts.append(body)
        pos += 8 + length + (-length % 4)
        if cflag in (0, 3):
            records.append((start, struct.pack("<I", MAGIC).join(parts)))
            parts = []
    assert not parts, "file ends inside a split record"
    return records


def independent_header(payload: bytes) -> tuple[int, object, int, int, bytes]:
    flag, label, rid, rid2 = struct.unpack("<IfQQ", payload[:24])
    if flag > 0:
        labels = list(struct.unpack(f"<{flag}f", payload[24 : 24 + 4 * flag]))
        return flag, labels, rid, rid2, payload[24 + 4 * flag :]
    return flag, label, rid, rid2, payload[24:]


MAGIC_LE = struct.pack("<I", MAGIC)
PAYLOADS = [
    b"",
    b"a",
    b"ab",
    b"abc",
    b"abcd",
    MAGIC_LE,  # the magic alone, aligned at 0
    b"xyz" + MAGIC_LE,  # unaligned: must not split
    b"abcd" + MAGIC_LE + b"efgh",  # aligned at 4
    MAGIC_LE + MAGIC_LE + b"tail!",  # two consecutive aligned occurrences
    b"ab" + MAGIC_LE + b"cd" + MAGIC_LE + b"e",  # unaligned then aligned
    b"0123" + MAGIC_LE,  # aligned magic as the last word
    bytes(range(256)) * 3 + MAGIC_LE + b"x",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_frame_round_trip_through_independent_reader(payload):
    framed = frame_record(payload)
    assert len(framed) % 4 == 0
    assert independent_read(framed) == [(0, payload)]
    buf = framed
    got, nxt = rio.read_record_at(buf, 0)
    assert bytes(got) == payload and nxt == len(framed)


def test_split_flags_and_padding_follow_the_recordio_format():
    payload = b"abcd" + MAGIC_LE + b"ef" + MAGIC_LE + b"g"  # aligned at 4; the second one at 10 is unaligned
    framed = frame_record(payload)
    first = struct.unpack("<II", framed[:8])
    assert first == (MAGIC, (1 << 29) | 4)
    second = struct.unpack("<II", framed[12:20])
    assert second[1] >> 29 == 3 and second[1] & ((1 << 29) - 1) == len(payload) - 8
    assert len(framed) == 8 + 4 + 8 + 7 + 1  # last part padded to 4 bytes
    # no magic in the payload: one part, flag 0, zero padding
    for n in range(8):
        framed = frame_record(b"z" * n)
        assert struct.unpack("<II", framed[:8]) == (MAGIC, n)
        assert framed[8 + n :] == b"\0" * (-n % 4)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103])
def test_lengths_mod_4_round_trip_in_a_file(tmp_path, n):
    rng = np.random.default_rng(n)
    payloads = [rng.integers(0, 256, n + k, dtype=np.uint8).tobytes() for k in range(4)]
    with RecordWriter(tmp_path / "a.rec") as w:
        for k, p in enumerate(payloads):
            w.write(p, key=10 + k)
    data = (tmp_path / "a.rec").read_bytes()
    records = independent_read(data)
    assert [p for _, p in records] == payloads
    keys, offsets = read_index(tmp_path / "a.idx")
    assert keys.tolist() == [10, 11, 12, 13]
    assert offsets.tolist() == [o for o, _ in records]
    if n == 0:  # numbers as written: int() reads '1_0' as 10 and '+5' as 5
        (tmp_path / "b.idx").write_text("1_0\t0\n")
        assert read_index(tmp_path / "b.idx")[0].tolist() == ["1_0"]  # a key that is no number stays text
        (tmp_path / "c.idx").write_text("0\t+0\n")
        with pytest.raises(IndexMismatchError, match=r"c\.idx:1: expected 'key<TAB>byte offset', got '0\\t\+0'"):
            read_index(tmp_path / "c.idx")
    with RecordReader(tmp_path / "a.rec") as r:
        assert [bytes(p) for _, p in r] == payloads
        assert bytes(r.read_at(int(offsets[2]))) == payloads[2]


def test_image_header_single_and_multi_label():
    single = pack_header(IRHeader(0, 3.0, 42, 0), b"IMG")
    assert independent_header(single) == (0, 3.0, 42, 0, b"IMG")
    header, body = unpack_header(single)
    assert header.flag == 0 and header.label == 3.0 and header.id == 42 and bytes(body) == b"IMG"
    multi = pack_header(IRHeader(0, [1.0, 2.5, 7.0], 7, 0), b"JPEG")
    flag, labels, rid, rid2, body = independent_header(multi)
    assert (flag, labels, rid, rid2, body) == (3, [1.0, 2.5, 7.0], 7, 0, b"JPEG")
    header, body = unpack_header(multi)
    assert header.flag == 3 and header.label.tolist() == [1.0, 2.5, 7.0] and bytes(body) == b"JPEG"
    assert len(pack_header(IRHeader(0, 1.0, 0, 0))) == 24


def _write_records(path: Path, n: int, *, width: int = 1, magic_every: int = 0) -> list[bytes]:
    payloads = []
    with RecordWriter(path) as w:
        for i in range(n):
            label: object = float(i % 5) if width == 1 else [float(i), float(i % 3)][:width]
            body = bytes([i % 256]) * (i % 7 + 1)
            if magic_every and i % magic_every == 0:
                body = b"\0" * (4 - 24 % 4 if 24 % 4 else 0) + MAGIC_LE + body
            payload = pack_header(IRHeader(0, label, 1000 + i, 0), body)
            payloads.append(payload)
            w.write(payload, key=1000 + i)
    return payloads


def test_record_file_reads_labels_ids_and_random_access(tmp_path):
    payloads = _write_records(tmp_path / "r.rec", 23, magic_every=4)
    rf = RecordFile.open(tmp_path / "r.rec")
    assert len(rf) == 23 and not rf.rebuilt
    assert rf.ids.tolist() == [1000 + i for i in range(23)]
    assert rf.labels[:, 0].tolist() == [float(i % 5) for i in range(23)]
    for i in (0, 4, 22, 13):
        assert bytes(rf.read(i)) == payloads[i]
    assert rf.keys.tolist() == [1000 + i for i in range(23)]  # the .idx keys the writer was given


def test_multi_label_table(tmp_path):
    _write_records(tmp_path / "m.rec", 9, width=2)
    rf = RecordFile.open(tmp_path / "m.rec")
    assert rf.label_width == 2
    assert rf.labels.tolist() == [[float(i), float(i % 3)] for i in range(9)]


def test_index_rebuilt_when_missing(tmp_path):
    _write_records(tmp_path / "r.rec", 15, magic_every=3)
    want_keys, want_offsets = read_index(tmp_path / "r.idx")
    os.unlink(tmp_path / "r.idx")
    rf = RecordFile.open(tmp_path / "r.rec")
    assert rf.rebuilt
    assert rf.keys.tolist() == want_keys.tolist() and rf.offsets.tolist() == want_offsets.tolist()
    out = rebuild_index(tmp_path / "r.rec")
    assert out == tmp_path / "r.idx"
    assert read_index(out)[1].tolist() == want_offsets.tolist()


def test_index_of_another_file_is_detected(tmp_path):
    _write_records(tmp_path / "a.rec", 10)
    _write_records(tmp_path / "b.rec", 12, magic_every=2)
    with pytest.raises(IndexMismatchError, match="does not match"):
        RecordFile.open(tmp_path / "a.rec", tmp_path / "b.idx", cache=False)


def test_stale_index_and_trailing_records_are_detected(tmp_path):
    _write_records(tmp_path / "a.rec", 10)
    keys, offsets = read_index(tmp_path / "a.idx")
    write_index(tmp_path / "short.idx", keys[:7], offsets[:7])
    with pytest.raises(IndexMismatchError, match="ends at byte"):
        RecordFile.open(tmp_path / "a.rec", tmp_path / "short.idx", cache=False)
    write_index(tmp_path / "odd.idx", keys, offsets + 2)
    with pytest.raises(IndexMismatchError, match="not a record boundary"):
        RecordFile.open(tmp_path / "a.rec", tmp_path / "odd.idx", cache=False)


@pytest.mark.parametrize("offset", ["99999999999999999999999", "-99999999999999999999999", "9223372036854775807"])
def test_an_offset_beyond_any_file_is_one_line(tmp_path, run_cli, offset):
    _write_records(tmp_path / "a.rec", 4)
    lines = (tmp_path / "a.idx").read_text().splitlines()
    lines[1] = f"{lines[1].split(chr(9))[0]}\t{offset}"
    (tmp_path / "a.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(IndexMismatchError, match=f"a.idx:2: byte offset {offset} lies outside the file"):
        read_index(tmp_path / "a.idx")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("mean", tmp_path / "a.rec")
    assert code == 2 and out == "" and err == (f"deepvision mean: error: {tmp_path / 'a.idx'}:2: byte offset {offset} "
                                               f"lies outside the file; delete the .idx to rebuild it from the .rec\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("key", ["1000", "01000"])
def test_a_key_given_twice_is_one_line(tmp_path, run_cli, key):
    """MXNet's MXIndexedRecordIO keeps the later offset of a key given twice (int() reads '01000' as 1000), so it
    would read the second record twice and never the first: the .idx is refused, naming the key and both lines."""
    _write_records(tmp_path / "a.rec", 4)
    lines = (tmp_path / "a.idx").read_text().splitlines()
    lines[1] = f"{key}\t{lines[1].split(chr(9))[1]}"  # line 1's key 1000, record 1's offset
    (tmp_path / "a.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(IndexMismatchError, match=f"a.idx:2: key {key} is given again \\(first on line 1\\)"):
        read_index(tmp_path / "a.idx")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("mean", tmp_path / "a.rec")
    assert code == 2 and out == "" and err == (f"deepvision mean: error: {tmp_path / 'a.idx'}:2: key {key} is "
                                               f"given again (first on line 1); delete the .idx to rebuild it from "
                                               f"the .rec\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "t.idx").write_text("a\t0\nb\t16\na\t32\n")  # text keys too
    with pytest.raises(IndexMismatchError, match=r"t\.idx:3: key a is given again \(first on line 1\)"):
        read_index(tmp_path / "t.idx")


def test_keys_beyond_int64_are_kept_as_text(tmp_path):
    (tmp_path / "k.idx").write_text("99999999999999999999999\t0\n1\t16\n")
    keys, offsets = read_index(tmp_path / "k.idx")
    assert keys.tolist() == ["99999999999999999999999", "1"] and offsets.tolist() == [0, 16]


def test_truncated_record_names_index_and_offset(tmp_path):
    _write_records(tmp_path / "a.rec", 6)
    data = (tmp_path / "a.rec").read_bytes()
    (tmp_path / "a.rec").write_bytes(data[:-3])
    os.unlink(tmp_path / "a.idx")
    with pytest.raises(RecordError, match=r"record 5 at byte offset \d+") as info:
        RecordFile.open(tmp_path / "a.rec", cache=False)
    assert info.value.index == 5 and info.value.offset == independent_read(data)[5][0]


def test_corrupt_magic_inside_file_is_reported_on_read(tmp_path):
    _write_records(tmp_path / "a.rec", 6)
    rf = RecordFile.open(tmp_path / "a.rec", cache=False)
    data = bytearray((tmp_path / "a.rec").read_bytes())
    off = int(rf.offsets[3])
    data[off : off + 4] = b"XXXX"
    bad = tmp_path / "bad.rec"
    bad.write_bytes(bytes(data))
    reader = RecordReader(bad)
    with pytest.raises(RecordError, match=f"record 3 at byte offset {off}"):
        reader.read_at(off, index=3)


def test_writer_is_atomic_and_keeps_permissions(tmp_path):
    with pytest.raises(RuntimeError), RecordWriter(tmp_path / "x.rec") as w:
        w.write(b"data")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with RecordWriter(tmp_path / "y.rec") as w:
        w.write(b"data")
        assert not (tmp_path / "y.rec").exists()  # only the temporary file exists while writing
    mode = (tmp_path / "y.rec").stat().st_mode & 0o777
    assert mode == file_mode() and (tmp_path / "y.idx").stat().st_mode & 0o777 == mode


def test_a_stop_while_the_writer_renames_its_files_lands_both(tmp_path, monkeypatch):
    """Ctrl+C between the .idx's rename and the .rec's left the new .idx beside the old .rec: the renames
    are held together and the stop is raised after them."""
    import signal

    from deepvision.datasets import records

    with RecordWriter(tmp_path / "x.rec") as w:
        w.write(b"old")
    real = records.atomic_write_text

    def stopped_meanwhile(*args, **kwargs):
        real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(records, "atomic_write_text", stopped_meanwhile)
    w = RecordWriter(tmp_path / "x.rec")
    w.write(b"new data")
    with pytest.raises(KeyboardInterrupt):
        w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.idx", "x.rec"]
    assert (tmp_path / "x.idx").read_text() == "0\t0\n" and (tmp_path / "x.rec").read_bytes()[8:16] == b"new data"


def test_mxnet_style_classes(tmp_path):
    rec = MXIndexedRecordIO(str(tmp_path / "t.idx"), str(tmp_path / "t.rec"), "w")
    for i in range(5):
        rec.write_idx(i, f"record_{i}".encode())
    rec.close()
    rec = MXIndexedRecordIO(str(tmp_path / "t.idx"), str(tmp_path / "t.rec"), "r")
    assert rec.keys == [0, 1, 2, 3, 4]
    assert rec.read_idx(3) == b"record_3"
    rec.seek(1)
    assert rec.read() == b"record_1" and rec.read() == b"record_2"
    rec.close()
    seq = MXRecordIO(str(tmp_path / "t.rec"), "r")
    assert [seq.read() for _ in range(6)] == [f"record_{i}".encode() for i in range(5)] + [None]
    seq.reset()
    assert seq.read() == b"record_0"
    seq.close()


@pytest.mark.parametrize("value", ["off", "OFF", "false", "no", "0", "none", ""])
def test_cache_dir_is_disabled_by_the_words_for_off(monkeypatch, value):
    from deepvision.data.records.record_file import cache_dir

    monkeypatch.setenv("DEEPVISION_CACHE_DIR", value)
    assert cache_dir() is None


@pytest.mark.parametrize("value", ["on", "yes", "TRUE", "1"])
def test_cache_dir_refuses_the_words_for_on(monkeypatch, value):
    """`DEEPVISION_CACHE_DIR=yes` cached into a folder named `yes` wherever the command ran."""
    from deepvision.data.records.record_file import cache_dir

    monkeypatch.setenv("DEEPVISION_CACHE_DIR", value)
    with pytest.raises(UserError, match=rf"^DEEPVISION_CACHE_DIR is a folder or off/0/false/no/none, not '{value}' "
                                        rf"\(a folder: \./{value}\)$"):
        cache_dir()
    monkeypatch.setenv("DEEPVISION_CACHE_DIR", f"./{value}")
    assert cache_dir() == Path(value)


def test_table_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPVISION_CACHE_DIR", str(tmp_path / "cache"))
    with RecordWriter(tmp_path / "big.rec") as w:
        for i in range(1200):
            w.write(pack_header(IRHeader(0, float(i % 10), i, 0), b"x" * (i % 5)), key=i)
    first = RecordFile.open(tmp_path / "big.rec")
    assert list((tmp_path / "cache" / "records").glob("big-*.npz"))
    calls = []
    from deepvision.data.records import record_file

    monkeypatch.setattr(record_file, "_header_table",
                        lambda *a: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    again = RecordFile.open(tmp_path / "big.rec")
    assert not calls and np.array_equal(again.labels, first.labels) and np.array_equal(again.ids, first.ids)
    os.utime(tmp_path / "big.idx", ns=(1, 1))  # a changed .idx invalidates the cached table
    with pytest.raises(AssertionError):
        RecordFile.open(tmp_path / "big.rec")


def test_table_cache_sees_an_edit_in_place_that_restores_the_times(tmp_path, monkeypatch):
    """Labels rewritten in place (same size and inode) with the modification time set back (`touch -r`) were
    read from the cached table; the change time, which nobody can set back, is in the key."""
    monkeypatch.setenv("DEEPVISION_CACHE_DIR", str(tmp_path / "cache"))
    rec = tmp_path / "big.rec"
    with RecordWriter(rec) as w:
        for i in range(1200):
            w.write(pack_header(IRHeader(0, float(i % 10), i, 0), b"x" * 4), key=i)
    first = RecordFile.open(rec)
    assert list((tmp_path / "cache" / "records").glob("big-*.npz")) and first.labels[0, 0] == 0.0
    before, inode = rec.stat(), rec.stat().st_ino
    with open(rec, "r+b") as f:  # the first record's label (bytes 12-15: after magic, length and flag)
        f.seek(12)
        f.write(struct.pack("<f", 9.0))
    os.utime(rec, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = rec.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, inode)
    if after.st_ctime_ns == before.st_ctime_ns:  # a file system with coarse change times
        pytest.skip("the change time did not move")
    again = RecordFile.open(rec)
    assert again.labels[0, 0] == 9.0 and np.array_equal(again.labels[1:], first.labels[1:])


def test_headers_split_by_the_magic_number(tmp_path):
    """A header field equal to the magic (id2 here, or a label's bits) splits the record inside the header."""
    magic_float = struct.unpack("<f", MAGIC_LE)[0]
    files = {  # a record file holds one number of labels per record: single-label and two-label files
        "s": ([pack_header(IRHeader(0, 2.0, 1, MAGIC), b"img1"), pack_header(IRHeader(0, magic_float, 2, 0), b"img2"),
               pack_header(IRHeader(0, 4.0, 4, 0), b"img4")], [[2.0], [magic_float], [4.0]]),
        "m": ([pack_header(IRHeader(0, [3.0, 5.0], 1, MAGIC), b"img1"),
               pack_header(IRHeader(0, [1.0, magic_float], 2, 0), b"img2"),
               pack_header(IRHeader(0, [4.0, 6.0], 4, 0), b"img4")], [[3.0, 5.0], [1.0, magic_float], [4.0, 6.0]]),
    }
    for name, (payloads, labels) in files.items():
        with RecordWriter(tmp_path / f"{name}.rec") as w:
            for i, p in enumerate(payloads):
                w.write(p, key=i)
        assert [p for _, p in independent_read((tmp_path / f"{name}.rec").read_bytes())] == payloads
        for drop_idx in (False, True):
            if drop_idx:
                os.unlink(tmp_path / f"{name}.idx")
            rf = RecordFile.open(tmp_path / f"{name}.rec", cache=False)
            assert rf.ids.tolist() == [1, 2, 4]
            assert rf.labels.tolist() == labels
            assert [bytes(rf.read(i)) for i in range(3)] == payloads


def test_records_mixing_label_counts_are_refused_by_every_reader(tmp_path, run_cli):
    """Classification data gives every image the same number of labels (the lst source refuses a list that
    does not): records of one label and of three ([class, 7, 8]) were read as single-label data from the first
    label, by training, `data info`, `evaluate --data X.rec` and `mean`."""
    with RecordWriter(tmp_path / "a.rec") as w:
        for i in range(6):
            label = float(i % 3) if i % 2 == 0 else [float(i % 3), 7.0, 8.0]
            w.write(pack_header(IRHeader(0, label, 50 + i, 0), b"not decoded"), key=i)
    (tmp_path / "c.yaml").write_text(f"model: {{name: lenet}}\ndata: {{source: rec, train: '{tmp_path / 'a.rec'}', "
                                     f"image_size: 28}}\n")
    message = (f"{tmp_path / 'a.rec'} mixes label counts: record 0 (id 50) at byte offset 0 has 1 label(s), "
               f"record 1 (id 51) at byte offset 44 has 3; a classification record file gives every image the same "
               f"number (pack it again from a list whose lines all hold the same labels)")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for drop_idx in (False, True):  # read through the .idx, or the index rebuilt by a scan
        if drop_idx:
            os.unlink(tmp_path / "a.idx")
            del before["a.idx"]
        with pytest.raises(UserError) as exc:
            RecordFile.open(tmp_path / "a.rec", cache=False)
        assert str(exc.value) == message
        for args in (("mean", tmp_path / "a.rec"), ("data", "info", tmp_path / "c.yaml")):
            code, out, err = run_cli(*args)
            assert code == 2 and out == "" and err == f"deepvision {' '.join(args[:-1])}: error: {message}\n", err
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_corrupt_label_count_is_a_record_error(tmp_path):
    _write_records(tmp_path / "a.rec", 6)
    keys, offsets = read_index(tmp_path / "a.idx")
    data = bytearray((tmp_path / "a.rec").read_bytes())
    data[int(offsets[2]) + 8 + 3] = 0x01  # the header's flag now announces 16,777,216 labels
    (tmp_path / "a.rec").write_bytes(bytes(data))
    with pytest.raises(RecordError, match=r"record 2 at byte offset \d+ is corrupt: its header announces 16777216"):
        RecordFile.open(tmp_path / "a.rec", cache=False)


def test_truncated_rec_with_its_index_names_the_cut_record(tmp_path):
    _write_records(tmp_path / "a.rec", 8)
    keys, offsets = read_index(tmp_path / "a.idx")
    data = (tmp_path / "a.rec").read_bytes()
    (tmp_path / "a.rec").write_bytes(data[: int(offsets[5]) + 10])  # cut inside record 5; records 6, 7 gone
    with pytest.raises(RecordError, match=f"record 5 at byte offset {offsets[5]} is truncated") as exc:
        RecordFile.open(tmp_path / "a.rec", cache=False)
    assert exc.value.index == 5 and exc.value.offset == int(offsets[5])
