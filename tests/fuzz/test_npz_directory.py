"""A `.npz` whose zip directory claims more stored bytes than the file holds (a 4 GB member in a
1.6 kB file, with an .npy header declaring as much) is refused from the directory, before numpy
allocates the declared array."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest

from deepvision.errors import UserError

CLAIM = 4_000_000_128  # 4 GB, with the .npy header below declaring 500,000,000 float64 values


def _model_npz(path):
    np.savez(path, coef=np.zeros((1, 3)), intercept=np.zeros(1), classes=np.array([0, 1]),
             label_names=np.array(["a", "b"]), kind=np.array("multinomial"), info=np.array(json.dumps({})))
    return path


def _claim_huge_member(path, member="coef.npy"):
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo(member)
    off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[off + 26: off + 30])
    data = off + 30 + name_len + extra_len
    header_len = struct.unpack("<H", raw[data + 8: data + 10])[0]
    header = repr({"descr": "<f8", "fortran_order": False, "shape": (CLAIM // 8 - 16,)}).encode()
    raw[data + 10: data + 10 + header_len] = header + b" " * (header_len - len(header) - 1) + b"\n"
    struct.pack_into("<II", raw, off + 18, CLAIM, CLAIM)  # local header: compressed, uncompressed size
    i = raw.find(b"PK\x01\x02")
    while i >= 0:  # the central directory entry of `member`
        n = struct.unpack("<H", raw[i + 28: i + 30])[0]
        if raw[i + 46: i + 46 + n] == member.encode():
            struct.pack_into("<II", raw, i + 20, CLAIM, CLAIM)
        i = raw.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(raw))
    return path


def test_a_member_claiming_more_than_the_file_holds_is_refused(tmp_path):
    from deepvision.apps.transfer.logreg import LinearModel

    path = _claim_huge_member(_model_npz(tmp_path / "model.npz"))
    assert zipfile.ZipFile(path).getinfo("coef.npy").file_size == CLAIM
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"member coef\.npy claims 4\.0 GB stored but the file holds 1\.\d kB"):
        LinearModel.load(path)
    assert path.read_bytes() == before


def test_orientation_apply_names_the_damaged_model_in_one_line(tmp_path, run_cli):
    path = _claim_huge_member(_model_npz(tmp_path / "model.npz"))
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, _, err = run_cli("orientation", "apply", path, tmp_path / "a.png", "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "claims 4.0 GB stored" in err, err
    assert not (tmp_path / "out").exists()


def test_an_untouched_model_still_loads(tmp_path):
    from deepvision.apps.transfer.logreg import LinearModel

    assert LinearModel.load(_model_npz(tmp_path / "model.npz")).label_names == ["a", "b"]
