"""HDF5 containers: the buffered writer's semantics and the reader as a PyTorch dataset."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from deepvision.config import build_config
from deepvision.data.hdf5 import HDF5Dataset
from deepvision.data.sources import load_data
from deepvision.datasets.hdf5 import HDF5DatasetWriter
from deepvision.errors import UserError


def test_writer_layout_buffering_and_names(tmp_path):
    path = tmp_path / "fer.hdf5"
    with HDF5DatasetWriter(path, (10, 6, 5), "images", buf_size=4) as w:
        w.add(np.full((3, 6, 5), 7), [0, 1, 2])
        assert w.idx == 0  # still buffered
        w.add(np.full((2, 6, 5), 9), [3, 4])
        assert w.idx == 5  # flushed at >= buf_size rows
        w.add(np.full((2, 30), 11), [5, 6])  # flattened rows are reshaped
        w.store_class_labels(["angry", "happy", "é"])
        assert not path.exists()  # written under a temporary name until closed
    with h5py.File(path, "r") as db:
        assert db["images"].dtype == np.float64 and db["images"].shape == (7, 6, 5)  # trimmed to rows written
        assert db["images"].chunks is not None
        assert db["labels"].dtype == np.int64 and db["labels"][:].tolist() == list(range(7))
        assert [n.decode() for n in db["label_names"][:]] == ["angry", "happy", "é"]
        assert db["images"][6, 0, 0] == 11


def test_writer_refuses_to_overwrite_and_aborts_cleanly(tmp_path):
    path = tmp_path / "x.hdf5"
    path.write_bytes(b"existing")
    with pytest.raises(UserError, match="already exists"):
        HDF5DatasetWriter(path, (2, 3), "features")
    other = tmp_path / "y.hdf5"
    with pytest.raises(RuntimeError), HDF5DatasetWriter(other, (None, 3), "features") as w:
        w.add(np.ones((1, 3)), [0])
        raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.hdf5"]
    with pytest.raises(UserError, match="expected N x"), HDF5DatasetWriter(other, (2, 3), "features") as w:
        w.add(np.ones((2, 4)), [0, 1])


def test_reader_is_a_torch_dataset(tmp_path):
    path = tmp_path / "feat.hdf5"
    rows = np.arange(12 * 4, dtype=np.float64).reshape(12, 4)
    with HDF5DatasetWriter(path, (None, 4), "features", buf_size=5) as w:
        w.add(rows, np.arange(12) % 3)
    ds = HDF5Dataset(path)
    assert ds.data_key == "features" and len(ds) == 12 and ds.classes == ["0", "1", "2"]
    x, y = ds[5]
    assert x.dtype == torch.float32 and x.tolist() == rows[5].tolist() and y == 2
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)  # per-process file handles
    xs, ys = zip(*loader)
    assert torch.cat(xs).tolist() == rows.tolist() and torch.cat(ys).tolist() == (np.arange(12) % 3).tolist()
    mem = HDF5Dataset(path, in_memory=True, transform=lambda r: r * 2)
    assert mem[1][0].tolist() == (rows[1] * 2).tolist()


def test_hdf5_source_feeds_training(tmp_path):
    for name, n in (("train", 20), ("val", 6)):
        with HDF5DatasetWriter(tmp_path / f"{name}.hdf5", (n, 12, 12), "images") as w:
            w.add(np.random.default_rng(0).integers(0, 256, (n, 12, 12)).astype(np.float64), np.arange(n) % 2)
            w.store_class_labels(["neutral", "happy"])
    cfg = build_config({"data": {"source": "hdf5", "root": str(tmp_path), "train": "train.hdf5",
                                 "val": "val.hdf5", "test": None}})
    bundle = load_data(cfg.data)
    assert bundle.classes == ["neutral", "happy"] and bundle.channels == 1 and bundle.size == (12, 12)
    assert bundle.train.images.shape == (20, 1, 12, 12) and bundle.train.images.dtype == torch.uint8
    assert len(bundle.val) == 6


def test_an_hdf5_split_of_no_rows_is_one_line_in_every_reader(tmp_path, run_cli):
    """A split file with no rows (as a FER2013 CSV without PrivateTest rows made val.hdf5) ended in a ValueError
    traceback ("cannot reshape array of size 0") in `train` and `data info`."""
    with HDF5DatasetWriter(tmp_path / "train.hdf5", (4, 6, 6), "images") as w:
        w.add(np.full((4, 6, 6), 100.0), np.arange(4) % 2)
    with h5py.File(tmp_path / "val.hdf5", "w") as db:
        db["images"], db["labels"] = np.zeros((0, 6, 6)), np.zeros(0, np.int64)
    message = f"{tmp_path / 'val.hdf5'} holds no rows ('images' is 0x6x6); give a file with at least one sample"
    with pytest.raises(UserError) as exc:
        HDF5Dataset(tmp_path / "val.hdf5")
    assert str(exc.value) == message
    (tmp_path / "c.yaml").write_text(f"data: {{source: hdf5, root: '{tmp_path}', train: train.hdf5, val: val.hdf5, "
                                     f"image_size: 28}}\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and out == "" and err == f"deepvision data info: error: {message}\n", err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_hdf5_source_refuses_non_finite_float_images(tmp_path, bad):
    images = np.full((4, 6, 6), 100.0, np.float32)
    images[2, 3, 1] = bad
    with HDF5DatasetWriter(tmp_path / "train.hdf5", (4, 6, 6), "images", dtype="float32") as w:
        w.add(images, np.arange(4) % 2)
    cfg = build_config({"data": {"source": "hdf5", "root": str(tmp_path), "train": "train.hdf5", "val": None,
                                 "test": None}})
    with pytest.raises(UserError, match=r"train\.hdf5: the images hold NaN or infinite values \(first in row 2\)"):
        load_data(cfg.data)


def test_a_file_holding_two_data_arrays_is_refused_unless_one_is_named(tmp_path):
    """`images` and `data` both present: which one the writer meant, the file does not say (the first in a
    fixed order was read, the other ignored)."""
    path = tmp_path / "both.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((4, 8, 8), np.uint8)
        f["data"] = np.full((4, 8, 8), 255, np.uint8)
        f["labels"] = np.arange(4)
    with pytest.raises(UserError, match=r"both\.h5 holds images and data; keep one or set "
                                         r"data\.options\.data_key"):
        HDF5Dataset(path)
    assert HDF5Dataset(path, "data", in_memory=True)[0][0].max() == 255


@pytest.mark.parametrize("in_memory", [False, True])
@pytest.mark.parametrize("key", ["features", "labels"])
def test_a_virtual_dataset_is_refused_even_when_read_lazily(tmp_path, key, in_memory):
    arrays = {"features": np.arange(12, dtype=np.float32).reshape(6, 2), "labels": np.arange(6) % 2}
    with h5py.File(tmp_path / "other.h5", "w") as other:  # what the virtual dataset would read
        other["x"] = arrays[key]
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as db:
        for name, values in arrays.items():
            if name == key:
                layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
                layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=values.shape)
                db.create_virtual_dataset(name, layout, fillvalue=0)
            else:
                db[name] = values
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(UserError, match=rf"'{key}' is a virtual dataset reading .*other\.h5:x; refused$"):
        HDF5Dataset(path, "features", in_memory=in_memory)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("in_memory", [False, True])
@pytest.mark.parametrize("key", ["features", "labels"])
def test_a_compressed_dataset_with_chunks_never_written_is_refused(tmp_path, key, in_memory):
    """A gzip-chunked dataset written in part read its missing chunks as zeros (53 of 103 training images blank
    and labelled class 0), exit 0: its stored size is rightly below its declared size, so its chunks are counted."""
    arrays = {"features": np.arange(40, dtype=np.float32).reshape(20, 2) + 1, "labels": np.arange(20) % 2}
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as db:
        for name, values in arrays.items():
            ds = db.create_dataset(name, shape=values.shape, dtype=values.dtype, chunks=(5, *values.shape[1:]),
                                   compression="gzip", fillvalue=0)
            ds[: 5 if name == key else 20] = values[: 5 if name == key else 20]
    before = path.read_bytes()
    with pytest.raises(UserError, match=rf"dataset '{key}' \(20(x2)? \w+\) needs 4 chunks but the file holds 1: the "
                                        r"others were never written and would read as zeros"):
        HDF5Dataset(path, "features", in_memory=in_memory)
    assert path.read_bytes() == before
    with h5py.File(path, "r+") as db:  # written to its end: read as stored
        db[key][:] = arrays[key]
    assert HDF5Dataset(path, "features", in_memory=True).data.tolist() == arrays["features"].tolist()
