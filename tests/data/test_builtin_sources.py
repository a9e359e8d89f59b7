"""The built-in sources (deepvision.data.builtin_sources): one image is one entry of one class and split, and
the class names of list and record data come from labels files that agree and are read bounded."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from deepvision.config import build_config
from deepvision.data.sources import load_data
from deepvision.errors import UserError


def _image_tree(root, splits=("train", "test"), classes=3, per_class=2):
    for split in splits:
        for c in range(classes):
            (root / split / str(c)).mkdir(parents=True)
            for k in range(per_class):
                Image.fromarray(np.full((8, 8), 40 * c + k, np.uint8)).save(root / split / str(c) / f"im{k}.png")


@pytest.mark.parametrize(("link", "target"), [
    ("test/1/im9.png", "train/0/im0.png"),  # a symbolic link: the training image scored in val as class 1
    ("train/1/im9.png", "train/0/im0.png"),  # a hard link: one image under two classes
])
def test_folder_source_refuses_a_file_link_giving_one_image_two_classes_or_splits(tmp_path, run_cli, link, target):
    _image_tree(tmp_path / "hl")
    if link.startswith("test"):
        os.symlink(tmp_path / "hl" / target, tmp_path / "hl" / link)
    else:
        os.link(tmp_path / "hl" / target, tmp_path / "hl" / link)
    (tmp_path / "c.yaml").write_text(f"data: {{source: folder, root: {tmp_path / 'hl'}, train: train, val: test, "
                                     f"channels: 1}}\n")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and err == (f"deepvision data info: error: {tmp_path / 'hl' / link} and "
                                 f"{tmp_path / 'hl' / target} "
                                 f"are one file (a link): the data under {tmp_path / 'hl'} would hold one image twice; "
                                 f"remove the link or copy the image\n")
    os.unlink(tmp_path / "hl" / link)
    code, out, _ = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 0 and "train        6 samples" in out


def test_folder_source_refuses_images_beside_the_class_folders_naming_them(tmp_path, run_cli):
    """An image lying directly in a split folder belongs to no class: it was left out without a word."""
    _image_tree(tmp_path / "ds")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "ds" / "train" / "stray.png")
    (tmp_path / "c.yaml").write_text(f"data: {{source: folder, root: {tmp_path / 'ds'}, train: train, test: test, "
                                     f"channels: 1}}\n")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and err == (f"deepvision data info: error: {tmp_path / 'ds' / 'train'} holds 1 image(s) beside "
                                 f"its class folders (stray.png), which belong to no class; move them into a class "
                                 f"folder\n")
    assert (tmp_path / "ds" / "train" / "stray.png").is_file()
    (tmp_path / "ds" / "train" / "stray.png").rename(tmp_path / "ds" / "train" / "0" / "stray.png")
    (tmp_path / "ds" / "test" / "notes.txt").write_text("not an image")  # other files are no images
    for k in range(2):  # the test split and root itself as the training split are checked too
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "ds" / "test" / f"a{k}.jpg")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and f"{tmp_path / 'ds' / 'test'} holds 2 image(s) beside its class folders (a0.jpg, ...)" in err
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml", "--set", f"data.root={tmp_path / 'ds' / 'train'}",
                           "--set", "data.train=.", "--set", "data.test=null")
    assert code == 0, err
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "ds" / "train" / "b.png")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml", "--set", f"data.root={tmp_path / 'ds' / 'train'}",
                           "--set", "data.train=.", "--set", "data.test=null")
    assert code == 2 and "train holds 1 image(s) beside its class folders (b.png)" in err


def test_folder_source_refuses_a_class_folder_holding_no_image_naming_the_files_it_would_not_read(tmp_path, run_cli):
    """An empty class folder (or one of files in other formats) became a class trained on nothing, exit 0, its files
    left unread without a word; torchvision's ImageFolder refuses it too. Every split folder is held to it."""
    _image_tree(tmp_path / "ds", splits=("train", "val"))
    (tmp_path / "ds" / "train" / "3").mkdir()
    (tmp_path / "c.yaml").write_text(f"data: {{source: folder, root: {tmp_path / 'ds'}, train: train, val: val, "
                                     f"channels: 1}}\n")
    reads = ".jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff, .webp"
    code, out, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and out == "" and err == (f"deepvision data info: error: {tmp_path / 'ds' / 'train' / '3'} holds "
                                               f"no image ({reads}), so class '3' would have no sample; add its images "
                                               f"(in a format read) or remove the folder\n"), err
    for name in ("x0.pgm", "x1.pgm", "sub/y0.jfif"):  # readable by Pillow, but not of the formats read
        (tmp_path / "ds" / "train" / "3" / name).parent.mkdir(exist_ok=True)
        Image.new("L", (8, 8)).save(tmp_path / "ds" / "train" / "3" / name, "PPM" if name.endswith("pgm") else "JPEG")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.endswith("so class '3' would have no sample; its files (.jfif, .pgm) are not read; add its images (in a "
                        "format read) or remove the folder\n"), err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "ds" / "train" / "3" / "sub" / "ok.png")
    (tmp_path / "ds" / "val" / "1" / "im0.png").unlink()
    (tmp_path / "ds" / "val" / "1" / "im1.png").unlink()  # a validation class folder is held to it as well
    with pytest.raises(UserError, match=f"^{tmp_path / 'ds' / 'val' / '1'} holds no image .*so class '1' would"):
        load_data(build_config({"data": {"source": "folder", "root": str(tmp_path / "ds"), "train": "train",
                                         "val": "val", "channels": 1}}).data)
    (tmp_path / "ds" / "val" / "1").rmdir()
    code, out, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 0 and "4 classes" in out, out + err


