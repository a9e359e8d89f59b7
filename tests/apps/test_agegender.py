"""Age and gender case study: Adience fold files -> lists and means, one-off accuracy in
evaluate, and the deployment (detect, align, 10-crop, canvases) on the astronaut photo."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepvision.apps.agegender.adience import (
    AGE_CLASSES,
    HEADER,
    age_bucket,
    display_label,
    make_fake_adience,
)
from deepvision.data.lst import read_lst
from deepvision.errors import Terminated
from tests.faces.facetools import FACE, astronaut_bgr, iou

HEADER_LINE = "\t".join(HEADER) + "\n"
FACES = 60  # every 10th face has the bucket-less age (8, 23); 4 rows per fold are dropped for both tasks
TINY = ["--set", "model.name=lenet", "--set", "model.num_classes=null", "--set", "data.image_size=28",
        "--set", "data.resize=32", "--set", "train.epochs=1", "--set", "train.global_batch=null",
        "--set", "data.batch_size=16", "--set", "data.workers=0", "--set", "train.tensorboard=false"]


def test_age_buckets_and_labels():
    assert age_bucket("(38, 42)") == "38_43" and age_bucket("(60, 100)") == "60_inf"
    assert age_bucket("(8, 23)") is None and age_bucket("(27, 32)") == "25_32" and age_bucket("35") is None
    assert age_bucket("(0, 2)") == "0_2" and age_bucket("(8, 12)") == "8_13"
    assert age_bucket("(100, 0)") is None and age_bucket("(\uff16\uff10, \uff12)") is None  # reversed; full-width
    assert AGE_CLASSES == ["0_2", "15_20", "25_32", "38_43", "48_53", "4_6", "60_inf", "8_13"]  # encoder order
    assert [display_label(c) for c in ("25_32", "60_inf", "female")] == ["25-32", "60+", "Female"]


@pytest.fixture(scope="module")
def adience(tmp_path_factory):
    """Fake Adience -> lists and means -> record files (shorter side 32) for both tasks."""
    from deepvision.cli.main import main

    tmp = tmp_path_factory.mktemp("adience")
    root = make_fake_adience(tmp / "adience", faces=FACES, size=48)
    out = tmp / "lists"
    assert main(["adience", "lists", "--root", str(root), "--out", str(out), "--workers", "1"]) == 0
    for task in ("age", "gender"):
        for split in ("train", "val", "test"):
            assert main(["im2rec", str(out / task / split), str(root), "--resize", "32", "--quality", "95"]) == 0
    return tmp, root, out


def test_adience_lists(adience):
    _, root, out = adience
    for task, total, classes in (("age", 54, AGE_CLASSES), ("gender", 60, ["male", "female"])):
        folder = out / task
        assert (folder / "labels.txt").read_text().split() == classes
        splits = {s: read_lst(folder / f"{s}.lst") for s in ("train", "val", "test")}
        held = int(0.15 * total)
        assert [len(splits[s]) for s in ("val", "test")] == [held, held]
        assert sum(len(v) for v in splits.values()) == total
        paths = [e.path for v in splits.values() for e in v]
        assert len(set(paths)) == total and all((root / p).is_file() for p in paths)  # the path column holds the path
        line = (folder / "train.lst").read_text().splitlines()[0].split("\t")
        assert len(line) == 3 and line[2].startswith("aligned/") and "landmark_aligned_face." in line[2]
        mean = json.loads((folder / "mean.json").read_text())
        assert set(mean) == {"R", "G", "B"} and all(0 < v < 255 for v in mean.values())
    # gender labels follow m -> 0, f -> 1 (the fake alternates m, f)
    gender = {e.path: int(e.label) for s in ("train", "val", "test") for e in read_lst(out / "gender" / f"{s}.lst")}
    face_ids = {p: int(p.split("landmark_aligned_face.")[1].split(".")[0]) for p in gender}
    assert all(gender[p] == (face_ids[p] - 1) % 2 for p in gender)


def test_adience_lists_refuse_bad_input(tmp_path, run_cli):
    code, _, err = run_cli("adience", "lists", "--root", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "fold_frontal_" in err
    (tmp_path / "fold_frontal_0_data.txt").write_text(HEADER_LINE + "only\ttwo\n")
    code, _, err = run_cli("adience", "lists", "--root", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "fold_frontal_0_data.txt:2" in err
    (tmp_path / "fold_frontal_0_data.txt").write_text(HEADER_LINE + "../..\tx.jpg\t1\t(25, 32)\tm\n")
    code, _, err = run_cli("adience", "lists", "--root", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "fold_frontal_0_data.txt:2: user_id '../..' is not a plain name" in err
    (tmp_path / "fold_frontal_0_data.txt").write_text(HEADER_LINE + "1@N00\x1b[2J\tx.jpg\t1\t(25, 32)\tm\n")
    code, _, err = run_cli("adience", "lists", "--root", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "user_id '1@N00\\x1b[2J' is not a plain name" in err and "\x1b" not in err
    (tmp_path / "fold_frontal_0_data.txt").unlink()
    os.mkfifo(tmp_path / "fold_frontal_0_data.txt")  # opening it would wait for a writer for good
    code, _, err = run_cli("adience", "lists", "--root", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "fold_frontal_0_data.txt is a FIFO, not a regular file" in err


@pytest.mark.parametrize("column, value, message", [
    (2, "abc", "1 face image(s) of the fold files are missing under {root} (first: fold_frontal_0_data.txt:2 names "
               "aligned/{user}/landmark_aligned_face.abc.{image}); restore them or remove their rows"),
    (0, "1000@N00\x1b[2J", "{root}/fold_frontal_0_data.txt:2: user_id '1000@N00\\x1b[2J' is not a plain name"),
    (3, "(0, 2", "{root}/fold_frontal_0_data.txt:2: age '(0, 2' is not an Adience age range '(a, b)' of whole "
                 "numbers; correct the row"),
    (3, "(0, \u0662)", "{root}/fold_frontal_0_data.txt:2: age '(0, \u0662)' is not an Adience age range"),
])
def test_adience_rows_naming_no_face_or_holding_escapes_are_one_line(tmp_path, run_cli, column, value, message):
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    fold = root / "fold_frontal_0_data.txt"
    lines = fold.read_text().split("\n")
    cols = lines[1].split("\t")
    user, image = cols[0], cols[1]
    cols[column] = value
    fold.write_text("\n".join([lines[0], "\t".join(cols), *lines[2:]]))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--workers", "1")
    assert code == 2 and out == "" and err.count("\n") == 1 and "\x1b" not in err, err
    assert err.startswith("deepvision adience lists: error: " + message.format(root=root, user=user, image=image)), err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("first", ["drop", "swap", "empty"])
def test_adience_fold_files_must_begin_with_their_header(tmp_path, run_cli, first):
    """The first line was skipped unread: a fold file without its header lost its first face, and columns
    in another order went unnoticed. It must be the Adience header, its columns in order."""
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    fold = root / "fold_frontal_2_data.txt"
    lines = fold.read_text().split("\n")
    if first == "drop":
        fold.write_text("\n".join(lines[1:]))
    elif first == "swap":
        cols = HEADER.copy()
        cols[3], cols[4] = cols[4], cols[3]
        fold.write_text("\n".join(["\t".join(cols), *lines[1:]]))
    else:
        fold.write_text("")
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--no-mean")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"deepvision adience lists: error: {fold}:1: expected the Adience header (user_id, "
                          f"original_image, face_id, age, gender, x, y"), err
    assert ("got nothing" if first == "empty" else "got '") in err and not (tmp_path / "o").exists()
    fold.write_text(" " + "\t".join(HEADER) + " \r\n" + "\n".join(lines[1:]))  # spaces and CRLF are not columns
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--no-mean")
    assert code == 0, err


def test_adience_rows_naming_one_face_twice_or_a_face_outside_are_refused(tmp_path, run_cli):
    """A face listed twice could be trained on and tested on; a link under aligned/ leading out of the
    dataset would list (and pack) files that are not Adience's."""
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    fold0, fold1 = root / "fold_frontal_0_data.txt", root / "fold_frontal_1_data.txt"
    row = fold0.read_text().split("\n")[1]
    fold1.write_text(fold1.read_text().rstrip("\n") + "\n" + row + "\n")
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--workers", "1")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "names the face of fold_frontal_0_data.txt:2 again" in err and not (tmp_path / "o").exists()
    fold1.write_text(fold1.read_text().replace(row + "\n", ""))
    user = row.split("\t")[0]
    outside = tmp_path / "outside"
    (root / "aligned" / user).rename(outside)
    (root / "aligned" / user).symlink_to(outside)
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--workers", "1")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"leads to {outside.resolve()}" in err and "outside the Adience folder" in err



