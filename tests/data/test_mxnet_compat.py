"""Compatibility with MXNet 1.9.1 itself: pack with both tools, read each other's files.

Runs only when MXNET_PYTHON names an interpreter with MXNet 1.9.1 installed: `make mxnet-venv` builds one
(.mxnet-venv) and `make test-mxnet` runs these tests with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.data import RecordDataset, RecordLoader
from deepvision.data.lst import read_lst
from deepvision.data.records import RecordFile, unpack_header
from tests.data.recordtools import make_folder, noise_image

MXNET_PYTHON = os.environ.get("MXNET_PYTHON")
pytestmark = [
    pytest.mark.mxnet,
    pytest.mark.skipif(not MXNET_PYTHON, reason="set MXNET_PYTHON to an interpreter with MXNet 1.9.1"),
]

READ_SCRIPT = r"""
import json, sys
import mxnet as mx
rec, idx, shape, width = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
out = {"records": []}
for key in r.keys:
    header, img = mx.recordio.unpack_img(r.read_idx(key))
    label = header.label.tolist() if header.flag > 0 else float(header.label)
    out["records"].append([int(key), int(header.id), header.flag, label, list(img.shape)])
it = mx.io.ImageRecordIter(path_imgrec=rec, path_imgidx=idx, data_shape=(3, shape, shape), batch_size=4,
                           label_width=width)
labels = []
for batch in it:
    labels += batch.label[0].asnumpy().tolist()
out["iter_labels"] = labels[: len(r.keys)]  # the last batch is padded by wrapping round
print(json.dumps(out))
"""


def _mx(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    proc = subprocess.run([MXNET_PYTHON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    work = tmp_path_factory.mktemp("mx")
    script = _mx("-c", "import mxnet, os; print(os.path.join(os.path.dirname(mxnet.__file__), 'tools', 'im2rec.py'))",
                 cwd=work).strip()
    assert Path(script).is_file()
    return work, script


def _ours(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "deepvision.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _mx_read(rec: Path, shape: int, cwd: Path, label_width: int = 1) -> dict:
    return json.loads(_mx("-c", READ_SCRIPT, str(rec), str(rec.with_suffix(".idx")), str(shape), str(label_width),
                          cwd=cwd))


def test_same_lists_and_records_read_both_ways(tools):
    work, script = tools
    root = work / "imgs"
    make_folder(root, per_class=5)
    for tool in ("mx", "dv"):
        (work / tool).mkdir()
    _mx(script, "--list", "--recursive", "--train-ratio", "0.8", str(work / "mx" / "set"), str(root), cwd=work)
    _ours("im2rec", "--list", "--recursive", "--train-ratio", "0.8", str(work / "dv" / "set"), str(root), cwd=work)
    for name in ("set_train.lst", "set_val.lst"):
        assert (work / "mx" / name).read_bytes() == (work / "dv" / name).read_bytes()
    _mx(script, "--resize", "36", "--quality", "95", "--num-thread", "2", str(work / "mx" / "set"), str(root), cwd=work)
    _ours("im2rec", "--resize", "36", "--quality", "95", str(work / "dv" / "set"), str(root), cwd=work)
    for name in ("set_train", "set_val"):
        entries = read_lst(work / "dv" / f"{name}.lst")
        mx_rec, dv_rec = work / "mx" / f"{name}.rec", work / "dv" / f"{name}.rec"
        # deepvision reads MXNet's file
        ds = RecordDataset(mx_rec)
        assert ds.ids.tolist() == [e.index for e in entries] and ds.targets.tolist() == [int(e.label) for e in entries]
        ours = RecordDataset(dv_rec)
        for i in range(len(ds)):
            a, b = ds.decode(i).astype(int), ours.decode(i).astype(int)
            assert a.shape == b.shape and min(a.shape[:2]) == 36 and np.abs(a - b).mean() < 2.0
        (x, y), = list(RecordLoader(ds, len(ds), size=32, workers=0))
        assert y.tolist() == [int(e.label) for e in entries]
        # MXNet reads deepvision's file (indexed reader and ImageRecordIter)
        got = _mx_read(dv_rec, 32, work)
        assert [r[0] for r in got["records"]] == [e.index for e in entries]
        assert [r[3] for r in got["records"]] == [e.label for e in entries]
        assert all(min(r[4][:2]) == 36 and r[4][2] == 3 for r in got["records"])
        assert got["iter_labels"] == [e.label for e in entries]


def test_multi_label_and_pass_through_agree(tools):
    work, script = tools
    root = work / "raw"
    root.mkdir()
    lines = []
    for k in range(5):
        noise_image(k, (30 + 3 * k, 28)).save(root / f"{k}.jpg", quality=90)
        lines.append(f"{k}\t{k:f}\t{k * 0.5:f}\t{k + 10:f}\t{k}.jpg\n")
    for tool in ("mxp", "dvp"):
        (work / tool).mkdir()
        (work / tool / "ml.lst").write_text("".join(lines))
    _mx(script, "--pass-through", "--pack-label", "--num-thread", "1", str(work / "mxp" / "ml"), str(root), cwd=work)
    _ours("im2rec", "--pass-through", "--pack-label", str(work / "dvp" / "ml"), str(root), cwd=work)
    mx_rec, dv_rec = work / "mxp" / "ml.rec", work / "dvp" / "ml.rec"
    assert mx_rec.read_bytes() == dv_rec.read_bytes()  # pass-through: no encoder involved, byte-identical
    rf = RecordFile.open(mx_rec)
    assert rf.labels.tolist() == [[k, k * 0.5, k + 10] for k in range(5)]
    for k in range(5):
        header, body = unpack_header(rf.read(k))
        assert header.flag == 3 and bytes(body) == (root / f"{k}.jpg").read_bytes()
    got = _mx_read(dv_rec, 24, work, label_width=3)
    assert [r[2:4] for r in got["records"]] == [[3, [k, k * 0.5, k + 10]] for k in range(5)]
    assert got["iter_labels"] == [[k, k * 0.5, k + 10] for k in range(5)]
    assert Image.open(root / "0.jpg").size == (30, 28)