@pytest.fixture
def lists(tmp_path):
    """ls1/ok.lst and ls1/perm.lst: the same 6 images, class numbers 0-2, and ls1/labels.txt a, b, c."""
    _image_tree(tmp_path / "ls1", splits=("img",))
    rows = "".join(f"{2 * c + k}\t{c}\timg/{c}/im{k}.png\n" for c in range(3) for k in range(2))
    for name in ("ok", "perm"):
        (tmp_path / "ls1" / f"{name}.lst").write_text(rows)
    (tmp_path / "ls1" / "labels.txt").write_text("a\nb\nc\n")
    return tmp_path / "ls1"


def _lst_data(folder, train="perm.lst", val="ok.lst", **options):
    return build_config({"data": {"source": "lst", "root": str(folder), "train": str(folder / train),
                                  "val": str(folder / val), "test": None, "channels": 1, "options": options}}).data


def test_the_labels_files_of_the_splits_and_the_labels_option_must_name_the_same_classes(lists):
    assert load_data(_lst_data(lists)).classes == ["a", "b", "c"]  # both find labels.txt
    (lists / "perm.labels.txt").write_text("b\na\nc\n")
    with pytest.raises(UserError, match=rf"^{lists}/labels.txt \(found beside perm.lst\) names the classes a, b, c, "
                                        rf"but {lists}/perm.labels.txt \(found beside perm.lst\) names b, a, c: one "
                                        rf"label number would mean two classes; make the files agree$"):
        load_data(_lst_data(lists))
    with pytest.raises(UserError, match=rf"perm.labels.txt \(found beside perm.lst\) names the classes b, a, c, but "
                                        rf"{lists}/labels.txt \(given as the labels file\) names a, b, c"):
        load_data(_lst_data(lists, "perm.lst", "perm.lst", labels=str(lists / "labels.txt")))
    (lists / "perm.labels.txt").write_text("a\nb\nc\n")  # the same names in another file agree
    assert load_data(_lst_data(lists, labels=str(lists / "labels.txt"))).classes == ["a", "b", "c"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b"b\n\xff\xfe\nc\n"), "is not UTF-8 text"),
    (lambda p: os.mkfifo(p), "is a FIFO, not a regular file"),
    (lambda p: p.mkdir(), "is a directory, not a regular file"),
    (lambda p: p.write_bytes(b"") or os.truncate(p, 2**27),  # sparse
     "holds 134.2 MB, more than the 67.1 MB such a file may hold"),
])
def test_a_labels_file_beside_a_list_is_named_when_it_cannot_be_read(lists, run_cli, make, message):
    """Not UTF-8, a FIFO or folder in its place (never passed over for the folder's labels.txt), or too large."""
    make(lists / "perm.labels.txt")
    with pytest.raises(UserError, match=f"^labels file {lists}/perm.labels.txt {message}"):
        load_data(_lst_data(lists))
    (lists.parent / "c.yaml").write_text(f"data: {{source: lst, root: {lists}, train: {lists}/ok.lst, test: null, "
                                         f"options: {{labels: {lists}/perm.labels.txt}}}}\n")
    code, _, err = run_cli("data", "info", lists.parent / "c.yaml")
    assert code == 2 and err == f"deepvision data info: error: labels file {lists}/perm.labels.txt {message}" + (
        " (byte 2)\n" if "UTF-8" in message else "\n")