def test_adience_fold_files_are_read_whatever_their_case(tmp_path, run_cli):
    """Fold_Frontal_0_data.txt was left out without a word (its faces in no list); fold files are read in any
    case, and two spellings of one fold are refused naming both."""
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o1", "--no-mean")
    assert code == 0, err
    (root / "fold_frontal_0_data.txt").rename(root / "Fold_Frontal_0_data.txt")
    code, again, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o2", "--no-mean")
    assert code == 0, err
    lists = lambda out: {p.relative_to(out): p.read_text() for p in out.rglob("*.lst")}
    assert len(lists(tmp_path / "o1")) >= 6 and lists(tmp_path / "o2") == lists(tmp_path / "o1")
    assert again == out.replace(str(tmp_path / "o1"), str(tmp_path / "o2"))
    (root / "fold_frontal_0_data.txt").write_text((root / "Fold_Frontal_0_data.txt").read_text())
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o3", "--no-mean")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert (f"{root} holds both Fold_Frontal_0_data.txt and fold_frontal_0_data.txt, two spellings of one fold "
            f"file; keep one of them") in err, err
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    assert not (tmp_path / "o3").exists()


def test_adience_rows_reaching_one_face_through_a_linked_user_folder_are_refused(tmp_path, run_cli):
    """A user folder linked to another user's stays inside the dataset, but the face it holds must not be
    listed under both names: rows are compared by the file they reach, not by their text."""
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    fold0, fold3 = root / "fold_frontal_0_data.txt", root / "fold_frontal_3_data.txt"
    row = fold0.read_text().split("\n")[1]
    user = row.split("\t")[0]
    (root / "aligned" / "2000@N00").symlink_to(user)
    fold3.write_text(fold3.read_text() + row.replace(user, "2000@N00", 1) + "\n")
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--workers", "1")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    face = f"landmark_aligned_face.{row.split(chr(9))[2]}.{row.split(chr(9))[1]}"
    assert (f"fold_frontal_3_data.txt:10 names the face of fold_frontal_0_data.txt:2 again (aligned/2000@N00/{face} "
            f"is aligned/{user}/{face}); a face listed twice") in err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def runs(adience):
    from deepvision.cli.main import main

    tmp, _, out = adience
    for task in ("age", "gender"):
        assert main(["train", f"adience_{task}", "--data-root", str(out / task), "--out", str(tmp / "runs"),
                     *TINY]) == 0
    return tmp / "runs" / "adience_age", tmp / "runs" / "adience_gender"


