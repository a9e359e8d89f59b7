"""The HDF5 writer on a full disk: one line naming the file, nothing left behind, never a native crash."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from deepvision.datasets.hdf5 import HDF5DatasetWriter, file_bytes
from deepvision.errors import UserError
from tests.helpers import fill_disk_after

FULL = "No space left on device — free some space or choose another --out"


@pytest.mark.parametrize("room", [0, 3000, 200_000])  # at the first byte, in the metadata, in the data
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, room):
    """A full disk while HDF5 finished the file gave three tracebacks and a segmentation fault (exit 139):
    HDF5 cannot close a file after a failed write and crashes when asked again."""
    fill_disk_after(monkeypatch, room)
    target = tmp_path / "new" / "sub" / "f.hdf5"
    rows = np.arange(400 * 500, dtype=np.float64).reshape(400, 500)
    with pytest.raises(UserError) as caught, HDF5DatasetWriter(target, (400, 500), "features") as w:
        w.add(rows, np.arange(400) % 3)
        w.store_class_labels(["a", "b", "c"])
    assert str(caught.value) == f"could not write {target}: {FULL}"
    assert os.listdir(tmp_path) == []  # no file, no temporary file, no folder made for them
    monkeypatch.undo()
    with HDF5DatasetWriter(target, (400, 500), "features") as w:  # the same writer on a disk with room
        w.add(rows, np.arange(400) % 3)
    with h5py.File(target, "r") as db:
        assert np.array_equal(db["features"][:], rows) and db["labels"][:].tolist() == (np.arange(400) % 3).tolist()


def test_a_full_disk_while_rows_are_added_stops_the_writer_there(tmp_path, monkeypatch):
    """A chunk larger than HDF5's chunk cache (8 MiB) is written at once: the failure surfaces at the add that
    wrote it, not after the whole data set was processed."""
    fill_disk_after(monkeypatch, 100_000)
    w = HDF5DatasetWriter(tmp_path / "f.hdf5", (None, 1_100_000), "features", buf_size=1)  # 8.8 MB rows
    with pytest.raises(UserError, match=f"^could not write {tmp_path / 'f.hdf5'}: {FULL}$"):
        w.add(np.ones((1, 1_100_000)), [0])
    assert w.closed and os.listdir(tmp_path) == []
    w.abort()  # nothing left to do
    w.close()


@pytest.mark.skipif(not hasattr(os, "setpgid") or sys.platform != "linux", reason="needs RLIMIT_FSIZE (Linux)")
def test_a_file_size_limit_in_a_real_process_is_one_line(tmp_path):
    """`ulimit -f 100`: the same native crash (exit 139) with errno 27, File too large."""
    import resource

    script = (f"import numpy as np\nfrom deepvision.datasets.hdf5 import HDF5DatasetWriter\n"
              f"from deepvision.errors import UserError\ntry:\n"
              f"    with HDF5DatasetWriter({str(tmp_path / 'f.h5')!r}, (400, 500), 'features') as w:\n"
              f"        w.add(np.ones((400, 500)), np.zeros(400))\n"
              f"except UserError as exc:\n    print(exc)\n")
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100 << 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr[-2000:]
    assert proc.stdout == f"could not write {tmp_path / 'f.h5'}: File too large — free some space or choose another " \
                          f"--out\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("rows", "row_shape", "dtype", "buf_size"),
                         [(400, (500,), "float64", 1000), (7, (6, 5), "uint8", 4), (1, (300_000,), "float64", 1000),
                          (2500, (48, 48), "uint8", 1000)])
def test_file_bytes_counts_whole_chunks_and_metadata(tmp_path, rows, row_shape, dtype, buf_size):
    """The free-space check counted rows x values x item size: 400 rows of 500 float64 values said 1.6 MB, the
    file took 2.1 MB (its last chunk of 262 rows is stored whole)."""
    path = tmp_path / "f.hdf5"
    with HDF5DatasetWriter(path, (rows, *row_shape), "features", buf_size, dtype=dtype) as w:
        w.add(np.ones((rows, *row_shape), dtype=dtype), np.zeros(rows))
        w.store_class_labels([f"class {i}" for i in range(10)])
    estimate, size = file_bytes(rows, row_shape, dtype, buf_size), path.stat().st_size
    assert size <= estimate < size + (96 << 10)
    assert file_bytes(400, (500,)) > 2_096_000 > 400 * 500 * 8