def test_the_lst_source_reads_images_under_its_image_root_option(tmp_path):
    """`data.options.image_root` was accepted and never read: training took the images of the same names
    under data.root (a resized or older copy) without a word."""
    for folder, value in (("photos", 200), ("old", 10)):
        (tmp_path / folder / "a").mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / folder / "a" / "0.png")
    (tmp_path / "l.lst").write_text("0\t0.000000\ta/0.png\n")
    cfg = build_config({"model": {"name": "lenet"}, "data": {
        "source": "lst", "root": str(tmp_path / "old"), "train": str(tmp_path / "l.lst"), "test": None,
        "channels": 1, "options": {"image_root": str(tmp_path / "photos")}}})
    image, _ = load_data(cfg.data, roles=("train",)).train[0]
    assert int(np.asarray(image).max()) == 200


def test_the_lst_source_reads_a_relative_list_under_data_root_first_as_the_run_records_it(lists, run_cli,
                                                                                          monkeypatch):
    """Relative lists were read in the working directory only, while the run recorded data.root's list; a list
    in both places that differs is refused naming both, one copy of the same bytes is read."""
    (lists.parent / "cwd").mkdir()
    monkeypatch.chdir(lists.parent / "cwd")
    (lists.parent / "c.yaml").write_text(f"data: {{source: lst, root: {lists}, train: ok.lst, test: null, "
                                         f"channels: 1}}\n")
    code, out, err = run_cli("data", "info", lists.parent / "c.yaml")  # only under data.root
    assert code == 0 and "train        6 samples" in out, err
    (lists.parent / "cwd" / "ok.lst").write_text("".join((lists / "ok.lst").read_text().splitlines(True)[:3]))
    code, _, err = run_cli("data", "info", lists.parent / "c.yaml")
    assert code == 2 and err == (f"deepvision data info: error: ok.lst is both {lists}/ok.lst (under data.root) and "
                                 f"{lists.parent}/cwd/ok.lst (in the working directory), which differ; "
                                 f"give the one to read as an absolute path, or remove the other\n")
    assert len((lists.parent / "cwd" / "ok.lst").read_text().splitlines()) == 3  # inputs unchanged
    code, out, _ = run_cli("data", "info", lists.parent / "c.yaml", "--set", f"data.train={lists.parent}/cwd/ok.lst",
                           "--set", "data.val_fraction=0")
    assert code == 0 and "train        3 samples" in out
    (lists.parent / "cwd" / "ok.lst").write_bytes((lists / "ok.lst").read_bytes())  # the same list twice is one
    code, out, _ = run_cli("data", "info", lists.parent / "c.yaml")
    assert code == 0 and "train        6 samples" in out