def test_evaluate_reports_one_off_for_age_only(runs, run_cli):
    age, gender = runs
    code, out, err = run_cli("evaluate", age)
    assert code == 0, err
    lines = out.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("[INFO] one-off:"))) == \
        lines.index(next(x for x in lines if x.startswith("[INFO] rank-1:"))) + 1
    metrics = json.loads((age / "eval" / "test-best" / "metrics.json").read_text())
    assert metrics["rank1"] <= metrics["one_off"] <= 1
    code, out, err = run_cli("evaluate", gender)
    assert code == 0 and "one-off" not in out
    assert "one_off" not in json.loads((gender / "eval" / "test-best" / "metrics.json").read_text())


def test_agegender_on_images(runs, tmp_path, run_cli):
    age, gender = runs
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_astronaut.png"), astronaut_bgr())
    cv2.imwrite(str(folder / "b_blank.png"), np.full((200, 300, 3), 127, np.uint8))
    out = tmp_path / "out"
    code, stdout, err = run_cli("agegender", age, gender, "--image", folder, "--out", out, "--headless",
                                "--detector", "haar")
    assert code == 0, err
    assert "no face found in" in stdout and "b_blank.png" in stdout
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["image"].endswith("a_astronaut.png") for r in rows)  # every face of the image
    row = next(r for r in rows if iou(tuple(int(r[k]) for k in "xywh"), FACE) > 0.8)  # the astronaut's
    box = tuple(int(row[k]) for k in "xywh")
    assert row["face"] == "0" and row["eyes"] == "cascade"
    assert row["age"] in AGE_CLASSES and row["gender"] in ("male", "female")
    aligned = cv2.imread(str(out / "a_astronaut" / "face0_aligned.png"))
    assert aligned.shape == (256, 256, 3)
    assert cv2.imread(str(out / "a_astronaut" / "face0_age.png")).shape == (8 * 35 + 10, 300, 3)
    assert cv2.imread(str(out / "a_astronaut" / "face0_gender.png")).shape == (2 * 35 + 10, 300, 3)
    shown = cv2.imread(str(out / "a_astronaut" / "input.png"))
    f = 800 / 512
    x, y, w, h = (round(v * f) for v in box)
    edge = shown[y + h // 2, x - 1 : x + 2].astype(int)  # the green box (thickness 2) on the left edge
    assert shown.shape[1] == 800 and (np.abs(edge - (0, 255, 0)) < 60).all(-1).any()
    doc = json.loads((out / "results.json").read_text())
    assert abs(sum(doc["faces"][0]["age"].values()) - 1) < 1e-5
    assert doc["no_face"] == [str(folder / "b_blank.png")]
    drawn = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert sorted(doc["outputs"]) == drawn and "a_astronaut/input.png" in drawn


def test_agegender_replaces_only_the_drawings_its_earlier_results_list(runs, tmp_path, run_cli):
    """A second run into its own folder replaces the drawings the first listed; a file named like a drawing
    that the earlier results.json does not list (put there since) is refused before any work, unchanged."""
    age, gender = runs
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), astronaut_bgr())
    out = tmp_path / "out"
    args = ("agegender", age, gender, "--image", folder, "--out", out, "--headless", "--detector", "haar")
    code, _, err = run_cli(*args)
    assert code == 0, err
    code, _, err = run_cli(*args)
    assert code == 0, err
    mine = out / "a" / "face7_age.png"
    mine.write_bytes(b"the user's own")
    code, _, err = run_cli(*args)
    assert code == 2 and "holds a/face7_age.png, which its results.json does not list" in err
    assert len(err.strip().splitlines()) == 1 and mine.read_bytes() == b"the user's own"


