"""The MNIST readers (deepvision.data.mnist): idx headers checked and their declared size read exactly, the
text format's labels and pixels whole numbers, every file bounded and a FIFO named."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from deepvision.config import build_config
from deepvision.data import mnist
from deepvision.data.sources import load_data
from deepvision.errors import UserError
from tests.helpers import write_idx


def _text_line(label: str, pixels: list[str] | None = None) -> str:
    return f"{label} , {' '.join(pixels or ['0'] * 784)}\n"


@pytest.mark.parametrize(("label", "pixel", "message"), [
    ("3.7", "0", "label 3.7 is not a whole number 0..9"),
    ("1e300", "0", "label 1e300 is not a whole number 0..9"),
    ("12", "0", "label 12 is not a whole number 0..9"),
    ("nan", "0", "label nan is not a whole number 0..9"),
    ("3", "3.9", "pixel 5 is 3.9, not a whole number 0..255"),
    ("3", "256", "pixel 5 is 256, not a whole number 0..255"),
    ("3", "1_0", "label and pixels must be plain numbers"),
])
def test_mnist_text_values_that_are_not_whole_numbers_are_refused_naming_the_line(tmp_path, label, pixel, message):
    pixels = ["0"] * 784
    pixels[4] = pixel
    path = tmp_path / "t.txt"
    path.write_text(_text_line("1") + _text_line(label, pixels))
    with pytest.raises(UserError, match=f"^{path}:2: {message}"):
        mnist.read_text(path)


def test_mnist_text_source_names_a_fifo_and_bounds_the_file(tmp_path, run_cli, monkeypatch):
    (tmp_path / "train.txt").write_text(_text_line("4.5"))
    (tmp_path / "c.yaml").write_text(f"data: {{source: mnist_text, root: {tmp_path}, train: train.txt}}\n")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and err == f"deepvision data info: error: {tmp_path}/train.txt:1: label 4.5 is not a " \
                                "whole number " \
                                "0..9\n"
    os.mkfifo(tmp_path / "fifo.txt")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml", "--set", "data.train=fifo.txt")
    assert code == 2 and err.count("\n") == 1 and "fifo.txt is a FIFO, not a regular file" in err
    with open(tmp_path / "sparse.txt", "wb") as f:
        f.truncate(4096)
    monkeypatch.setattr(mnist, "MAX_TEXT_FILE_BYTES", 1000)
    with pytest.raises(UserError, match=r"sparse.txt holds 4.1 kB, more than the 1.0 kB such a file may hold"):
        mnist.read_text(tmp_path / "sparse.txt")


def _idx_image_file(path, dims, data: bytes = b"") -> None:
    raw = struct.pack(">i", 2051) + struct.pack(">iii", *dims) + data
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize("dims", [(-1, 28, 28), (10, -28, -28), (10, 0, 28), (0, 28, 28)])
def test_idx_header_dimensions_must_be_positive(tmp_path, dims):
    _idx_image_file(tmp_path / "train-images-idx3-ubyte", dims, bytes(7840))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(10, np.uint8), 2049)
    with pytest.raises(UserError, match=rf"train-images-idx3-ubyte: header dimension {min(dims)} .* must be positive"):
        mnist.load_mnist_split(tmp_path, "train")


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_data_beyond_what_the_header_declares_is_refused_without_reading_it(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".gz"):  # 64 MiB of zeros after the declared 2 x 2 x 2: a few kB compressed
        with gzip.open(path, "wb") as f:
            f.write(struct.pack(">iiii", 2051, 2, 2, 2) + bytes(8))
            for _ in range(64):
                f.write(bytes(2**20))
    else:  # a sparse file far larger than its header says
        _idx_image_file(path, (2, 2, 2), bytes(8))
        with open(path, "r+b") as f:
            f.truncate(2**30)
    with pytest.raises(UserError, match=r"holds more data than its header declares \(8 bytes\)"):
        mnist.read_idx(path, 2051)
    _idx_image_file(path, (2, 2, 2), bytes(8))
    assert mnist.read_idx(path, 2051).shape == (2, 2, 2)


def test_a_gzip_idx_declaring_more_than_deflate_can_hold_is_refused_before_inflating(tmp_path):
    path = tmp_path / "a-idx3-ubyte.gz"
    _idx_image_file(path, (10**6, 28, 28))
    with pytest.raises(UserError, match=r"header 1000000 x 28 x 28\) declares 784.0 MB but the file stores .* "
                                        r"\(compressed more than 1032:1\)"):
        mnist.read_idx(path, 2051)


def test_a_fifo_in_place_of_an_idx_file_is_named(tmp_path):
    os.mkfifo(tmp_path / "t10k-images-idx3-ubyte")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8), 2049)
    cfg = build_config({"data": {"source": "mnist", "root": str(tmp_path), "train": "test", "test": None}})
    with pytest.raises(UserError, match=r"MNIST file .*t10k-images-idx3-ubyte is a FIFO, not a regular file"):
        load_data(cfg.data)


def test_the_mnist_source_reports_the_size_its_headers_declare(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 32, 30), np.uint8), 2051)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8), 2049)
    cfg = build_config({"data": {"source": "mnist", "root": str(tmp_path), "train": "train", "test": None}})
    bundle = load_data(cfg.data, roles=("train",))
    assert bundle.size == (32, 30) and tuple(bundle.train.images.shape[-2:]) == (32, 30)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8), 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(2, dtype=np.uint8), 2049)
    cfg = build_config({"data": {"source": "mnist", "root": str(tmp_path), "train": "train", "test": "test"}})
    with pytest.raises(UserError, match=r"images of different sizes \(train 32x30, test 28x28\)"):
        load_data(cfg.data)


def test_two_copies_of_an_idx_file_are_read_only_when_they_hold_the_same_bytes(tmp_path, run_cli):
    """A download (.gz) beside its unpacked copy is one file; a copy that differs is refused naming both, never
    the first of them taken (labels from one file, images from another)."""
    images, labels = np.zeros((6, 28, 28), np.uint8), np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 2051)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images, 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 2049)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", (labels + 1) % 10, 2049)
    (tmp_path / "c.yaml").write_text(f"data: {{source: mnist, root: {tmp_path}, train: test, test: null}}\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and err == (f"deepvision data info: error: {tmp_path} holds both t10k-labels-idx1-ubyte and "
                                 f"t10k-labels-idx1-ubyte.gz, which differ (one is not the other unpacked); remove "
                                 f"the one not to read\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels, 2049)  # a third copy is compared too
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, 2049)
    cfg = build_config({"data": {"source": "mnist", "root": str(tmp_path), "train": "test", "test": None}})
    assert load_data(cfg.data, roles=("train",)).train.labels.tolist() == labels.tolist()
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels[:5], 2049)  # a shorter copy differs too
    with pytest.raises(UserError, match="holds both t10k-labels-idx1-ubyte and t10k-labels.idx1-ubyte, which differ"):
        load_data(cfg.data, roles=("train",))
    (tmp_path / "t10k-labels.idx1-ubyte").unlink()
    os.mkfifo(tmp_path / "t10k-images.idx3-ubyte")  # a FIFO among the copies is named, never opened
    with pytest.raises(UserError, match=r"t10k-images.idx3-ubyte is a FIFO, not a regular file"):
        load_data(cfg.data, roles=("train",))
