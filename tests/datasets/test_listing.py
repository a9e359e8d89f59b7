"""The list builders' output folder: each builder writes only into a new, empty or earlier folder of its
own (known by the lists.json it writes), never over another builder's lists."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from deepvision.apps.agegender.adience import make_fake_adience
from deepvision.apps.cars import make_fake_cars
from deepvision.apps.imagenet import make_fake_imagenet
from deepvision.apps.stl10 import build_stl10, make_fake_stl10
from deepvision.datasets.listing import LISTS_MARKER


def _digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("builders")
    return {
        "cars": ["cars", "lists", "--root", make_fake_cars(tmp / "cars", per_class=3, min_side=32, max_side=40)],
        "imagenet": ["imagenet", "lists", "--no-mean", "--test-size", "2", "--root",
                     make_fake_imagenet(tmp / "inet", classes=2, per_class=4, val_per_class=1, min_side=16,
                                        max_side=20).root],
        "adience": ["adience", "lists", "--no-mean", "--root", make_fake_adience(tmp / "adience", faces=20, size=8)],
    }


@pytest.mark.parametrize(("first", "second"), [("cars", "imagenet"), ("imagenet", "cars"), ("adience", "cars"),
                                               ("cars", "adience")])
def test_a_builder_refuses_another_builders_lists_folder_and_replaces_its_own(tmp_path, run_cli, roots, first,
                                                                             second):
    """`imagenet lists --out CARS_LISTS` replaced the cars lists and labels.txt and left the cars mean.json
    beside the ImageNet lists: any folder with a train.lst passed for the builder's own."""
    out = tmp_path / "lists"
    code, _, err = run_cli(*roots[first], "--out", out)
    assert code == 0, err
    assert json.loads((out / LISTS_MARKER).read_text()) == {"builder": f"{first} lists"}
    before = _digests(out)
    code, stdout, err = run_cli(*roots[second], "--out", out)
    assert (code, stdout) == (2, "") and err.count("\n") == 1, err
    assert (f"--out {out} holds the lists an earlier {first} lists wrote ({LISTS_MARKER}); {second} lists would "
            f"replace some of its files and leave the rest: choose a new or empty folder") in err
    assert _digests(out) == before
    code, _, err = run_cli(*roots[first], "--out", out)  # its own earlier folder: replaced
    assert code == 0, err


@pytest.mark.parametrize(("builder", "means"), [("imagenet", ["mean.json"]),
                                               ("adience", ["age/mean.json", "gender/mean.json"])])
def test_a_rebuild_forgets_the_mean_of_its_earlier_lists(tmp_path, run_cli, roots, builder, means):
    """`imagenet lists --no-mean` over its own earlier folder left that run's mean.json beside the new lists."""
    out = tmp_path / "lists"
    code, _, err = run_cli(*roots[builder], "--out", out)
    assert code == 0, err
    for mean in means:  # as an earlier run that computed its means left them
        (out / mean).write_text('{"R": 1.0, "G": 2.0, "B": 3.0}\n')
    code, _, err = run_cli(*roots[builder], "--out", out)
    assert code == 0, err
    assert not [m for m in means if (out / m).exists()]
    assert (out / LISTS_MARKER).is_file()


def test_a_builder_refuses_a_folder_without_its_mark(tmp_path, run_cli, roots):
    """An STL-10 build (train.lst, labels.txt and images/) is no cars lists folder."""
    build = tmp_path / "stl10"
    build_stl10(make_fake_stl10(tmp_path / "bins", train_per_class=4, test_per_class=4), build, pack=False)
    before = _digests(build)
    code, stdout, err = run_cli(*roots["cars"], "--out", build)
    assert (code, stdout) == (2, "") and err.count("\n") == 1, err
    assert f"--out {build} holds files but no {LISTS_MARKER} of an earlier cars lists" in err
    assert _digests(build) == before


def test_list_extensions_without_the_dot_are_taken_and_an_empty_listing_is_refused(tmp_path, run_cli):
    """`--exts png` matched no file (".png" is what a name ends with): an empty list and exit 0."""
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / cls / "x.png")
    code, _, err = run_cli("im2rec", "--list", "--recursive", "--no-shuffle", tmp_path / "p", tmp_path / "imgs",
                           "--exts", "png")
    assert code == 0, err
    assert (tmp_path / "p.lst").read_text() == "0\t0.000000\ta/x.png\n1\t1.000000\tb/x.png\n"
    for exts, message in ((["gif", ".bmp"], f"no image file (.gif, .bmp) in or under {tmp_path / 'imgs'}; no list "
                                             f"written"),
                          (["."], "--exts '.' is not a file extension; give extensions such as .jpg .png")):
        code, out, err = run_cli("im2rec", "--list", "--recursive", tmp_path / "q", tmp_path / "imgs", "--exts", *exts)
        assert (code, out) == (2, "") and err.count("\n") == 1 and message in err, err
    code, out, err = run_cli("im2rec", "--list", tmp_path / "q", tmp_path / "imgs")  # the images lie in sub-folders
    assert code == 2 and "directly in" in err and "(--recursive reads its sub-folders)" in err
    assert not list(tmp_path.glob("q*"))