def test_agegender_samples_from_the_test_list(runs, adience, tmp_path, run_cli):
    age, gender = runs
    _, root, out_lists = adience
    out = tmp_path / "samples"
    code, stdout, err = run_cli("agegender", age, gender, "--sample-size", "3", "--root", root, "--out", out,
                                "--seed", "1")
    assert code == 0, err
    images = sorted(out.glob("sample*/image.png"))
    assert len(images) == 3
    img = cv2.imread(str(images[0]))
    assert img.shape[1] == 400
    red = (img[10:35, 10:150, 2] > 200) & (img[10:35, 10:150, 1] < 60)
    assert red.sum() > 50  # "Actual: lo-hi" in red at (10, 30)
    assert len(list(out.glob("sample*/age.png"))) == 3
    code, _, err = run_cli("agegender", age, gender, "--sample-size", "0", "--root", root)
    assert code == 2 and "number of samples" in err  # the message says samples, not "epoch"


def test_agegender_out_inside_the_photo_folder_is_refused_before_the_models_load(tmp_path, run_cli):
    """Its drawings would join the photos, read back by the next command over the folder: one line, exit 2,
    before the runs are read; the folder unchanged."""
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    for out in (photos / "faces", photos / "faces" / "deeper"):
        code, stdout, err = run_cli("agegender", tmp_path / "no-age", tmp_path / "no-gender", "--image", photos,
                                    "--out", out, "--headless")
        assert (code, stdout) == (2, "") and err.splitlines() == [
            f"deepvision agegender: error: --out {out} is inside the input folder {photos}; its files would be read "
            f"as part of it next time, so choose a folder outside it"], err
    assert [p.name for p in photos.iterdir()] == ["a.png"]
    code, _, err = run_cli("agegender", tmp_path / "no-age", tmp_path / "no-gender", "--image", photos,
                           "--out", tmp_path / "out", "--headless")
    assert code == 2 and "model not found" in err  # beside the folder: past the check, to the runs


