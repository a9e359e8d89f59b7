"""Tutorial T1 end to end: STL-10 binaries -> airplane/cat subset -> 28x28 gray records -> LeNet -> ROC/PR."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from deepvision.apps.stl10 import binary, build_stl10, make_fake_stl10
from deepvision.apps.stl10.build import split_counts
from deepvision.data.lst import read_lst
from deepvision.data.records import RecordFile, unpack_header
from deepvision.errors import UserError


@pytest.fixture(scope="module")
def fake_bins(tmp_path_factory) -> Path:
    return make_fake_stl10(tmp_path_factory.mktemp("stl10") / "bin", train_per_class=6, test_per_class=10, seed=3)


def test_binary_layout_is_column_major_per_channel(tmp_path):
    img = np.zeros((1, 96, 96, 3), np.uint8)
    img[0, 5, 7] = (11, 22, 33)  # row 5, column 7
    img[0, 7, 5] = (44, 55, 66)
    binary.write_split(tmp_path, "train", img, [4])
    raw = (tmp_path / "train_X.bin").read_bytes()
    assert len(raw) == binary.IMAGE_BYTES == 27_648
    assert raw[7 * 96 + 5] == 11 and raw[96 * 96 + 7 * 96 + 5] == 22 and raw[2 * 96 * 96 + 7 * 96 + 5] == 33
    images, labels = binary.load_split(tmp_path, "train")
    assert labels.tolist() == [4] and np.array_equal(binary.to_hwc(images[0]), img[0])


def test_split_sizes_match_the_reference():
    assert split_counts(1300) == {"train": 910, "val": 260, "test": 130}  # x 2 classes: 1,820 / 520 / 260
    assert split_counts(16) == {"train": 11, "val": 3, "test": 2}


def test_fake_files_have_the_official_layout(fake_bins):
    for split, per_class in (("train", 6), ("test", 10)):
        images, labels = binary.load_split(fake_bins, split)
        assert images.shape == (10 * per_class, 3, 96, 96)
        assert (fake_bins / f"{split}_X.bin").stat().st_size == 10 * per_class * 27_648
        assert np.bincount(labels, minlength=11).tolist() == [0] + [per_class] * 10
        assert labels[:10].tolist() != sorted(labels[:10].tolist())  # shuffled, as in the real files
    assert (fake_bins / "class_names.txt").read_text().split() == list(binary.CLASS_NAMES)


def test_build_splits_balanced_disjoint_seeded_and_packs_gray_28(fake_bins, tmp_path):
    out = tmp_path / "t1"
    subset = build_stl10(fake_bins, out, workers=1)
    assert subset.summary() == "train 22 (airplane 11, cat 11); val 6 (airplane 3, cat 3); test 4 (airplane 2, cat 2)"
    assert (out / "labels.txt").read_text() == "airplane\ncat\n"
    assert not (out / "validation.lst").exists()
    native = {split: binary.load_split(fake_bins, split) for split in binary.SPLITS}
    seen: set[str] = set()
    for split in ("train", "val", "test"):
        entries = read_lst(out / f"{split}.lst")
        assert [e.index for e in entries] == list(range(len(entries)))
        paths = [e.path for e in entries]
        assert not seen & set(paths)
        seen |= set(paths)
        assert [e.label for e in entries] != sorted(e.label for e in entries)  # shuffled, not class-sorted
        rf = RecordFile.open(out / f"{split}.rec", cache=False)
        assert rf.labels[:, 0].tolist() == [e.label for e in entries]  # records in list order
        for i, e in enumerate(entries[:3]):
            source, index = Path(e.path).stem.split("_")
            images, labels = native[source]
            assert {1: 0.0, 4: 1.0}[int(labels[int(index)])] == e.label
            rgb = binary.to_hwc(images[int(index)])
            png = cv2.cvtColor(cv2.imread(str(out / e.path)), cv2.COLOR_BGR2RGB)
            assert np.array_equal(png, rgb)
            header, body = unpack_header(rf.read(i))
            stored = cv2.imdecode(np.frombuffer(bytes(body), np.uint8), cv2.IMREAD_UNCHANGED)
            gray = np.asarray(Image.fromarray(rgb).convert("L"))
            assert stored.shape == (28, 28) and header.id == i
            assert np.array_equal(stored, cv2.resize(gray, (28, 28)))  # im2rec: gray, then bilinear to 28
    airplanes_and_cats = sum(int(np.isin(native[s][1], (1, 4)).sum()) for s in native)
    assert len(seen) == airplanes_and_cats == 32
    again = build_stl10(fake_bins, tmp_path / "again", pack=False)
    assert (tmp_path / "again" / "train.lst").read_text() == (out / "train.lst").read_text()
    other = build_stl10(fake_bins, tmp_path / "other", seed=7, pack=False)
    assert (tmp_path / "other" / "test.lst").read_text() != (out / "test.lst").read_text()
    assert again.records == {} and other.counts == subset.counts
    full = build_stl10(fake_bins, tmp_path / "full", pack=False, full_size=True, workers=1)
    assert full.records == {} and {s: r.packed for s, r in full.full_size.items()} == {"train": 22, "val": 6,
                                                                                        "test": 4}
    first = read_lst(tmp_path / "full" / "test.lst")[0]
    _, body = unpack_header(RecordFile.open(tmp_path / "full" / "rgb96" / "test.rec", cache=False).read(0))
    colour = cv2.imdecode(np.frombuffer(bytes(body), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(colour, cv2.imread(str(tmp_path / "full" / first.path)))  # 96x96 BGR, lossless
    assert (tmp_path / "full" / "rgb96" / "labels.txt").read_text() == "airplane\ncat\n"


def test_a_build_that_fails_partway_leaves_no_empty_out_folder(fake_bins, tmp_path, monkeypatch):
    """A build that fails before its first image (a disk full at the first PNG) removes the --out folder
    and images/airplane/, images/cat/ it made; one that fails after writing keeps what it wrote."""
    from deepvision.apps.stl10 import build as stl10_build

    def full(path, rgb):
        raise UserError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(stl10_build, "_write_png", full)
    with pytest.raises(UserError, match="No space left on device"):
        build_stl10(fake_bins, tmp_path / "new" / "t1", workers=1)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    monkeypatch.setattr(stl10_build, "_pack", lambda *a, **k: (_ for _ in ()).throw(UserError("no image packed")))
    with pytest.raises(UserError, match="no image packed"):
        build_stl10(fake_bins, tmp_path / "t2", workers=1)
    assert (tmp_path / "t2" / "train.lst").is_file() and len(list((tmp_path / "t2" / "images" / "cat").iterdir())) > 0


@pytest.mark.parametrize("damage", ["truncated", "count", "label_high", "label_zero", "missing", "sparse", "fifo"])
def test_bad_binaries_are_one_line_errors_naming_the_file(fake_bins, tmp_path, run_cli, damage):
    root = tmp_path / "bin"
    root.mkdir()
    for f in fake_bins.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    target, expected = {
        "truncated": ("train_X.bin", "is truncated or not an STL-10 image file: 1,658,885 bytes is not a positive "
                                     "multiple of 27,648"),
        "count": ("test_y.bin", "holds 99 labels but its image file holds 100 images"),
        "label_high": ("test_y.bin", "label 11 at position 3 is outside 1..10"),
        "label_zero": ("train_y.bin", "label 0 at position 0 is outside 1..10"),
        "missing": ("test_X.bin", "STL-10 file not found: "),
        # 8 GB of labels (a sparse file): counted from the file's size, never read
        "sparse": ("train_y.bin", "holds 8,589,934,592 labels but its image file holds"),
        "fifo": ("train_y.bin", "train_y.bin is a FIFO, not a regular file"),
    }[damage]
    path = root / target
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data += b"12345"
    elif damage == "count":
        data = data[:-1]
    elif damage == "label_high":
        data[3] = 11
    elif damage == "label_zero":
        data[0] = 0
    if damage == "missing":
        path.unlink()
    elif damage == "sparse":
        with open(path, "r+b") as f:
            f.truncate(8 * 2**30)
    elif damage == "fifo":
        path.unlink()
        os.mkfifo(path)
    else:
        path.write_bytes(bytes(data))
    code, _, err = run_cli("stl10", "build", "--root", root, "--out", tmp_path / "out", "--no-records")
    assert code == 2 and err.count("\n") == 1 and err.startswith("deepvision stl10 build: error:")
    assert expected in err and (str(path) in err or damage == "missing")


def _archive(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_build_workers_are_bounded_before_anything_is_read(fake_bins, tmp_path, run_cli):
    code, out, err = run_cli("stl10", "build", "--root", fake_bins, "--out", tmp_path / "out", "--workers", "100000")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["deepvision stl10 build: error: --workers must be at most 1,024 (one process each), "
                                "got 100,000"]
    assert not (tmp_path / "out").exists()


def test_download_checks_md5_and_extracts_only_the_labelled_files(fake_bins, tmp_path):
    files = {f"stl10_binary/{f.name}": f.read_bytes() for f in sorted(fake_bins.iterdir())}
    sums = {Path(n).name: hashlib.md5(d).hexdigest() for n, d in files.items()}
    server = tmp_path / "server"
    server.mkdir()
    archive = server / "stl10_binary.tar.gz"
    md5 = _archive(archive, {**files, "stl10_binary/unlabeled_X.bin": b"\0" * 64, "../../escape/evil.bin": b"x"})
    root = tmp_path / "data"
    with pytest.raises(UserError, match="is corrupt \\(MD5 mismatch\\)"):
        binary.download(root, archive.as_uri(), md5="0" * 32, file_md5=sums)
    assert not list(root.glob("*.tar.gz")) and not list(root.glob(".*partial"))
    folder = binary.download(root, archive.as_uri(), md5=md5, file_md5=sums)
    assert folder == root / "stl10_binary" and binary.find_root(root) == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(sums)  # no unlabeled_X.bin, no escape
    assert not (tmp_path / "escape").exists() and not (root / "escape").exists()
    assert (folder / "train_X.bin").read_bytes() == (fake_bins / "train_X.bin").read_bytes()
    assert binary.download(root, "http://unreachable.invalid/stl10_binary.tar.gz", md5=md5, file_md5=sums) == folder
    bad = dict(files)
    bad["stl10_binary/test_y.bin"] = b"\1" * len(files["stl10_binary/test_y.bin"])
    md5 = _archive(archive, bad)
    with pytest.raises(UserError, match="member stl10_binary/test_y.bin fails its MD5 check"):
        binary.download(tmp_path / "fresh", archive.as_uri(), md5=md5, file_md5=sums)
    assert not (tmp_path / "fresh" / "stl10_binary" / "test_y.bin").exists()


def test_t1_recipe_matches_the_tutorial():
    from deepvision.config.io import load_config
    from deepvision.models import create_model
    from deepvision.recipes import recipe_path

    cfg = load_config(recipe_path("stl10_cnn_t1"))
    assert (cfg.model.name, cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == \
        ("stl10_cnn", "sgd", 1e-4, 0.9, 1e-5)
    assert (cfg.data.batch_size, cfg.train.epochs, cfg.train.seed, cfg.train.log_every, cfg.checkpoint.period) == \
        (10, 400, 100, 50, 10)
    assert (cfg.data.val, cfg.data.channels, cfg.data.image_size, cfg.data.scale) == ("val.rec", 1, 28, 1.0)
    model = create_model("stl10_cnn", 2, 1)
    assert sum(p.numel() for p in model.parameters()) == 427_072


def test_t1_end_to_end_fake_binaries_to_roc_pr_report(fake_bins, tmp_path, run_cli, monkeypatch):
    import deepvision.evaluation.plots as plots

    titles: list[list[str]] = []
    save = plots.save_figure

    def capture(fig, path):
        titles.append([ax.get_title() for ax in fig.axes])
        return save(fig, path)

    monkeypatch.setattr(plots, "save_figure", capture)
    data = tmp_path / "t1"
    assert run_cli("stl10", "build", "--root", fake_bins, "--out", data, "--workers", "1")[0] == 0
    code, out, err = run_cli("train", "stl10_cnn_t1", "--data-root", data, "--out", tmp_path / "runs",
                             "--set", "train.epochs=1", "--set", "train.max_steps=2", "--set", "data.workers=0",
                             "--set", "train.tensorboard=false", "--set", "train.progress=lines")
    assert code == 0, err
    run = tmp_path / "runs" / "stl10_cnn_t1"
    code, out, err = run_cli("evaluate", run, "--last")
    assert code == 0, err
    report = run / "eval" / "test-last"
    assert (report / "roc_pr.png").stat().st_size > 10_000
    assert ["ROC (positive: cat)", "Precision-Recall (positive: cat)"] in titles
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["samples"] == 4
    labels = [int(e.label) for e in read_lst(data / "test.lst")]  # record order = list order
    rows = list(csv.DictReader((report / "predictions.csv").open()))
    assert [["airplane", "cat"].index(r["label"]) for r in rows] == labels
    p_cat = [float(r["probability"]) if r["predicted"] == "cat" else 1 - float(r["probability"]) for r in rows]
    curves = json.loads((report / "roc_pr.json").read_text())
    assert curves["roc_auc"] == pytest.approx(round(roc_auc_score(labels, p_cat), 4), abs=1e-4)
    code, out, err = run_cli("stl10", "report", run, "--last")
    assert code == 0, err
    t1 = json.loads((run / "eval" / "t1-last" / "t1_report.json").read_text())
    assert {s: r["samples"] for s, r in t1["splits"].items()} == {"train": 22, "test": 4}
    for r in t1["splits"].values():
        assert sum(c["total"] for c in r["correct"].values()) == r["samples"]
        assert sum(c["correct"] for c in r["correct"].values()) == round(r["accuracy"] * r["samples"])
    assert t1["splits"]["test"]["roc_auc"] == curves["roc_auc"]
    assert titles[-1] == ["ROC (positive: cat)", "Precision-Recall (positive: cat)"]
    assert "test: " in out and "figure: " in out


def test_fakes_never_replace_existing_data(tmp_path, run_cli):
    """stl10/cars fake into a folder that holds files, fer2013 fake over an existing CSV: one line, the
    files unchanged."""
    (tmp_path / "stl").mkdir()
    (tmp_path / "stl" / "train_X.bin").write_bytes(b"real")
    (tmp_path / "cars").mkdir()
    (tmp_path / "cars" / "cars_annos.mat").write_bytes(b"real")
    (tmp_path / "fer2013.csv").write_text("real\n")
    for argv in (["stl10", "fake", "--out", tmp_path / "stl"], ["cars", "fake", "--out", tmp_path / "cars"],
                 ["fer2013", "fake", "--out", tmp_path / "fer2013.csv"]):
        code, _, err = run_cli(*argv)
        assert code == 2 and err.count("\n") == 1 and "already exists" in err, err
    assert (tmp_path / "stl" / "train_X.bin").read_bytes() == b"real"
    assert (tmp_path / "cars" / "cars_annos.mat").read_bytes() == b"real"
    assert (tmp_path / "fer2013.csv").read_text() == "real\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cars", "cars_annos.mat", "fer2013.csv", "stl",
                                                           "train_X.bin"]


def test_download_with_deepvision_offline_tries_no_url(tmp_path, monkeypatch):
    """DEEPVISION_OFFLINE=1: the archive is not fetched, the one-line error names the switch and the file."""
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: pytest.fail(f"tried {url}"))
    monkeypatch.setenv("DEEPVISION_OFFLINE", "yes")
    url = "http://example.invalid/stl10_binary.tar.gz"
    with pytest.raises(UserError, match=rf"^DEEPVISION_OFFLINE is set, so nothing is downloaded \({url}\); unset "
                                        rf"it to download, or copy what was fetched elsewhere to {tmp_path}/"
                                        rf"stl10_binary\.tar\.gz$"):
        binary.download(tmp_path, url, md5=None, file_md5={"train_X.bin": None})
    assert list(tmp_path.iterdir()) == []  # neither the archive nor the stl10_binary folder


def test_download_failures_name_the_network_and_keep_the_archive(tmp_path, monkeypatch):
    """HTTP errors and broken transfers are one line about the download; a file already there is kept."""
    import urllib.error
    import urllib.request

    root = tmp_path / "data"
    root.mkdir()
    (root / "stl10_binary.tar.gz").write_bytes(b"an older, partial archive")

    def not_found(url, *args, **kwargs):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    url = "http://example.invalid/stl10_binary.tar.gz"
    with pytest.raises(UserError, match=rf"^could not download {url}: HTTP 404 Not Found$"):
        binary.download(root, url, md5="0" * 32, file_md5={"train_X.bin": None})

    class Broken(io.BytesIO):
        headers = {"Content-Length": "100"}

        def read(self, n=-1):
            raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: Broken())
    with pytest.raises(UserError, match=r"the transfer broke off after 0 bytes \(Connection reset by peer\)$"):
        binary.download(root, url, md5="0" * 32, file_md5={"train_X.bin": None})
    assert (root / "stl10_binary.tar.gz").read_bytes() == b"an older, partial archive"
    assert not list(root.glob(".*partial"))


def test_build_with_too_few_images_for_a_split_writes_nothing(tmp_path):
    """2 airplanes and 2 cats leave the val (20%) and test (10%) splits empty: said before any list or
    record is written."""
    root = make_fake_stl10(tmp_path / "bin", train_per_class=1, test_per_class=1, seed=0)
    with pytest.raises(UserError, match=r"hold too few images for a val split \(airplane 2, cat 2; train 70%, "
                                        r"val 20%, test 10% of each class\)"):
        build_stl10(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_writes_only_into_a_new_empty_or_earlier_build_folder(fake_bins, tmp_path, run_cli):
    """A run folder (labels.txt), another builder's lists (train.lst, other classes) and the binaries'
    own folder are refused in one line, nothing written; an earlier build is rebuilt in place."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.txt").write_text("zero\none\n")
    cars = tmp_path / "cars"
    cars.mkdir()
    (cars / "train.lst").write_text("0\t0.000000\ta.jpg\n")
    (cars / "labels.txt").write_text("Audi A4\nBMW X5\n")
    before = {p: p.read_bytes() for p in [*run.iterdir(), *cars.iterdir(), *fake_bins.iterdir()]}
    cases = [(run, "holds files but no train.lst of an earlier stl10 build"),
             (cars, "holds files but no labels.txt of an earlier stl10 build"),
             (fake_bins, "is inside the STL-10 folder"), (fake_bins / "sub", "is inside the STL-10 folder")]
    for out, message in cases:
        code, _, err = run_cli("stl10", "build", "--root", fake_bins, "--out", out, "--no-records")
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert {p: p.read_bytes() for p in [*run.iterdir(), *cars.iterdir(), *fake_bins.iterdir()]} == before
    assert not (fake_bins / "sub").exists()
    build_stl10(fake_bins, tmp_path / "t1", pack=False)
    build_stl10(fake_bins, tmp_path / "t1", pack=False, seed=7)  # its own earlier build
    assert (tmp_path / "t1" / "labels.txt").read_text() == "airplane\ncat\n"