@pytest.mark.parametrize("builder", ["cars", "imagenet", "adience"])
def test_a_stopped_builder_leaves_no_lists_its_next_run_refuses(tmp_path, run_cli, roots, monkeypatch, builder):
    """A list builder stopped (SIGTERM, Ctrl+C) after its first list, before its lists.json, left lists that
    its own next run refused as not its own: a stop removes the files the run added, and an earlier folder
    of its own keeps its mark."""
    from deepvision.errors import Terminated
    from tests.helpers import stop_on_call

    module = "deepvision.apps.agegender.adience" if builder == "adience" else "deepvision.datasets.listing"
    out = tmp_path / "new" / "lists"
    for stop, code_stopped in ((Terminated, 143), (KeyboardInterrupt, 130)):
        stop_on_call(monkeypatch, f"{module}.write_lst", 2, stop)
        code, _, err = run_cli(*roots[builder], "--out", out)
        assert code == code_stopped and err.count("\n") == 1, err
        assert not (tmp_path / "new").exists()
        monkeypatch.undo()
    code, _, err = run_cli(*roots[builder], "--out", out)
    assert code == 0, err
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    stop_on_call(monkeypatch, f"{module}.write_lst", 2, Terminated)
    assert run_cli(*roots[builder], "--out", out, "--seed", "7")[0] == 143  # other splits than those there
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # the earlier lists stay whole (a new train.lst beside the earlier val.lst was left); its mean.json is
    # forgotten first
    assert (out / LISTS_MARKER).is_file() and after == {k: v for k, v in before.items() if k in after}, after
    assert {k.name for k in set(before) - set(after)} <= {"mean.json"}
    monkeypatch.undo()
    code, _, err = run_cli(*roots[builder], "--out", out)
    assert code == 0, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize(("entry", "make", "kind"), [
    ("1/f.png", os.mkfifo, "a FIFO"),
    ("2/b.png", lambda p: os.symlink("/nonexistent", p), "a broken link"),
    ("0/z.jpg", lambda p: os.symlink("/dev/zero", p), "a character device"),
])
@pytest.mark.parametrize("recursive", [True, False])
def test_im2rec_list_names_a_special_file_or_broken_link_named_like_an_image(tmp_path, run_cli, entry, make, kind,
                                                                             recursive):
    """A FIFO, a device link or a broken link named like an image was left out of the list without a word (exit
    0); the folder source refuses the same tree, and so does the list maker now, naming the entry."""
    from PIL import Image

    root = tmp_path / "imgs"
    for cls in ("0", "1", "2"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / cls / "x.png")
    (root / "0" / "dir.png").mkdir()  # a folder named like an image is a folder, neither listed nor refused
    make(root / entry)
    folder = root if recursive else root / entry.split("/")[0]
    code, out, err = run_cli("im2rec", "--list", *(["--recursive"] if recursive else []), tmp_path / "p", folder)
    assert (code, out) == (2, "") and err == (f"deepvision im2rec: error: {root / entry} is {kind}, not an image "
                                              f"file; remove it from {folder} (only regular files are read as "
                                              f"images)\n"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # no list written
    os.unlink(root / entry)
    code, out, err = run_cli("im2rec", "--list", *(["--recursive"] if recursive else []), tmp_path / "p", folder)
    assert code == 0 and (tmp_path / "p.lst").read_text().count("\n") == (3 if recursive else 1), err


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symbolic", "hard"])
@pytest.mark.parametrize("recursive", [True, False])
def test_im2rec_list_refuses_one_image_reached_twice(tmp_path, run_cli, link, recursive):
    """A link to an image in another class folder was listed as a second image of that class (exit 0); packing
    and the lst source then refused the list. The list command refuses it at once, as the folder source does."""
    from PIL import Image

    root = tmp_path / "imgs"
    for cls in ("0", "1"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / cls / "x.png")
    folder = root if recursive else root / "0"
    dup = root / ("1" if recursive else "0") / "y.png"
    link(root / "0" / "x.png", dup)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = run_cli("im2rec", "--list", *(["--recursive"] if recursive else []), tmp_path / "p", folder)
    assert (code, out) == (2, "") and err == (f"deepvision im2rec: error: {dup} and {root / '0/x.png'} are one file "
                                              f"(a link): the list of {folder} would hold one image twice; remove the "
                                              f"link or copy the image\n"), err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no list written
    dup.unlink()
    code, _, err = run_cli("im2rec", "--list", *(["--recursive"] if recursive else []), tmp_path / "p", folder)
    assert code == 0 and (tmp_path / "p.lst").read_text().count("\n") == (2 if recursive else 1), err