def test_agegender_bad_input(runs, tmp_path, run_cli):
    age, gender = runs
    code, _, err = run_cli("agegender", age, gender, "--image", tmp_path / "none.jpg", "--out", tmp_path / "o")
    assert code == 2 and "image not found" in err
    code, _, err = run_cli("agegender", age, gender, "--image", tmp_path, "--headless")
    assert code == 2 and "--headless needs --out" in err
    assert not Path(tmp_path / "o").exists()
    (tmp_path / "photos" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), astronaut_bgr())
    (tmp_path / "photos" / "a" / "input.png").write_bytes(b"kept")  # the user's own file, where a.png's output goes
    code, _, err = run_cli("agegender", age, gender, "--image", tmp_path / "photos", "--out", tmp_path / "photos",
                           "--headless")
    assert code == 2 and err.count("\n") == 1 and f"--out {tmp_path / 'photos'} is inside the input folder " in err
    assert (tmp_path / "photos" / "a" / "input.png").read_bytes() == b"kept"
    assert not (tmp_path / "photos" / "results.csv").exists()
    (tmp_path / "o3" / "input").mkdir(parents=True)  # OUT/<stem>/ is the photo's own folder
    cv2.imwrite(str(tmp_path / "o3" / "input" / "input.png"), astronaut_bgr())
    before = (tmp_path / "o3" / "input" / "input.png").read_bytes()
    code, _, err = run_cli("agegender", age, gender, "--image", tmp_path / "o3" / "input", "--out", tmp_path / "o3",
                           "--headless")
    assert code == 2 and err.count("\n") == 1 and "holds the input" in err
    assert (tmp_path / "o3" / "input" / "input.png").read_bytes() == before
    os.mkfifo(tmp_path / "face.fifo")
    code, _, err = run_cli("agegender", age, gender, "--image", tmp_path / "face.fifo")
    assert code == 2 and f"image {tmp_path / 'face.fifo'} is a FIFO, not a regular file" in err  # not "not found"
    for option, mode in ((["--seed", "3"], "--sample-size"), (["--list", "x.lst"], "--sample-size")):
        code, _, err = run_cli("agegender", age, gender, "--image", tmp_path / "photos" / "a.png", *option)
        assert code == 2 and f"{option[0]} applies to {mode} only; leave it out" in err  # was ignored
    code, _, err = run_cli("agegender", age, gender, "--sample-size", "2", "--eyes", "box")
    assert code == 2 and "--eyes applies to --image only" in err