def test_the_lst_source_refuses_one_image_listed_under_a_link(tmp_path):
    """A symbolic link listed with another label trained one image as two classes (im2rec refused the list)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(tmp_path / "a" / "0.png")
    (tmp_path / "b" / "link.png").symlink_to(tmp_path / "a" / "0.png")
    (tmp_path / "l.lst").write_text("0\t0.000000\ta/0.png\n1\t1.000000\tb/link.png\n")
    cfg = build_config({"model": {"name": "lenet"}, "data": {
        "source": "lst", "root": str(tmp_path), "train": str(tmp_path / "l.lst"), "test": None, "channels": 1}})
    with pytest.raises(UserError, match=r"link\.png and .*0\.png are one file \(a link\): the lists of "):
        load_data(cfg.data, roles=("train",))


def test_a_prefix_labels_file_and_a_labels_txt_beside_one_list_must_agree(lists):
    """ok.labels.txt (im2rec's) was taken and a disagreeing labels.txt beside it ignored without a word."""
    (lists / "ok.labels.txt").write_text("c\nb\na\n")
    with pytest.raises(UserError, match=rf"^{lists}/labels.txt \(found beside ok.lst\) names the classes a, b, c, but "
                                        rf"{lists}/ok.labels.txt \(found beside ok.lst\) names c, b, a: one label "):
        load_data(_lst_data(lists, "ok.lst", "ok.lst"))
    (lists / "ok.labels.txt").write_text("a\nb\nc\n")
    assert load_data(_lst_data(lists, "ok.lst", "ok.lst")).classes == ["a", "b", "c"]


def _h5(path, labels, names=None):
    import h5py

    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((len(labels), 8, 8), np.uint8)
        f["labels"] = np.array(labels)
        if names is not None:
            f["label_names"] = np.array(names, dtype="S")


def test_hdf5_splits_and_the_labels_option_must_name_the_same_classes(tmp_path):
    """The first split's label_names were taken: a validation file naming the classes in another order was
    scored as if they agreed, and data.options.labels was ignored beside label_names."""
    _h5(tmp_path / "tr.h5", [0, 1, 2, 0], ["zero", "one", "two"])
    _h5(tmp_path / "va.h5", [2, 1, 0], ["two", "one", "zero"])
    _h5(tmp_path / "plain.h5", [0, 1, 2, 2])
    (tmp_path / "names.txt").write_text("two\none\nzero\n")

    def load(val, **options):
        return load_data(build_config({"data": {"source": "hdf5", "root": str(tmp_path), "train": "tr.h5",
                                                "val": val, "test": None, "options": options}}).data)

    with pytest.raises(UserError, match=rf"^{tmp_path}/va.h5 \(its label_names\) names the classes two, one, zero, "
                                        rf"but {tmp_path}/tr.h5 \(its label_names\) names zero, one, two: one label "):
        load("va.h5")
    with pytest.raises(UserError, match=rf"^{tmp_path}/tr.h5 \(its label_names\) names the classes zero, one, two, "
                                        rf"but names.txt \(given as the labels file\) names two, one, zero: "):
        load("plain.h5", labels="names.txt")
    assert load("plain.h5").classes == ["zero", "one", "two"]  # a file without names agrees with any
    _h5(tmp_path / "va.h5", [2, 1, 0], ["zero", "one", "two"])
    assert load("va.h5").classes == ["zero", "one", "two"]
    _h5(tmp_path / "tr.h5", [0, 1, 3], ["zero", "one", "two", "three"])
    _h5(tmp_path / "va.h5", [0, 1], ["zero", "one"])
    with pytest.raises(UserError, match="va.h5 \\(its label_names\\) names the classes zero, one, but "):
        load("va.h5")


def _h5_images(path, images):
    import h5py

    with h5py.File(path, "w") as f:
        f["images"], f["labels"] = images, np.arange(len(images)) % 3


def _hdf5_yaml(tmp_path, train, val):
    (tmp_path / "c.yaml").write_text(f"model: {{name: lenet}}\ntrain: {{epochs: 1}}\ndata: {{source: hdf5, root: "
                                     f"'{tmp_path}', train: {train}, val: {val}, image_size: 28, batch_size: 4}}\n")
    return tmp_path / "c.yaml"


@pytest.mark.parametrize(("images", "message"), [
    (np.zeros((6, 8, 8), [("a", "u1"), ("b", "u1")]),
     "the data is (6, 8, 8) [('a', 'u1'), ('b', 'u1')]; an image source needs N x H x W [x C] (C = 1 or 3) integer "
     "or float pixels"),
    (np.zeros((6, 8, 8), np.complex64), "the data is (6, 8, 8) complex64; an image source needs N x H x W [x C] "),
    (np.zeros((6, 8, 8), bool), "the data is (6, 8, 8) bool; an image source needs N x H x W [x C] "),
    (np.zeros((6, 0, 8), np.uint8), "the image size (height x width) 0x8 must be positive"),
    (np.zeros((6, 8, 0, 3), np.float32), "the image size (height x width) 8x0 must be positive"),
    (np.zeros((2, 1, 16385), np.uint8), "the image size (height x width) 1x16385 exceeds the ceiling of 16384 "),
])
def test_hdf5_image_data_of_no_pixel_type_or_no_pixels_is_one_line_before_any_run_folder(tmp_path, run_cli, images,
                                                                                         message):
    """A compound dtype ended in a numpy TypeError traceback; images 0 pixels high were accepted by `data info`
    and ended `train` in a torch interpolate traceback."""
    _h5_images(tmp_path / "bad.h5", images)
    _h5_images(tmp_path / "val.h5", np.zeros((6, 8, 8), np.uint8))
    config, runs = _hdf5_yaml(tmp_path, "bad.h5", "val.h5"), tmp_path / "runs"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for prog, command in (("data info", ("data", "info", config)), ("train", ("train", config, "--out", runs))):
        code, out, err = run_cli(*command)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"deepvision {prog}: error: {tmp_path / 'bad.h5'}: {message}"), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no run folder either