@pytest.mark.parametrize(("names", "named"), [
    (["deer", "bird", "car", "airplane"], "names 'deer' on line 1, where STL-10 has airplane"),
    (["airplane", "bird", "car"], "names nothing on line 4, where STL-10 has cat"),
])
def test_a_class_names_file_that_moves_airplane_or_cat_is_refused(fake_bins, tmp_path, names, named):
    """class_names.txt was never read: a folder whose labels 1 and 4 meant other classes built airplanes and cats."""
    import shutil

    root = tmp_path / "bin"
    shutil.copytree(fake_bins, root)
    (root / "class_names.txt").write_text("\n".join(names) + "\n")
    with pytest.raises(UserError, match=named):
        build_stl10(root, tmp_path / "out", pack=False)
    assert not (tmp_path / "out").exists()
    (root / "class_names.txt").unlink()  # no file: STL-10's order is taken, as before
    assert build_stl10(root, tmp_path / "out", pack=False).counts["train"]["cat"] > 0


def test_a_stopped_fake_leaves_nothing_its_next_run_refuses(tmp_path, run_cli, monkeypatch):
    """`stl10 fake` stopped (SIGTERM, Ctrl+C) after train_X.bin left a folder its own next run refused as not
    empty: a stop removes what the run wrote."""
    from tests.helpers import stopped_both_ways

    argv = ["stl10", "fake", "--out", tmp_path / "new" / "bins", "--train-per-class", "2", "--test-per-class", "2"]
    for _ in stopped_both_ways(monkeypatch, run_cli, argv, "deepvision.apps.stl10.fake.write_split", 2):
        assert not (tmp_path / "new").exists()
    code, _, err = run_cli(*argv)
    assert code == 0 and (tmp_path / "new" / "bins" / "class_names.txt").is_file(), err


def test_binaries_both_in_root_and_in_its_stl10_binary_are_refused(fake_bins, tmp_path, run_cli):
    """Two sets of binaries: neither is read without a word; the message names both and how to choose."""
    root = tmp_path / "bin"
    (root / "stl10_binary").mkdir(parents=True)
    for f in fake_bins.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
        (root / "stl10_binary" / f.name).write_bytes(f.read_bytes())
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    code, out, err = run_cli("stl10", "build", "--root", root, "--out", tmp_path / "out", "--no-records")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"deepvision stl10 build: error: STL-10 binary files are both in {root} and in "
                          f"{root / 'stl10_binary'}; give the folder that holds the ones to read as --root"), err
    assert not (tmp_path / "out").exists()
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    assert binary.find_root(root / "stl10_binary") == root / "stl10_binary"
    for f in fake_bins.iterdir():
        (root / f.name).unlink()
    assert binary.find_root(root) == root / "stl10_binary"