def test_agegender_outputs_replace_planted_links_and_keep_same_stems_apart(runs, tmp_path, run_cli):
    """face.jpg and face.png write face.jpg/ and face.png/ (not both face/); a link planted at an
    output name is replaced, its target untouched."""
    age, gender = runs
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "face.jpg"), astronaut_bgr())
    cv2.imwrite(str(folder / "face.png"), astronaut_bgr())
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    (out / "face.png").mkdir(parents=True)
    (out / "results.csv").write_text("image,face,x,y,w,h,eyes,age,age_probability,gender,gender_probability\n")
    (out / "results.json").write_text('{"outputs": ["face.png/input.png"]}')
    (out / "face.png" / "input.png").symlink_to(victim)
    code, _, err = run_cli("agegender", age, gender, "--image", folder, "--out", out, "--headless",
                           "--detector", "haar")
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["face.jpg", "face.png"]
    for name in ("face.jpg", "face.png"):
        shown = out / name / "input.png"
        assert not shown.is_symlink() and cv2.imread(str(shown)).shape == (800, 800, 3)
        assert (out / name / "face0_aligned.png").is_file()
    table = tmp_path / "results.csv.png"  # its folder would take the name of the table written beside it
    cv2.imwrite(str(table), astronaut_bgr())
    code, _, err = run_cli("agegender", age, gender, "--image", table, "--out", tmp_path / "o4", "--headless",
                           "--detector", "haar")
    assert code == 0 and (tmp_path / "o4" / "results.csv_photo" / "input.png").is_file(), err
    assert (tmp_path / "o4" / "results.csv").is_file()
    dots = tmp_path / "..png"  # stem ".", named directly (a folder's hidden files are not listed)
    cv2.imwrite(str(dots), astronaut_bgr())
    code, _, err = run_cli("agegender", age, gender, "--image", dots, "--out", tmp_path / "o2", "--headless",
                           "--detector", "haar")
    assert code == 0 and (tmp_path / "o2" / "..png" / "input.png").is_file()
    assert not (tmp_path / "o2" / "input.png").exists()


def test_adience_lists_refuse_a_linked_task_folder_in_out(tmp_path, run_cli):
    """--out O where O/gender is a link to a folder elsewhere: one line, nothing written there (nor in
    O/age: both task folders are checked before a list is written)."""
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "o" / "age").mkdir(parents=True)  # an earlier run's lists, then a link planted at gender/
    (tmp_path / "o" / "age" / "train.lst").write_text("0\t1.000000\ta.jpg\n")
    (tmp_path / "o" / "lists.json").write_text('{"builder": "adience lists"}\n')
    (tmp_path / "o" / "gender").symlink_to(elsewhere)
    code, _, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--workers", "1")
    assert code == 2 and err.count("\n") == 1, err
    assert "gender is a link; deepvision never writes through a link inside an output folder" in err
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["age", "gender", "lists.json"]  # link unfollowed
    assert (tmp_path / "o" / "gender").is_symlink()
    assert (tmp_path / "o" / "age" / "train.lst").read_text() == "0\t1.000000\ta.jpg\n"  # nothing replaced yet


def test_an_enlargement_above_the_pixel_limit_is_not_made(monkeypatch):
    from deepvision.inference.faces.draw import resize_to_width

    monkeypatch.setenv("DEEPVISION_MAX_IMAGE_PIXELS", "1000000")
    tall = np.zeros((2000, 4, 3), np.uint8)  # made 800 wide: 800 x 400,000 = 320 M pixels
    out, factor = resize_to_width(tall, 800)
    assert out is tall and factor == 1.0
    out, factor = resize_to_width(np.zeros((40, 40, 3), np.uint8), 800)  # 800 x 800: within the limit
    assert out.shape == (800, 800, 3) and factor == 20.0
    out, factor = resize_to_width(np.zeros((10, 4000, 3), np.uint8), 800)  # shrinking is always made
    assert out.shape == (2, 800, 3) and factor == 0.2


def test_agegender_refusing_after_its_out_folder_was_made_leaves_none(runs, tmp_path, run_cli):
    age, gender = runs
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # damaged: refused when read
    cv2.imwrite(str(folder / "b_astronaut.png"), astronaut_bgr())
    out = tmp_path / "new" / "out"
    code, _, err = run_cli("agegender", age, gender, "--image", folder, "--out", out, "--headless",
                           "--detector", "haar")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "new").exists()


