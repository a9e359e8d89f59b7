"""Orientation correction: exact quarter turns, the rotated data set, and the whole
dataset -> features -> logreg -> apply path on real photos with torchvision's MobileNet-V2 weights."""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.apps.orientation import (
    ANGLES,
    apply_orientation,
    build_orientation_dataset,
    correction_angle,
    rotate_clockwise,
)
from deepvision.errors import Terminated, UserError


def photos(folder, count=12, seed=0):
    """Upright crops of scikit-image's photographs, saved as PNG (lossless)."""
    skd = pytest.importorskip("skimage.data")
    sources = [skd.astronaut(), skd.chelsea(), skd.coffee(), skd.rocket()]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        img = Image.fromarray(src[top : top + ch, left : left + cw]).resize((cw // 3, ch // 3))
        img.save(folder / f"photo_{i:02d}.png")
    return folder


def test_quarter_turns_are_exact():
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    img = Image.fromarray(arr)
    for angle in ANGLES:
        turned = np.asarray(rotate_clockwise(img, angle))
        np.testing.assert_array_equal(turned, np.rot90(arr, k=-angle // 90))  # clockwise
        back = rotate_clockwise(Image.fromarray(turned), correction_angle(angle))
        np.testing.assert_array_equal(np.asarray(back), arr)
    assert np.asarray(rotate_clockwise(img, 90)).shape == (3, 2, 3)  # H x W becomes W x H
    assert [correction_angle(a) for a in ANGLES] == [0, 270, 180, 90]
    with pytest.raises(UserError, match="multiples of 90"):
        rotate_clockwise(img, 45)


def test_dataset_counts_skips_and_exact_pixels(run_cli, tmp_path):
    src = photos(tmp_path / "src", count=10)
    (src / "broken.jpg").write_bytes(b"not a JPEG")
    code, out, err = run_cli("orientation", "dataset", src, tmp_path / "out", "--seed", "3")
    assert code == 0, err
    assert "1 unreadable skipped" in out
    written = sorted((tmp_path / "out").glob("*/image_*.png"))
    assert len(written) == 10
    counts = {a: len(list((tmp_path / "out" / str(a)).glob("*.png"))) for a in ANGLES}
    for a in ANGLES:
        assert f"[INFO] {a:>3}: {counts[a]}" in out
        assert sorted(p.name for p in (tmp_path / "out" / str(a)).glob("*.png")) == \
            [f"image_{i:05d}.png" for i in range(counts[a])]
    assert (tmp_path / "out" / "skipped.txt").read_text().strip().endswith("broken.jpg")
    sources = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(src.glob("*.png"))]
    for path in written:  # every output is exactly one source turned by its folder's angle
        upright = np.asarray(rotate_clockwise(Image.open(path), correction_angle(int(path.parent.name))))
        assert sum(s.shape == upright.shape and np.array_equal(s, upright) for s in sources) == 1
    code, _, err = run_cli("orientation", "dataset", src, tmp_path / "out")
    assert code == 2 and "not empty" in err
    first = build_orientation_dataset(src, tmp_path / "first", max_images=3, seed=0)
    assert first.total == 2 and len(first.skipped) == 1  # the first 3 in listing order include broken.jpg


def test_features_logreg_apply_end_to_end(run_cli, offline_torch_home, tmp_path):
    src = photos(tmp_path / "src", count=16)
    assert build_orientation_dataset(src, tmp_path / "rot", seed=1).total == 16
    code, _, err = run_cli("features", "tv:mobilenet_v2", tmp_path / "rot", "--weights", "IMAGENET1K_V1",
                           "--layer", "features.18", "--pool", "2", "--out", tmp_path / "rot.h5", "--batch-size", "8",
                           "--no-crop")  # whole images squashed to 224 x 224, as the reference did
    assert code == 0, err
    code, out, err = run_cli("logreg", tmp_path / "rot.h5", "--grid", "C=1", "--cv", "2", "--jobs", "1",
                             "--out", tmp_path / "model")
    assert code == 0, err
    assert "held-out accuracy" in out
    # apply re-extracts the same features: its predictions equal the model's on the stored rows
    import h5py

    from deepvision.apps.transfer.logreg import LinearModel

    with h5py.File(tmp_path / "rot.h5", "r") as db:
        feats, index = db["features"][:], db["index"][:]
        pre = json.loads(db.attrs["deepvision"])["preprocess"]
    assert pre["resize"] is None and pre["size"] == [224, 224]
    files = sorted(p for a in sorted(str(a) for a in ANGLES) for p in (tmp_path / "rot" / a).glob("*.png"))
    model = LinearModel.load(tmp_path / "model")
    expected = {files[i].name + files[i].parent.name: int(model.label_names[int(k)])
                for i, k in zip(index, model.predict(feats))}
    results = apply_orientation(tmp_path / "model", [tmp_path / "rot"], tmp_path / "fixed", batch_size=5)
    assert len(results) == 16
    for r in results:
        src_path = tmp_path / "rot" / r.image.split("/rot/")[1]
        assert r.angle == expected[src_path.name + src_path.parent.name]
        fixed = np.asarray(Image.open(r.corrected))
        np.testing.assert_array_equal(fixed, np.asarray(rotate_clockwise(Image.open(src_path).convert("RGB"),
                                                                         correction_angle(r.angle))))
    rows = list(csv.DictReader((tmp_path / "fixed" / "predictions.csv").open()))
    assert [int(r["angle"]) for r in rows] == [r.angle for r in results]
    assert Image.open(tmp_path / "fixed" / "sheet.png").size[0] > 300
    code, _, err = run_cli("orientation", "apply", tmp_path / "rot.h5", src, "--out", tmp_path / "x")
    assert code == 2 and "model" in err and err.count("\n") == 1
    # a photo named like a report file keeps its corrected copy: sheet.png is corrected into sheet_1.png
    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copyfile(files[0], clash / "sheet.png")
    (r,) = apply_orientation(tmp_path / "model", [clash], tmp_path / "fixed2", batch_size=5)
    assert Path(r.corrected).name == "sheet_1.png"
    np.testing.assert_array_equal(np.asarray(Image.open(r.corrected)), np.asarray(
        rotate_clockwise(Image.open(files[0]).convert("RGB"), correction_angle(r.angle))))
    assert Image.open(tmp_path / "fixed2" / "sheet.png").size[0] > 300
    apply_orientation(tmp_path / "model", [clash], tmp_path / "fixed2", batch_size=5)  # its own copy is replaced
    shutil.copyfile(files[0], clash / "mine.png")
    (tmp_path / "fixed2" / "mine.png").write_bytes(b"the user's own, put there since")
    with pytest.raises(UserError, match=r"holds mine\.png, which its predictions\.csv does not list as an output"):
        apply_orientation(tmp_path / "model", [clash], tmp_path / "fixed2", batch_size=5)
    assert (tmp_path / "fixed2" / "mine.png").read_bytes() == b"the user's own, put there since"


@pytest.mark.parametrize("quality", [0, 101, 1000])
def test_dataset_quality_outside_1_to_100_is_refused_like_im2rec(run_cli, tmp_path, quality):
    src = photos(tmp_path / "src", count=2)
    code, _, err = run_cli("orientation", "dataset", src, tmp_path / "out", "--quality", quality)
    assert code == 2 and err.count("\n") == 1
    assert f"--quality must be 1-100 for JPEG, got {quality}" in err and not (tmp_path / "out").exists()
    code, _, err = run_cli("im2rec", tmp_path / "p", src, "--quality", quality)
    assert code == 2 and f"--quality must be 1-100 for JPEG, got {quality}" in err


def test_apply_out_cannot_be_the_input_folder(tmp_path):
    """Refused before the model loads: the photos stay as they are."""
    src = photos(tmp_path / "photos", count=2)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    (tmp_path / "link").symlink_to(src)
    for out in (src, tmp_path / "link"):
        with pytest.raises(UserError, match="is inside the input folder"):
            apply_orientation(tmp_path / "no-model-needed", [src], out)
        with pytest.raises(UserError, match="holds the input"):  # photos named one by one
            apply_orientation(tmp_path / "no-model-needed", sorted(src.iterdir()), out)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_apply_out_inside_an_input_folder_is_refused(run_cli, tmp_path):
    """The corrected copies, named as the photos, would be read (and corrected again) by the next apply over
    the folder: one line before the model loads, the folder unchanged."""
    src = photos(tmp_path / "photos", count=2)
    (src / "old").mkdir()
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    (tmp_path / "link").symlink_to(src)
    for out in (src / "sub", src / "old", tmp_path / "link" / "sub"):
        code, stdout, err = run_cli("orientation", "apply", tmp_path / "no-model-needed", src, "--out", out)
        assert (code, stdout) == (2, "") and err.splitlines() == [
            f"deepvision orientation apply: error: --out {out} is inside the input folder {src}; its files would "
            f"be read as part of it next time, so choose a folder outside it"], err
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in src.iterdir() if p.is_dir()) == ["old"]
    code, _, err = run_cli("orientation", "apply", tmp_path / "no-model-needed", src, "--out", tmp_path / "out")
    assert code == 2 and "no-model-needed" in err  # beside the folder: past the check, to the model


def test_apply_out_is_new_empty_or_an_earlier_applys(tmp_path):
    """Refused before the model loads: another command's report folder (its predictions.csv) and a data
    set's class folder (photos named like the corrected copies) stay as they were."""
    src = photos(tmp_path / "photos", count=2)
    report = tmp_path / "report"
    report.mkdir()
    (report / "predictions.csv").write_text("image,label,predicted\n")
    for out in (report, src.parent):
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        with pytest.raises(UserError, match=f"^--out {out} holds files but no predictions.csv of an earlier "
                                            f"orientation apply"):
            apply_orientation(tmp_path / "no-model-needed", [src], out)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_dataset_out_inside_the_source_folder_is_refused(run_cli, tmp_path):
    """OUT inside SRC would put the rotated copies among the photos, read as upright by the next build from SRC:
    one line, nothing written, the photos unchanged."""
    src = photos(tmp_path / "photos", count=2)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    (tmp_path / "link").symlink_to(src)
    for out in (src / "rot", tmp_path / "link" / "rot"):
        code, stdout, err = run_cli("orientation", "dataset", src, out)
        assert code == 2 and stdout == ""
        assert err.splitlines() == [f"deepvision orientation dataset: error: OUT {out} is inside the input "
                                    f"folder {src}; its "
                                    f"files would be read as part of it next time, so choose a folder outside it"]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


@pytest.mark.parametrize("names", [["0", "180", "270", "-90"], ["0", "90", "180", "450"], ["0", "90", "180", "45"]])
def test_apply_refuses_a_model_whose_angles_are_not_the_four_quarter_turns(tmp_path, run_cli, names):
    """-90 next to 270 is one turn twice (and no 90): refused before any image is read, like 45."""
    from deepvision.apps.transfer.linear_model import LinearModel

    model = LinearModel(np.zeros((4, 2)), np.zeros(4), np.arange(4), names, info={"features": {"model": "x"}})
    path = model.save(tmp_path / "om" / "model.npz")
    src = photos(tmp_path / "photos", count=1)
    code, out, err = run_cli("orientation", "apply", path.parent, src, "--out", tmp_path / "fixed")
    assert (code, out) == (2, "")
    angles = "[" + ", ".join(names) + "]"
    assert err.splitlines() == [f"deepvision orientation apply: error: {path.parent} predicts angles "
                                f"{angles}; orientation "
                                f"models predict 0, 90, 180 and 270"]
    assert not (tmp_path / "fixed").exists()


def test_apply_refuses_a_model_that_answers_fewer_than_four_turns(tmp_path, run_cli):
    """A model fitted on two of the four turns (classes [0, 1] of four names) was applied: 180 and 270 were
    never answered, every upside-down photo turned wrongly without a word."""
    from deepvision.apps.transfer.linear_model import LinearModel

    model = LinearModel(np.zeros((1, 2)), np.zeros(1), np.arange(2), ["0", "90", "180", "270"],
                        info={"features": {"model": "x"}})
    path = model.save(tmp_path / "om" / "model.npz")
    code, out, err = run_cli("orientation", "apply", path.parent, photos(tmp_path / "photos", count=1),
                             "--out", tmp_path / "fixed")
    assert (code, out) == (2, "") and "answers only 0, 90 degrees; an orientation model answers all four turns" in err


def test_apply_refuses_a_model_file_holding_a_member_twice(tmp_path, run_cli):
    """A second `intercept.npy` appended to model.npz was the one np.load returned: every photo was
    'corrected' by 270 degrees without a word. Refused in one line; nothing written, the model unchanged."""
    import io
    import warnings
    import zipfile

    from deepvision.apps.transfer.linear_model import LinearModel

    model = LinearModel(np.zeros((4, 2)), np.zeros(4), np.arange(4), ["0", "90", "180", "270"],
                        info={"features": {"model": "x"}})
    path = model.save(tmp_path / "om" / "model.npz")
    buf = io.BytesIO()
    np.save(buf, np.array([0.0, 0.0, 0.0, 1000.0]))
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as zf:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name" warning
        zf.writestr("intercept.npy", buf.getvalue())
    before = path.read_bytes()
    code, out, err = run_cli("orientation", "apply", path.parent, photos(tmp_path / "photos", count=1),
                             "--out", tmp_path / "fixed")
    assert (code, out) == (2, "") and err.splitlines() == [
        f"deepvision orientation apply: error: {path} holds the member intercept.npy twice; the file is damaged "
        f"or crafted"]
    assert not (tmp_path / "fixed").exists() and path.read_bytes() == before


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_dataset_refuses_one_photo_reached_twice(run_cli, tmp_path, link):
    """A link to one of SRC's photos was a thirteenth photo, written again under another angle: the copies
    could land in train and test of the classifier trained on the features."""
    src = photos(tmp_path / "src", count=3)
    first = sorted(src.iterdir())[0]
    (src / "sub").mkdir()
    if link == "hard":
        os.link(first, src / "sub" / "again.png")
    else:
        (src / "sub" / "again.png").symlink_to(first)
    code, out, err = run_cli("orientation", "dataset", src, tmp_path / "out")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "are one file (a link): the data set made from" in err and not (tmp_path / "out").exists()


def test_a_dataset_on_a_full_disk_leaves_no_half_written_folder(run_cli, tmp_path, monkeypatch):
    """The third image meets a full disk: one line naming it, and neither the two images written nor the
    folders are left (the same command run again refused the half-written set as not empty)."""
    import errno

    from deepvision.apps.orientation import dataset

    src = photos(tmp_path / "src", count=6)
    real, calls = dataset._save, []

    def full(img, path, quality):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(img, path, quality)

    monkeypatch.setattr(dataset, "_save", full)
    code, out, err = run_cli("orientation", "dataset", src, tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and f"{calls[2]}: No space left on device" in err, err
    assert not (tmp_path / "out").exists() and len(list(src.iterdir())) == 6


@pytest.mark.parametrize(("sig", "made"), [("SIGINT", False), ("SIGTERM", False), ("SIGTERM", True)])
def test_a_stopped_dataset_leaves_no_half_written_folder(tmp_path, sig, made):
    """A stop left 1,045 images and no counts.json, and the same command run again refused the folder."""
    import signal

    from tests.helpers import stop_group_when

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(400):  # photos large enough that the stop lands mid-run on a fast machine too
        Image.fromarray(rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)).save(src / f"{i:03d}.png",
                                                                                   compress_level=1)
    out = tmp_path / "out"
    if made:  # an empty folder the user made is kept, and left empty
        out.mkdir()
    code, err = stop_group_when(["orientation", "dataset", src, out], lambda: any(out.glob("*/image_*")),
                                getattr(signal, sig))
    if sig == "SIGINT":
        assert (code, err) == (130, "interrupted\n")
    else:
        assert (code, err) == (143, "deepvision orientation dataset: terminated (SIGTERM); unfinished files were "
                                    "removed\n")
    assert (os.listdir(out) == []) if made else not out.exists()
    assert len(list(src.iterdir())) == 400


@pytest.mark.parametrize("stop", [KeyboardInterrupt, Terminated])
def test_a_stopped_apply_leaves_out_as_it_was(tmp_path, monkeypatch, stop):
    """Ctrl+C or SIGTERM as the sheet is drawn (the corrected copies written): no copy of this run stays, an
    earlier apply's outputs stay whole, a new --out is not left behind, and the same command then runs."""
    from deepvision.apps.orientation import apply
    from deepvision.apps.orientation.apply import OrientationPrediction

    src = photos(tmp_path / "photos", count=3)
    monkeypatch.setattr(apply, "load_orientation_model", lambda model, device: (None, None))
    monkeypatch.setattr(apply, "predict_orientation", lambda clf, extractor, paths, **kw: [
        OrientationPrediction(str(p), 90, 0.9) for p in paths])
    out = tmp_path / "fixed"
    apply_orientation(tmp_path / "model", [src / "photo_00.png"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_sheet = apply.side_by_side_sheet

    def stopped(pairs, path):
        raise stop

    monkeypatch.setattr(apply, "side_by_side_sheet", stopped)
    for target in (out, tmp_path / "new" / "fixed"):
        with pytest.raises(stop):
            apply_orientation(tmp_path / "model", [src], target)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and not (tmp_path / "new").exists()
    monkeypatch.setattr(apply, "side_by_side_sheet", real_sheet)
    apply_orientation(tmp_path / "model", [src], out)
    assert sorted(p.name for p in out.iterdir()) == ["photo_00.png", "photo_01.png", "photo_02.png",
                                                     "predictions.csv", "sheet.png"]
