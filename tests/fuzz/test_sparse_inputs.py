"""A sparse 8 GB file where a small input belongs (docs/data-reliability.md, "Whole-file reads are bounded
by the file's size first"): each reader refuses it from its size, in one line naming the size and the
ceiling, before reading a byte. The files are sparse (`truncate`), so the tests cost no disk and no memory."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.errors import UserError

BIG = 8 * 2**30


def _sparse(path: Path, head: bytes = b"", size: int = BIG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def _png(side: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 200, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _one_line(err: str) -> str:
    """The one error line (im2rec says what it packs before it reads the list)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("Creating .rec file")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_runs_marks_a_run_with_a_huge_history_damaged_and_lists_the_others(tmp_path, run_cli):
    from deepvision.runs.journal import journal

    for name in ("good", "huge"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("model: {name: lenet}\n")
        (tmp_path / name / "run.json").write_text('{"status": "finished"}')
    (tmp_path / "good" / "history.csv").write_text("epoch,train_loss\n1,0.5\n")
    _sparse(tmp_path / "huge" / "history.csv", b"epoch,train_loss\n")
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["good"]["status"] == "finished" and rows["good"]["epochs"] == 1
    assert rows["huge"]["status"].startswith("damaged: history ")
    assert "holds 8.6 GB, more than the 67.1 MB such a file may hold" in rows["huge"]["status"]
    code, out, _ = run_cli("runs", tmp_path)
    assert code == 0 and "good" in out and "huge" in out


@pytest.mark.parametrize("command", ["mean", "im2rec"])
def test_a_huge_list_file_is_refused_from_its_size(tmp_path, run_cli, command):
    lst = _sparse(tmp_path / "big.lst", b"0\t0\ta.png\n")
    args = ("mean", lst) if command == "mean" else ("im2rec", tmp_path / "big", tmp_path)
    code, _, err = run_cli(*args)
    line = _one_line(err)
    assert code == 2 and f"list file {lst} holds 8.6 GB, more than the 1.1 GB such a file may hold" in line
    assert not (tmp_path / "big.rec").exists()


def test_a_fifo_list_file_is_named_not_reported_missing(tmp_path, run_cli):
    os.mkfifo(tmp_path / "p.lst")
    code, _, err = run_cli("mean", tmp_path / "p.lst")
    assert code == 2 and "is a FIFO, not a regular file" in _one_line(err)


def test_huge_mxnet_symbol_and_params_are_refused_from_their_size(tmp_path, run_cli):
    from deepvision.interop.mxnet_params import read_params
    from deepvision.models.mxnet_symbol import read_symbol

    symbol = _sparse(tmp_path / "net-symbol.json", b'{"nodes": [')
    params = _sparse(tmp_path / "net-0001.params", (0x112).to_bytes(8, "little"))
    with pytest.raises(UserError, match=r"MXNet symbol file .* holds 8.6 GB, more than the 67.1 MB"):
        read_symbol(symbol)
    with pytest.raises(UserError, match=r"MXNet parameter file .* holds 8.6 GB, more than the 4.0 GB"):
        read_params(params)
    code, _, err = run_cli("import", "mxnet", tmp_path / "net", "1", "--out", tmp_path / "run")
    assert code == 2 and "holds 8.6 GB, more than the" in _one_line(err)
    assert not (tmp_path / "run").exists()


def test_fer2013_csv_huge_file_and_one_huge_line(tmp_path, run_cli):
    big = _sparse(tmp_path / "big.csv", b"emotion,pixels,Usage\n")
    code, _, err = run_cli("fer2013", "build", big, "--out", tmp_path / "o1")
    assert code == 2 and "holds 8.6 GB, more than the 2.0 GB such a file may hold" in _one_line(err)
    # within the file ceiling, one line longer than any CSV row: refused before the rest of it is read
    long_line = tmp_path / "long.csv"
    long_line.write_text("emotion,pixels,Usage\n0," + "1 " * 600_000 + ",Training\n")
    code, _, err = run_cli("fer2013", "build", long_line, "--out", tmp_path / "o2")
    assert code == 2 and f"{long_line}: line 2 is longer than 1,048,576 characters" in _one_line(err)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_an_image_with_gigabytes_after_a_valid_png_is_refused_unread(tmp_path, run_cli):
    from deepvision.data.imageio import max_image_file_bytes, open_image

    padded = _sparse(tmp_path / "img" / "a.png", _png())
    (tmp_path / "img" / "b.png").write_bytes(_png() + b"\0" * 1000)  # a little padding is still an image
    ceiling = max_image_file_bytes()
    assert ceiling == 178_956_970 * 8 + 64 * 2**20
    with pytest.raises(UserError, match=r"a\.png: file of 8\.6 GB is larger than an image within the pixel "
                                        r"limit of 178,956,970 can be \(1\.5 GB\)"):
        open_image(padded, 3)  # what `predict`, `classify` and the folder source decode through
    assert open_image(tmp_path / "img" / "b.png", 3).size == (8, 8)
    (tmp_path / "p.lst").write_text("0\t0\ta.png\n1\t1\tb.png\n")
    code, out, err = run_cli("im2rec", tmp_path / "p", tmp_path / "img")
    assert code == 0, err
    skipped = (tmp_path / "p.skipped.txt").read_text()
    assert "a.png" in skipped and "is larger than an image within the pixel limit" in skipped
    assert "b.png" not in skipped