def test_adience_lists_count_the_rows_each_task_leaves_out(tmp_path, run_cli):
    """Rows the filter drops and age ranges fitting no bucket were left out without a word."""
    root = make_fake_adience(tmp_path / "adience", faces=20, size=8)
    code, out, err = run_cli("adience", "lists", "--root", root, "--out", tmp_path / "o", "--no-mean")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["age: 18 faces, 8 classes; train 14, val 2, test 2",
                         "  left out: 20 row(s) without an age range or an m/f gender; 2 age range(s) fitting no "
                         "bucket",
                         "gender: 20 faces, 2 classes; train 14, val 3, test 3",
                         "  left out: 20 row(s) without an age range or an m/f gender"]


@pytest.mark.parametrize(("stop", "code"), [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_a_stopped_agegender_leaves_out_as_it_was(runs, tmp_path, run_cli, monkeypatch, stop, code):
    """Ctrl+C or SIGTERM on the second photo: the first photo's drawings are not left without results.csv
    (the next run would refuse the folder); an earlier run's outputs stay whole, a new --out is not made."""
    from deepvision.apps.agegender import app

    age, gender = runs
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), astronaut_bgr())
    out = tmp_path / "out"
    args = ("agegender", age, gender, "--headless", "--detector", "haar", "--out")
    assert run_cli(*args, out, "--image", folder / "a.png")[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    cv2.imwrite(str(folder / "b.png"), astronaut_bgr())
    real_read = app.read_bgr

    def stop_at_b(path):
        if Path(path).name == "b.png":
            raise stop
        return real_read(path)

    monkeypatch.setattr(app, "read_bgr", stop_at_b)
    for target in (out, tmp_path / "new" / "out"):
        got, _, err = run_cli(*args, target, "--image", folder)
        assert (got, err.count("\n")) == (code, 1)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(app, "read_bgr", real_read)
    assert run_cli(*args, out, "--image", folder)[0] == 0


def test_a_stopped_fake_leaves_nothing_its_next_run_refuses(tmp_path, run_cli, monkeypatch):
    """`adience fake` stopped by SIGTERM left 470 files and no fold files, and its own next run refused the
    folder as not empty: a stop (SIGTERM, Ctrl+C) removes what the run wrote; an empty folder made by the
    user stays, empty."""
    from tests.helpers import stopped_both_ways

    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "adience", tmp_path / "empty"):
        argv = ["adience", "fake", "--out", out, "--faces", "20", "--size", "8"]
        for _ in stopped_both_ways(monkeypatch, run_cli, argv, "deepvision.apps.agegender.adience.output_subfolder", 5):
            assert os.listdir(out) == [] if out.name == "empty" else not (tmp_path / "new").exists()
        code, _, err = run_cli(*argv)
        assert code == 0 and (out / "fold_frontal_4_data.txt").is_file(), err


def test_a_stop_while_the_means_are_computed_leaves_the_out_folder_as_it_was(adience, tmp_path, run_cli,
                                                                              monkeypatch):
    """The tasks' mean.json files are written with the lists in one step: a stop while the second is computed
    left both tasks' lists and lists.json (the folder's complete mark) without a mean. A new --out stays
    absent, earlier lists stay as they were."""
    from tests.helpers import stopped_both_ways

    _, root, _ = adience
    out = tmp_path / "lists"
    argv = ["adience", "lists", "--root", root, "--out", out, "--workers", "1"]
    for _ in stopped_both_ways(monkeypatch, run_cli, argv, "deepvision.datasets.mean.compute_mean", 2):
        assert not out.exists()
    code, _, err = run_cli(*argv)
    assert code == 0, err
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {p.relative_to(out).as_posix() for p in before} >= {"age/mean.json", "gender/mean.json", "lists.json"}
    again = [*argv, "--seed", "7"]
    for _ in stopped_both_ways(monkeypatch, run_cli, again, "deepvision.datasets.mean.compute_mean", 2):
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
