"""The pure-Python MXNet .params reader against files real MXNet 1.9.1 wrote (tests/fixtures/mxnet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.interop.mxnet_params import encode_params, read_params, split_params, write_params

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


def test_every_layout_reads_the_same_arrays():
    v2 = read_params(FIX / "operators-0007.params")  # MXNet's Module.save_checkpoint (V2 magic)
    assert list(v2)[0].startswith(("arg:", "aux:")) and len(v2) == 14
    for tag in ("v1", "legacy", "v3"):  # V1 / pre-V1 checked loadable by MXNet; V3 written by MXNet (npx.save)
        other = read_params(FIX / f"operators-{tag}.params")
        assert list(other) == list(v2), tag
        for name in v2:
            assert other[name].dtype == np.float32 and np.array_equal(other[name], v2[name]), (tag, name)
    args, aux = split_params(v2)
    assert "conv1_weight" in args and args["conv1_weight"].shape == (8, 3, 3, 3)
    assert set(aux) == {"bn_fc1_moving_mean", "bn_fc1_moving_var"}
    assert [list(d) for d in split_params({"w": v2["arg:conv1_weight"]})] == [["w"], []]  # Gluon's bare names
    with pytest.raises(UserError, match=r"^x.params: bn_fc1_moving_mean is given twice \(aux:bn_fc1_moving_mean "
                                        r"and bn_fc1_moving_mean\)"):
        split_params({**v2, "bn_fc1_moving_mean": v2["aux:bn_fc1_moving_mean"]}, "x.params")


def test_dtypes_written_by_mxnet():
    arrays = read_params(FIX / "dtypes.params")
    expected = {"float64": [1.5, -2.25], "float16": [0.5, 1.0], "int32": [1, -7], "uint8": [0, 255],
                "int64": [2 ** 40, -3], "int8": [-128, 127]}
    for name, values in expected.items():
        assert arrays[name].dtype == np.dtype(name), name
        assert arrays[name].tolist() == values, name


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_writer_round_trip(tmp_path, version):
    arrays = {"arg:w": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "aux:m": np.array([1.5, 2.5]),
              "arg:i": np.array([[1, 2]], dtype=np.int64)}
    back = read_params(write_params(tmp_path / "x.params", arrays, version))
    assert list(back) == list(arrays)
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in arrays.items())
    unnamed = read_params(write_params(tmp_path / "y.params", list(arrays.values()), version))
    assert list(unnamed) == ["0", "1", "2"]


def test_sparse_and_damaged_files_are_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"array 0 is a sparse \(row_sparse\) array.*tostype\('default'\)"):
        read_params(FIX / "sparse.params")
    data = (FIX / "lenet-0007.params").read_bytes()
    (tmp_path / "cut.params").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut.params is truncated or damaged: array \d+ needs \d+ bytes"):
        read_params(tmp_path / "cut.params")
    (tmp_path / "junk.params").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(UserError, match="not an MXNet .params file"):
        read_params(tmp_path / "junk.params")
    bad = bytearray(encode_params({"a": np.zeros(2, np.float32)}))
    bad[24:28] = (0x7FFFFFFF).to_bytes(4, "little")  # neither a magic nor a plausible ndim
    (tmp_path / "bad.params").write_bytes(bytes(bad))
    with pytest.raises(UserError, match="array 0 starts with 0x7fffffff"):
        read_params(tmp_path / "bad.params")
    with pytest.raises(UserError, match="not found"):
        read_params(tmp_path / "missing.params")
