"""deepvision im2rec: list generation and packing with MXNet im2rec.py's arguments and outputs."""

from __future__ import annotations

import io
import os
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from deepvision.data.lst import read_lst
from deepvision.data.records import RecordFile, unpack_header
from deepvision.datasets import im2rec
from deepvision.errors import UserError
from tests.data.recordtools import jpeg_bytes, make_folder, noise_image, png_bytes


def _decode(body: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(bytes(body), np.uint8), flags)


def _records(rec) -> list[tuple]:
    rf = RecordFile.open(rec, cache=False)
    return [unpack_header(rf.read(i)) for i in range(len(rf))]


def test_list_recursive_matches_im2rec(tmp_path, run_cli):
    root = tmp_path / "imgs"
    files = make_folder(root)
    (root / "notes.txt").write_text("not an image")
    code, out, _ = run_cli("im2rec", "--list", "--recursive", tmp_path / "data", root)
    assert code == 0
    assert out.split("\n")[:3] == ["cat 0", "dog 1", "owl 2"]
    expected = [(i, os.path.relpath(f, root), i // 4) for i, f in enumerate(files)]
    random.seed(100)
    random.shuffle(expected)
    lines = (tmp_path / "data.lst").read_text().splitlines()
    assert lines == [f"{i}\t{label:f}\t{rel}" for i, rel, label in expected]


def test_list_chunks_ratios_and_no_shuffle(tmp_path, run_cli):
    root = tmp_path / "imgs"
    make_folder(root, per_class=5)
    code, _, _ = run_cli("im2rec", "--list", "--recursive", "--no-shuffle", "--chunks", "2", "--train-ratio", "0.6",
                         "--test-ratio", "0.2", tmp_path / "d", root)
    assert code == 0
    names = sorted(p.name for p in tmp_path.glob("*.lst"))
    assert names == ["d_0_test.lst", "d_0_train.lst", "d_0_val.lst", "d_1_test.lst", "d_1_train.lst", "d_1_val.lst"]
    sizes = {n: len(read_lst(tmp_path / n)) for n in names}
    assert sizes == {"d_0_test.lst": 1, "d_0_train.lst": 4, "d_0_val.lst": 3, "d_1_test.lst": 1,
                     "d_1_train.lst": 4, "d_1_val.lst": 2}
    assert [e.index for e in read_lst(tmp_path / "d_0_test.lst")] == [0]  # no shuffle: walk order
    code, _, _ = run_cli("im2rec", "--list", tmp_path / "flat", root / "cat")  # not recursive: label 0
    assert code == 0 and {e.label for e in read_lst(tmp_path / "flat.lst")} == {0.0}


def test_pack_order_labels_ids_and_resize(tmp_path, run_cli):
    root = tmp_path / "imgs"
    make_folder(root)
    Image.fromarray(np.full((50, 20, 3), 90, np.uint8)).save(root / "owl" / "tall.jpg", quality=95)
    assert run_cli("im2rec", "--list", "--recursive", tmp_path / "data", root)[0] == 0
    code, out, _ = run_cli("im2rec", "--resize", "16", "--num-thread", "2", tmp_path / "data", root)
    assert code == 0 and "packed 13 images" in out
    entries = read_lst(tmp_path / "data.lst")
    records = _records(tmp_path / "data.rec")
    assert [h.id for h, _ in records] == [e.index for e in entries]  # list order, id = list index
    assert [h.label for h, _ in records] == [e.label for e in entries]
    for entry, (_, body) in zip(entries, records):
        h, w = cv2.imread(str(root / entry.path)).shape[:2]
        want = (16, h * 16 // w) if h > w else (w * 16 // h, 16)  # (width, height), im2rec's rule
        img = _decode(body)
        assert (img.shape[1], img.shape[0]) == want and img.shape[2] == 3
    assert not (tmp_path / "data.skipped.txt").exists()


def test_center_crop_then_resize(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    arr = np.zeros((30, 60, 3), np.uint8)
    arr[:, 15:45] = 200  # the centre square is bright, the margins dark
    Image.fromarray(arr).save(root / "wide.png")
    (tmp_path / "c.lst").write_text("0\t1.000000\twide.png\n")
    assert run_cli("im2rec", "--center-crop", "--resize", "10", "--encoding", ".png", tmp_path / "c", root)[0] == 0
    (_, body), = _records(tmp_path / "c.rec")
    img = _decode(body)
    assert img.shape == (10, 10, 3) and img.min() == 200


def test_unreadable_images_are_skipped_and_listed(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    good = jpeg_bytes(noise_image(1))
    (root / "good.jpg").write_bytes(good)
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_bytes(b"this is not an image at all")
    (root / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "cut.png").write_bytes(png_bytes(noise_image(2))[:200])
    names = ["good.jpg", "empty.jpg", "text.jpg", "cut.jpg", "cut.png", "missing.jpg"]
    (tmp_path / "b.lst").write_text("".join(f"{i}\t0.000000\t{n}\n" for i, n in enumerate(names)) + "garbage line\n")
    code, out, _ = run_cli("im2rec", tmp_path / "b", root)
    assert code == 0 and "packed 1 images" in out and "skipped 6" in out
    skipped = (tmp_path / "b.skipped.txt").read_text()
    for name, reason in [("empty.jpg", "0 bytes"), ("text.jpg", "not a recognised image"),
                         ("cut.jpg", "truncated"), ("cut.png", "PNG"), ("missing.jpg", "cannot read"),
                         ("garbage line", "expected")]:
        line = next(ln for ln in skipped.splitlines() if name in ln)
        assert reason in line, line
    assert len(_records(tmp_path / "b.rec")) == 1
    # a later clean run removes the stale report
    (tmp_path / "b.lst").write_text("0\t0.000000\tgood.jpg\n")
    assert run_cli("im2rec", tmp_path / "b", root)[0] == 0
    assert not (tmp_path / "b.skipped.txt").exists()


def test_difficult_formats_are_converted(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:10, :15] = (250, 10, 10)  # red block top-left
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", quality=98)
    Image.fromarray(np.full((20, 30), 77, np.uint8), "L").save(root / "gray.jpg", quality=98)
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(root / "deep.png")  # 16-bit: 40000/65535*255 = 156
    pal = Image.new("P", (30, 20), 0)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.paste(1, (0, 0, 15, 20))
    pal.info["transparency"] = 0  # palette index 0 transparent -> white
    pal.save(root / "pal.png", transparency=0)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, 15:, 3] = 255  # left half fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(rgb).save(root / "exif.jpg", quality=98, exif=exif.tobytes())
    names = ["cmyk.jpg", "gray.jpg", "deep.png", "pal.png", "alpha.png", "exif.jpg"]
    (tmp_path / "f.lst").write_text("".join(f"{i}\t0.000000\t{n}\n" for i, n in enumerate(names)))
    assert run_cli("im2rec", "--encoding", ".png", tmp_path / "f", root)[0] == 0
    imgs = {n: _decode(b)[:, :, ::-1] for n, (_, b) in zip(names, _records(tmp_path / "f.rec"))}  # -> RGB
    assert all(img.shape[2] == 3 for img in imgs.values())
    assert np.abs(imgs["cmyk.jpg"][2, 2].astype(int) - (250, 10, 10)).max() <= 6
    assert np.abs(imgs["cmyk.jpg"][15, 25].astype(int)).max() <= 6
    assert np.abs(imgs["gray.jpg"].astype(int) - 77).max() <= 1
    assert imgs["deep.png"].min() == imgs["deep.png"].max() == 156
    assert tuple(imgs["pal.png"][5, 5]) == (0, 200, 0) and tuple(imgs["pal.png"][5, 25]) == (255, 255, 255)
    assert tuple(imgs["alpha.png"][5, 5]) == (255, 255, 255) and tuple(imgs["alpha.png"][5, 25]) == (0, 0, 255)
    exif_img = imgs["exif.jpg"]
    assert exif_img.shape[:2] == (30, 20)  # rotated upright: the red block is now top-right
    assert exif_img[2, 17, 0] > 200 and exif_img[2, 2, 0] < 50


def test_pass_through_and_multi_label_round_trip(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    raw = [jpeg_bytes(noise_image(k, (33 + k, 21))) for k in range(3)]
    for k, data in enumerate(raw):
        (root / f"{k}.jpg").write_bytes(data)
    (tmp_path / "p.lst").write_text("".join(f"{k}\t{k}.000000\t{k * 2 + 0.5:f}\t{k}.jpg\n" for k in range(3)))
    assert run_cli("im2rec", "--pass-through", "--pack-label", tmp_path / "p", root)[0] == 0
    records = _records(tmp_path / "p.rec")
    for k, (header, body) in enumerate(records):
        assert bytes(body) == raw[k]
        assert header.flag == 2 and header.label.tolist() == [float(k), k * 2 + 0.5] and header.id == k
    # without --pack-label only the first label is stored, as im2rec.py does
    assert run_cli("im2rec", "--pass-through", tmp_path / "p", root)[0] == 0
    assert [(h.flag, h.label) for h, _ in _records(tmp_path / "p.rec")] == [(0, 0.0), (0, 1.0), (0, 2.0)]


def test_grayscale_png_records_are_lossless(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    gray = np.random.default_rng(0).integers(0, 256, (12, 14), dtype=np.uint8)
    Image.fromarray(gray, "L").save(root / "g.png")
    (tmp_path / "g.lst").write_text("0\t3.000000\tg.png\n")
    assert run_cli("im2rec", "--color", "0", "--encoding", ".png", tmp_path / "g", root)[0] == 0
    (header, body), = _records(tmp_path / "g.rec")
    assert header.label == 3.0 and np.array_equal(_decode(body), gray)


def test_interrupted_packing_leaves_no_record_file(tmp_path):
    root = tmp_path / "imgs"
    make_folder(root)
    im2rec.make_list(tmp_path / "i", root, recursive=True)
    (tmp_path / "i.rec").write_bytes(b"old")  # an earlier file stays untouched

    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        im2rec.pack_list(tmp_path / "i.lst", im2rec.PackOptions(root=str(root)), workers=2, progress=interrupt)
    assert (tmp_path / "i.rec").read_bytes() == b"old"
    # i.labels.txt: the class names `make_list(recursive=True)` writes beside the list
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.labels.txt", "i.lst", "i.rec", "imgs"]


def test_prefix_selects_every_matching_list(tmp_path, run_cli):
    root = tmp_path / "imgs"
    make_folder(root, per_class=3)
    run_cli("im2rec", "--list", "--recursive", "--train-ratio", "0.5", tmp_path / "set", root)
    (tmp_path / "other.lst").write_text("0\t0.000000\tcat/img_0.jpg\n")
    code, out, err = run_cli("im2rec", "--quality", "90", "--num-thread", "1", tmp_path / "set", root)
    assert code == 0 and "Creating .rec file from" in err
    assert sorted(p.name for p in tmp_path.glob("*.rec")) == ["set_train.rec", "set_val.rec"]
    assert len(_records(tmp_path / "set_train.rec")) + len(_records(tmp_path / "set_val.rec")) == 9


def test_errors_are_one_line(tmp_path, run_cli):
    code, _, err = run_cli("im2rec", tmp_path / "none", tmp_path)
    assert code == 2 and "did not find any list file" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        run_cli("im2rec", "--color", "2", tmp_path / "x", tmp_path)
    assert exc.value.code == 2
    code, _, err = run_cli("im2rec", "--list", tmp_path / "x", tmp_path / "nowhere")
    assert code == 2 and "not found" in err


def test_png_in_memory_round_trip_helpers():
    from deepvision.data.records import unpack_img
    from deepvision.data.records.header import IRHeader
    from deepvision.datasets.records import pack_img

    arr = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    header, img = unpack_img(pack_img(IRHeader(0, 1.0, 9, 0), arr, quality=3, img_fmt=".png"))
    assert header.id == 9 and np.array_equal(img, arr)
    assert Image.open(io.BytesIO(png_bytes(noise_image(0)))).size == (40, 30)


def test_binary_list_file_is_a_one_line_error(tmp_path, run_cli):
    (tmp_path / "bad.lst").write_bytes(b"0\t1\t\xff\xfe.jpg\n")
    code, _, err = run_cli("im2rec", tmp_path / "bad", tmp_path)
    assert code == 2 and "not a text list file" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "bad.rec").exists()


def test_a_duplicate_list_index_is_refused_naming_both_lines(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / name)
    (tmp_path / "p.lst").write_text("0\t0.000000\ta.png\n7\t1.000000\tb.png\n0\t1.000000\tb.png\n")
    code, _, err = run_cli("im2rec", tmp_path / "p", root, "--num-thread", "1")
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("deepvision im2rec: error: "), err
    assert "lines 1 and 3 both have index 0" in err
    assert not (tmp_path / "p.rec").exists() and not (tmp_path / "p.idx").exists()


def test_an_image_listed_twice_with_other_labels_is_refused_before_packing(tmp_path, run_cli):
    """Packed twice, once per label, one image trained as two classes; the list reader refuses such a list."""
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    for name in ("0.png", "1.png"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(root / "a" / name)
    (tmp_path / "p.lst").write_text("0\t0\ta/0.png\n1\t0\ta/1.png\n2\t0\ta//1.png\n3\t1\t./a/0.png\n")
    code, _, err = run_cli("im2rec", tmp_path / "p", root, "--num-thread", "1")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f"{tmp_path / 'p.lst'}:4: ./a/0.png is listed again with other labels (first on line 1 as "
                        f"a/0.png); an image has one label\n"), err
    assert not (tmp_path / "p.rec").exists() and not (tmp_path / "p.idx").exists()


def test_pack_label_refuses_a_list_mixing_label_counts_before_packing(tmp_path, run_cli):
    """--pack-label packs every label of a line: lines of one and of two labels made a record file the record
    readers refuse (the lst source refuses the list itself); without it the first label of each is packed."""
    root = tmp_path / "imgs"
    make_folder(root, per_class=2, classes=("a", "b"))
    (tmp_path / "p_train.lst").write_text("0\t0\ta/img_0.jpg\n1\t1\t5\tb/img_0.jpg\n2\t1\tb/img_1.jpg\n")
    (tmp_path / "p_val.lst").write_text("3\t0\ta/img_1.jpg\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, out, err = run_cli("im2rec", "--pack-label", tmp_path / "p", root, "--num-thread", "1")
    assert code == 2 and out == "" and err.endswith(
        f"error: {tmp_path / 'p_train.lst'} mixes label counts: line 1 has 1 label(s), line 2 has 2; --pack-label "
        f"packs them all and a classification record file gives every image the same number (make the lines "
        f"agree, or pack without --pack-label to keep the first label)\n"), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # not even p_val.rec
    with pytest.raises(UserError, match="p_train.lst mixes label counts: line 1 has 1 label"):
        im2rec.pack_list(tmp_path / "p_train.lst", im2rec.PackOptions(root=str(root), pack_label=True), workers=1)
    assert run_cli("im2rec", tmp_path / "p", root, "--num-thread", "1")[0] == 0
    assert [h.label for h, _ in _records(tmp_path / "p_train.rec")] == [0.0, 1.0, 1.0]


def test_a_file_name_that_is_not_utf8_is_refused_before_the_list_is_written(tmp_path, run_cli):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(os.fsencode(root / "a") + b"/img\xfe.png")
    code, _, err = run_cli("im2rec", "--list", "--recursive", tmp_path / "p", root)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "the file name 'a/img\\udcfe.png' is not UTF-8 text" in err and not (tmp_path / "p.lst").exists()


def test_a_new_list_never_renames_the_classes_of_records_packed_under_the_old_names(tmp_path, run_cli):
    """`im2rec --list data` over another folder rewrote data.labels.txt beside the data.rec of the first
    list: its records of class b were then read as class c."""
    for name, classes in (("one", "ab"), ("two", "ac")):
        for c in classes:
            (tmp_path / name / c).mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / name / c / "0.png")
    prefix = tmp_path / "out" / "data"
    prefix.parent.mkdir()
    assert run_cli("im2rec", "--list", "--recursive", prefix, tmp_path / "one")[0] == 0
    assert run_cli("im2rec", "--list", "--recursive", prefix, tmp_path / "two")[0] == 0  # no records yet
    assert run_cli("im2rec", "--list", "--recursive", prefix, tmp_path / "one")[0] == 0
    assert run_cli("im2rec", prefix, tmp_path / "one", "--num-thread", "1")[0] == 0
    before = {p.name: p.read_bytes() for p in prefix.parent.iterdir()}
    code, _, err = run_cli("im2rec", "--list", "--recursive", prefix, tmp_path / "two")
    assert code == 2 and err.endswith(f"{prefix}.rec was packed under the class names of {prefix}.labels.txt; these "
                                      f"lists name other classes, which would rename its records: remove data.rec "
                                      f"and its .idx, or choose another prefix\n"), err
    assert {p.name: p.read_bytes() for p in prefix.parent.iterdir()} == before
    assert run_cli("im2rec", "--list", "--recursive", prefix, tmp_path / "one")[0] == 0  # the same names


def test_more_chunks_than_images_is_refused_before_any_file(tmp_path, run_cli):
    root = tmp_path / "imgs"
    make_folder(root, per_class=2)
    n = sum(1 for p in root.rglob("*") if p.is_file())
    code, _, err = run_cli("im2rec", "--list", "--recursive", "--chunks", "1000000000", tmp_path / "d", root)
    assert code == 2 and f"--chunks 1000000000 is more than the {n} image(s) found" in err
    assert not list(tmp_path.glob("*.lst"))
    assert run_cli("im2rec", "--list", "--recursive", "--chunks", str(n), tmp_path / "d", root)[0] == 0
    assert len(list(tmp_path.glob("d_*.lst"))) == n


@pytest.mark.parametrize(("value", "message"), [
    ("100000", "--num-thread must be at most 1,024 (one process each), got 100,000"),
    ("0", "--num-thread must be a whole number, at least 1, got 0"),
])
def test_num_thread_is_bounded_before_any_process_starts(tmp_path, run_cli, value, message):
    """One worker process per image up to --num-thread: 100,000 is refused, as mean's --num-thread is."""
    root = tmp_path / "imgs"
    make_folder(root, per_class=2)
    assert run_cli("im2rec", "--list", "--recursive", tmp_path / "p", root)[0] == 0
    before = sorted(tmp_path.iterdir())
    code, out, err = run_cli("im2rec", "--num-thread", value, tmp_path / "p", root)
    assert (code, out) == (2, "") and err.splitlines() == [f"deepvision im2rec: error: {message}"]
    assert sorted(tmp_path.iterdir()) == before
    with pytest.raises(UserError, match="--num-thread must be at most 1,024"):
        im2rec.pack_list(tmp_path / "p.lst", im2rec.PackOptions(root=str(root)), workers=100_000)
    assert sorted(tmp_path.iterdir()) == before


def test_resize_is_bounded_before_anything_is_packed(tmp_path, run_cli):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    noise_image(1, (8, 16)).save(root / "a" / "x.png")
    (tmp_path / "p.lst").write_text("0\t0\ta/x.png\n")
    for value in ("100000", "-1"):
        code, out, err = run_cli("im2rec", "--resize", value, tmp_path / "p", root)
        assert code == 2 and err.count("\n") == 1, err
        assert "--resize must be 0 (keep the size) or a whole number of pixels from 1 to 16,384" in err
        assert err.rstrip().endswith(f"got {value}")
    assert not (tmp_path / "p.rec").exists()
    # within the side ceiling, the resized image still obeys the pixel limit: skipped with the reason
    from deepvision.safeload.images import set_max_image_pixels

    set_max_image_pixels(10_000)
    try:
        record, reason = im2rec.encode_item(im2rec.PackOptions(root=str(root), resize=200),
                                            im2rec.PackItem(0, "a/x.png", (0.0,)))
    finally:
        set_max_image_pixels(None)
    assert record is None and "200x400 = 80,000 pixels" in reason


def test_record_files_named_in_the_list_are_refused_before_packing(tmp_path, run_cli):
    for name in ("a.jpg", "p.rec", "p.idx"):
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / name, format="JPEG")
    (tmp_path / "p.lst").write_text("0\t0\ta.jpg\n1\t0\tp.rec\n2\t1\tp.idx\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("im2rec", tmp_path / "p", tmp_path, "--pass-through", "--num-thread", "1")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"deepvision im2rec: error: {tmp_path / 'p.rec'} is an input of {tmp_path / 'p.lst'} "
                          f"(line 2) and packing would overwrite it; rename the file or choose another prefix")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_image_of_one_list_is_never_the_record_file_of_another(tmp_path, run_cli):
    """Every list is checked before the first is packed: s_train.rec must not replace a photo of s_val.lst."""
    for name in ("a.png", "s_train.rec"):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / name, format="PNG")
    (tmp_path / "s_train.lst").write_text("0\t0\ta.png\n")
    (tmp_path / "s_val.lst").write_text("0\t0\ta.png\n1\t1\ts_train.rec\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("im2rec", tmp_path / "s", tmp_path, "--num-thread", "1")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert f"s_train.rec is an input of {tmp_path / 's_val.lst'} (line 2)" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(im2rec.UserError, match="line 2"):
        im2rec.pack_list(tmp_path / "s_val.lst", im2rec.PackOptions(root=str(tmp_path)), rec=tmp_path / "s_train.rec")


def test_a_label_float32_would_store_as_another_class_is_skipped(tmp_path, run_cli):
    """0.99999999 is no class number (the list reader refuses it, naming it as written), but a record's 32-bit
    header would hold 1.0, read back as class 1: it is skipped; 0.5 (a regression target) is packed."""
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(noise_image(1)))
    (root / "b.jpg").write_bytes(jpeg_bytes(noise_image(2)))
    (tmp_path / "n.lst").write_text("0\t0.99999999\ta.jpg\n1\t0.5\tb.jpg\n")
    code, out, err = run_cli("im2rec", tmp_path / "n", root)
    assert code == 0 and "packed 1 images" in out and "skipped 1" in out, out + err
    assert "32-bit float would store as a whole number (a class) is not one" in (tmp_path / "n.skipped.txt").read_text()
    (header, _), = _records(tmp_path / "n.rec")
    assert header.label == 0.5
    (tmp_path / "c.yaml").write_text(f"model: {{name: lenet}}\ndata: {{source: lst, root: '{root}', train: "
                                     f"'{tmp_path / 'n.lst'}', image_size: 28, channels: 1}}\n")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and "has label 0.99999999; single-label data needs whole class numbers" in err, err


def test_list_numbers_beyond_a_record_key_or_with_digit_separators_are_skipped(tmp_path, run_cli):
    """The record header and the .idx key are unsigned 64-bit: -1 and 2**64 are malformed lines (they
    ended in a struct.error traceback), as are '1_0' (float() reads 10) and a NaN label."""
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg_bytes(noise_image(1)))
    lines = ["-1\t1\ta.jpg", f"{2**64}\t1\ta.jpg", "1\t1_0\ta.jpg", "2\tnan\ta.jpg", "1_2\t1\ta.jpg",
             "3\t\uff11\ta.jpg", "4\t3.5e38\ta.jpg", f"{2**64 - 1}\t3\ta.jpg"]  # \uff11: a full-width 1,
    # which float() reads; 3.5e38 beyond a float32 label (a struct.error traceback)
    (tmp_path / "n.lst").write_text("".join(f"{line}\n" for line in lines))
    code, out, err = run_cli("im2rec", tmp_path / "n", root)
    assert code == 0 and "packed 1 images" in out and "skipped 7" in out, out + err
    skipped = (tmp_path / "n.skipped.txt").read_text()
    assert skipped.count("the index must be a whole number from 0 to 2**64-1 and the labels numbers") == 5
    assert skipped.count("labels must be finite numbers within a 32-bit float's range") == 2
    (header, _), = _records(tmp_path / "n.rec")
    assert header.id == 2**64 - 1 and header.label == 3
    with pytest.raises(UserError, match=r"n\.lst:1: the index must be a whole number from 0 to 2\*\*64-1"):
        read_lst(tmp_path / "n.lst")
    (tmp_path / "u.lst").write_text("0\t1_0\ta.jpg\n")
    with pytest.raises(UserError, match=r"u\.lst:1: the index must .* got '0\\t1_0\\ta\.jpg'"):
        read_lst(tmp_path / "u.lst")


@pytest.mark.parametrize("names, message", [
    (("caf\u00e9", "cafe\u0301"), "is given twice (two Unicode spellings of one name)"),
    (("dog", "dog\u200b"), "is empty or holds a control character"),
    (("dog", " dog"), "class name 'dog' is given twice"),  # the readers strip the names of labels.txt
])
def test_list_refuses_class_folders_no_reader_would_take(tmp_path, run_cli, names, message):
    """The folder names become PREFIX.labels.txt, which training refused: the lists were written for nothing."""
    for name in names:
        (tmp_path / "img" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / name / "x.png")
    code, out, err = run_cli("im2rec", "--list", "--recursive", tmp_path / "lst", tmp_path / "img")
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err
    assert f"the class folders under {tmp_path / 'img'}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_each_step_refuses_the_other_steps_options_but_the_shared_ones(tmp_path, run_cli):
    """Packing took --train-ratio nan or --chunks 1000000 and ignored them (--list refused the same values)."""
    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        noise_image(1, (8, 8)).save(root / cls / "x.png")
    for step, options, named in (([], ["--train-ratio", "nan"], "--train-ratio applies to making lists (--list) only"),
                                 ([], ["--chunks", "9", "--no-shuffle"], "--chunks, --no-shuffle apply to making"),
                                 (["--list"], ["--resize", "16"], "--resize applies to packing (without --list) only")):
        code, out, err = run_cli("im2rec", *step, *options, tmp_path / "p", root)
        assert (code, out) == (2, "") and err.count("\n") == 1 and named in err, err
        assert not list(tmp_path.glob("p*"))
    code, _, err = run_cli("im2rec", "--list", "--num-thread", "0", tmp_path / "p", root)  # checked in both
    assert code == 2 and "--num-thread must be" in err and not list(tmp_path.glob("p*"))
    # as GluonCV's guide runs im2rec.py: --recursive and --num-thread given to both steps
    assert run_cli("im2rec", "--list", "--recursive", "--num-thread", "1", tmp_path / "p", root)[0] == 0
    assert run_cli("im2rec", "--recursive", "--num-thread", "1", "--pass-through", tmp_path / "p", root)[0] == 0
    assert (tmp_path / "p.rec").stat().st_size > 0


@pytest.mark.parametrize(("options", "named"), [
    (["--resize", "4"], "--resize applies to packing without --pass-through only (--pass-through stores each image "
                        "file as it is); leave it out here"),
    (["--quality", "5"], "--quality applies to packing without --pass-through only"),
    (["--encoding", ".png"], "--encoding applies to packing without --pass-through only"),
    (["--center-crop"], "--center-crop applies to packing without --pass-through only"),
    (["--color", "0", "--resize", "4"], "--resize, --color apply to packing without --pass-through only"),
])
def test_pass_through_refuses_the_re_encoding_options(tmp_path, run_cli, options, named):
    """`--pass-through --resize 20` packed the original bytes, byte for byte those packed without --resize."""
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    noise_image(1, (8, 8)).save(root / "a" / "x.png")
    assert run_cli("im2rec", "--list", "--recursive", tmp_path / "p", root)[0] == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli("im2rec", "--pass-through", "--num-thread", "1", *options, tmp_path / "p", root)
    assert (code, out) == (2, "") and err.count("\n") == 1 and named in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .rec written
    # the same options re-encode without --pass-through; --pass-through with --pack-label is read
    assert run_cli("im2rec", "--num-thread", "1", *options, tmp_path / "p", root)[0] == 0
    assert run_cli("im2rec", "--num-thread", "1", "--pass-through", "--pack-label", tmp_path / "p", root)[0] == 0