@pytest.mark.parametrize(("train", "val", "shown"), [
    ((6, 8, 8, 3), (6, 8, 8), "(8, 8, 3) and {val} holds (8, 8, 1)"),
    ((6, 8, 8), (6, 8, 8, 3), "(8, 8, 1) and {val} holds (8, 8, 3)"),
    ((6, 1, 1), (6, 8, 8), "(1, 1, 1) and {val} holds (8, 8, 1)"),
])
def test_hdf5_splits_must_agree_in_size_and_channels(tmp_path, run_cli, train, val, shown):
    """The last split's channels and size were the run's: an RGB train file beside a gray val file trained a
    1-channel model on grayed images (the other order a 3-channel one), and 1x1 images were upscaled."""
    _h5_images(tmp_path / "tr.h5", np.zeros(train, np.uint8))
    _h5_images(tmp_path / "va.h5", np.zeros(val, np.uint8))
    config, runs = _hdf5_yaml(tmp_path, "tr.h5", "va.h5"), tmp_path / "runs"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for prog, command in (("data info", ("data", "info", config)), ("train", ("train", config, "--out", runs))):
        code, out, err = run_cli(*command)
        assert code == 2 and out == "" and err == (
            f"deepvision {prog}: error: {tmp_path / 'tr.h5'} holds {shown.format(val=tmp_path / 'va.h5')} "
            f"images (height, width, channels): the splits of one source must agree; convert one file to the other's "
            f"shape\n"), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_hdf5_splits_of_one_shape_load_with_its_channels_and_size(tmp_path):
    """N x H x W x 1 is the gray N x H x W; the run takes the shape the splits share."""
    _h5_images(tmp_path / "tr.h5", np.full((6, 5, 7, 1), 9, np.uint8))
    _h5_images(tmp_path / "va.h5", np.full((3, 5, 7), 9.0))
    _h5_images(tmp_path / "rgb.h5", np.full((3, 5, 7, 3), 9, np.int32))
    load = lambda tr, va: load_data(build_config({"data": {"source": "hdf5", "root": str(tmp_path), "train": tr,
                                                           "val": va, "test": None}}).data)
    gray = load("tr.h5", "va.h5")
    assert (gray.channels, gray.size, tuple(gray.train.images.shape), tuple(gray.val.images.shape)) == (
        1, (5, 7), (6, 1, 5, 7), (3, 1, 5, 7))
    colour = load("rgb.h5", "rgb.h5")
    assert (colour.channels, colour.size, tuple(colour.train.images.shape)) == (3, (5, 7), (3, 3, 5, 7))


def test_a_records_label_is_named_as_every_record_message_names_the_record(tmp_path, run_cli):
    """A record's label not a whole class number said "record 2" with neither its id nor its byte offset, which
    the corrupt-record messages give: the record is named one way, from 0, with its id and byte offset."""
    from deepvision.data.records.header import IRHeader, pack_header
    from deepvision.datasets.records import RecordWriter
    from tests.data.recordtools import noise_image, png_bytes

    body = png_bytes(noise_image(0, (8, 8)))
    with RecordWriter(tmp_path / "x.rec") as w:
        offsets = [w.write(pack_header(IRHeader(0, label, 100 + k, 0), body), 100 + k)
                   for k, label in enumerate((0.0, 1.0, 2.0000002, 1.0))]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "c.yaml").write_text(f"data: {{source: rec, train: {tmp_path / 'x.rec'}, test: null}}\n")
    code, out, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert (code, out) == (2, "") and err == (f"deepvision data info: error: {tmp_path / 'x.rec'}: record 2 (id 102) "
                                              f"at byte offset {offsets[2]} has label 2.000000238418579; single-label "
                                              f"data needs whole class numbers 0, 1, ... (1 such label(s))\n"), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "c.yaml"} == before
