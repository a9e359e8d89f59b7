"""ImageNet devkit -> lists on a fake ILSVRC tree: labels in map order, blacklist, stratified test split."""

import os

import numpy as np
import pytest

from deepvision.apps.imagenet import build_lists, make_fake_imagenet
from deepvision.apps.imagenet.devkit import DevkitPaths
from deepvision.data.lst import read_lst
from deepvision.errors import UserError


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_imagenet(tmp_path_factory.mktemp("ilsvrc"), classes=6, per_class=12, val_per_class=4,
                              min_side=40, max_side=80)


def test_fake_tree_has_the_devkit_layout(fake):
    for path in (fake.map_clsloc, fake.train_cls, fake.val, fake.val_ground_truth, fake.val_blacklist):
        assert path.is_file(), path
    wnids = [line.split()[0] for line in fake.map_clsloc.read_text().splitlines()]
    assert wnids != sorted(wnids)  # map order is not sorted-WNID order, as in the real devkit
    assert len(list((fake.images / "train").rglob("*.JPEG"))) == 72
    assert len(list((fake.images / "val").glob("*.JPEG"))) == 24


def test_lists_follow_the_reference_rules(fake, tmp_path):
    lists = build_lists(fake.root, tmp_path, test_size=12)
    map_lines = fake.map_clsloc.read_text().splitlines()
    label_of = {line.split()[0]: int(line.split()[1]) - 1 for line in map_lines}
    train = read_lst(tmp_path / "train.lst")
    test = read_lst(tmp_path / "test.lst")
    val = read_lst(tmp_path / "val.lst")
    assert len(train) == 60 and len(test) == 12
    for entry in train + test:  # label = map_clsloc id - 1 of the WNID directory
        assert entry.label == label_of[entry.path.split("/")[1]]
        assert (fake.images / entry.path).is_file()
    assert np.bincount([int(e.label) for e in test]).tolist() == [2] * 6  # stratified
    assert not {e.path for e in train} & {e.path for e in test}
    assert [e.index for e in train] == list(range(60))
    # val: ground truth - 1, val.txt order, blacklisted ids (every 7th) dropped (every kept entry listed)
    truth = [int(t) - 1 for t in fake.val_ground_truth.read_text().split()]
    kept = [i for i in range(1, 25) if i % 7]
    assert [e.path for e in val] == [f"val/ILSVRC2012_val_{i:08d}.JPEG" for i in kept]
    assert [e.label for e in val] == [truth[i - 1] for i in kept]
    assert lists.blacklisted == 3
    labels = (tmp_path / "labels.txt").read_text().splitlines()
    assert labels[0] == map_lines[0].split()[0] + " fake_class_0"
    again = build_lists(fake.root, None, test_size=12)
    assert [e.path for e in again.train] == [e.path for e in train]  # seeded


def test_devkit_errors_name_the_file(fake, tmp_path):
    with pytest.raises(UserError, match="ILSVRC root not found"):
        build_lists(tmp_path / "nope")
    broken = tmp_path / "broken"
    make_fake_imagenet(broken, classes=2, per_class=2, val_per_class=1, min_side=16, max_side=20)
    (broken / "devkit" / "data" / "map_clsloc.txt").write_text("n01 one\n")
    with pytest.raises(UserError, match=r"map_clsloc.txt:1: expected '<wnid> <id> <name>'"):
        build_lists(broken)
    (broken / "devkit" / "data" / "map_clsloc.txt").unlink()
    with pytest.raises(UserError, match="devkit file not found: .*map_clsloc.txt"):
        build_lists(broken)
    os.mkfifo(broken / "devkit" / "data" / "map_clsloc.txt")  # named as what it is, never opened
    with pytest.raises(UserError, match=r"devkit file .*map_clsloc.txt is a FIFO, not a regular file"):
        build_lists(broken)


@pytest.mark.parametrize("name", ["val.txt", "blacklist", "train_cls.txt", "map_clsloc.txt"])
def test_devkit_text_files_are_read_bounded_by_their_size(tmp_path, name):
    """A sparse 2 GB devkit file is refused from its size before anything is read; so is one not UTF-8."""
    make_fake_imagenet(tmp_path / "ilsvrc", classes=2, per_class=2, val_per_class=1, min_side=16, max_side=20)
    paths = DevkitPaths(tmp_path / "ilsvrc")
    path = {"val.txt": paths.val, "blacklist": paths.val_blacklist, "train_cls.txt": paths.train_cls,
            "map_clsloc.txt": paths.map_clsloc}[name]
    os.truncate(path, 2**31)
    with pytest.raises(UserError, match=rf"^devkit file {path} holds 2.1 GB, more than the 1.1 GB such a file may "
                                        rf"hold$"):
        build_lists(tmp_path / "ilsvrc")
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(UserError, match=rf"^devkit file {path} is not UTF-8 text"):
        build_lists(tmp_path / "ilsvrc")


def test_an_image_or_wnid_named_twice_and_a_foreign_blacklist_are_refused(tmp_path):
    """A train image listed twice could land in train and in the test split carved from it; a wnid named
    twice leaves its images one of two ids; a blacklist id that names no validation image is another devkit's."""
    root = tmp_path / "ilsvrc"
    make_fake_imagenet(root, classes=3, per_class=4, val_per_class=2, min_side=16, max_side=20)
    data = root / "devkit" / "data"
    train_cls = root / "ImageSets" / "CLS-LOC" / "train_cls.txt"
    original = train_cls.read_text()
    train_cls.write_text(original + original.splitlines()[0] + "\n")
    with pytest.raises(UserError, match=r"train_cls.txt:13: '.*' is listed again \(first on line 1\)"):
        build_lists(root, test_size=2)
    train_cls.write_text(original)
    blacklist = data / "ILSVRC2015_clsloc_validation_blacklist.txt"
    blacklist.write_text("-1\n")
    with pytest.raises(UserError, match=r"blacklist.txt: -1 is not a validation image number \(1..6\)"):
        build_lists(root, test_size=2)
    blacklist.write_text("2\n")
    assert build_lists(root, test_size=2).blacklisted == 1
    mapping = data / "map_clsloc.txt"
    lines = mapping.read_text().splitlines()
    lines[2] = f"{lines[0].split()[0]} 3 again"
    mapping.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"map_clsloc.txt:3: wnid .* is named again \(first on line 1\)"):
        build_lists(root, test_size=2)


def test_missing_blacklist_needs_an_explicit_choice(tmp_path, run_cli):
    root = tmp_path / "noblack"
    make_fake_imagenet(root, classes=2, per_class=4, val_per_class=4, min_side=16, max_side=20)
    (root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_blacklist.txt").unlink()
    with pytest.raises(UserError, match="blacklist.txt .*--no-blacklist"):
        build_lists(root, test_size=2)
    lists = build_lists(root, test_size=2, blacklist=False)
    assert lists.blacklisted == 0 and len(lists.val) == 8
    code, _, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "lists", "--test-size", "2")
    assert code == 2 and "--no-blacklist" in err and err.count("\n") == 1
    code, out, _ = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "lists", "--test-size", "2",
                           "--no-blacklist")
    assert code == 0 and len((tmp_path / "lists" / "val.lst").read_text().splitlines()) == 8


def test_workers_are_bounded_and_named_before_the_lists_are_written(fake, tmp_path, run_cli):
    code, out, err = run_cli("imagenet", "lists", "--root", fake.root, "--out", tmp_path / "il", "--test-size", "5",
                             "--workers", "100000")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["deepvision imagenet lists: error: --workers must be at most 1,024 (one process each), "
                                "got 100,000"]
    assert not (tmp_path / "il").exists()


def test_test_split_must_leave_training_images(fake):
    with pytest.raises(UserError, match="leaves nothing to train on"):
        build_lists(fake.root, test_size=10_000)


def test_class_names_with_escapes_never_reach_labels_txt(tmp_path, run_cli):
    root = tmp_path / "esc"
    make_fake_imagenet(root, classes=2, per_class=4, val_per_class=4, min_side=16, max_side=20)
    mapping = root / "devkit" / "data" / "map_clsloc.txt"
    lines = mapping.read_text().splitlines()
    wnid, ident, _ = lines[0].split(" ", 2)
    mapping.write_text("\n".join([f"{wnid} {ident} fake\x1b[2J\u202eclass_0", *lines[1:]]) + "\n")
    code, _, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--no-blacklist",
                           "--test-size", "1")
    assert code == 2 and err.count("\n") == 1 and "map_clsloc.txt" in err and "\x1b" not in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("which, name", [("val.txt", "../../../../outside"), ("val.txt", "sub/x"),
                                         ("val.txt", ".."), ("train_cls.txt", "{wnid}/../../x/img"),
                                         ("train_cls.txt", "{wnid}/a\x1b[2J")])
def test_image_names_that_leave_their_folder_are_refused(tmp_path, run_cli, which, name):
    root = tmp_path / "ilsvrc"
    make_fake_imagenet(root, classes=2, per_class=4, val_per_class=4, min_side=16, max_side=20)
    path = root / "ImageSets" / "CLS-LOC" / which
    lines = path.read_text().splitlines()
    first, rest = lines[0].split(" ", 1)
    path.write_text("\n".join([f"{name.format(wnid=first.split('/')[0])} {rest}", *lines[1:]]) + "\n")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--no-blacklist",
                             "--test-size", "1")
    assert code == 2 and out == "" and err.count("\n") == 1 and "\x1b" not in err, err
    assert err.startswith(f"deepvision imagenet lists: error: {path}:1: '"), err
    assert ("is not a plain image name" if which == "val.txt" else "and a plain image name") in err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before and not (tmp_path / "o").exists()


def test_the_fake_generators_never_write_into_a_folder_holding_files(tmp_path, run_cli):
    """`adience fake` and `imagenet fake` replaced a real folder's fold files or devkit lists when named as --out."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "fold_frontal_0_data.txt").write_text("user_id\toriginal_image\n")
    for command in (["adience", "fake", "--faces", "20"], ["imagenet", "fake", "--classes", "2", "--per-class", "1"]):
        code, out, err = run_cli(*command, "--out", tmp_path / "real")
        assert (code, out) == (2, "") and "already exists and is not empty; a generator would overwrite" in err
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["fold_frontal_0_data.txt"]


def test_lists_are_written_only_into_a_new_empty_or_earlier_lists_folder(tmp_path, run_cli):
    """`imagenet lists --out RUN` replaced the run's labels.txt (its predictions then failed)."""
    paths = make_fake_imagenet(tmp_path / "ilsvrc", classes=2, per_class=2, val_per_class=1, min_side=16, max_side=20)
    root = paths.root
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.txt").write_text("0\n1\n")
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", run, "--workers", "1", "--test-size", "1")
    assert (code, out) == (2, "") and "holds files but no lists.json of an earlier imagenet lists" in err
    assert [p.name for p in run.iterdir()] == ["labels.txt"] and (run / "labels.txt").read_text() == "0\n1\n"
    for _ in range(2):  # new, then its own lists again
        code, _, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "lists", "--workers", "1",
                               "--test-size", "1")
        assert code == 0, err


def test_blacklist_numbers_are_compared_as_numbers_and_a_fifo_is_named(tmp_path, run_cli):
    """'007' is validation image 7 (as text it matched no id and dropped nothing); a FIFO in the
    blacklist's place is named as one, not called missing."""
    root = tmp_path / "ilsvrc"
    make_fake_imagenet(root, classes=3, per_class=4, val_per_class=3, min_side=16, max_side=20)
    blacklist = root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_blacklist.txt"
    blacklist.write_text("002\n07\n")
    lists = build_lists(root, test_size=2)
    assert lists.blacklisted == 2 and len(lists.val) == 7
    kept = [e.path for e in lists.val]
    assert "val/ILSVRC2012_val_00000002.JPEG" not in kept and "val/ILSVRC2012_val_00000007.JPEG" not in kept
    blacklist.write_text("0010\n")
    with pytest.raises(UserError, match=r"blacklist.txt: 0010 is not a validation image number \(1..9\)"):
        build_lists(root, test_size=2)
    blacklist.unlink()
    os.mkfifo(blacklist)
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--test-size", "2",
                             "--no-mean")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "o").exists()
    assert f"devkit file {blacklist} is a FIFO, not a regular file (pass --no-blacklist" in err


def test_a_validation_image_listed_twice_is_refused(tmp_path, run_cli):
    """Counted twice (under two classes here), one validation image would weigh double in every score."""
    root = tmp_path / "ilsvrc"
    make_fake_imagenet(root, classes=3, per_class=4, val_per_class=2, min_side=16, max_side=20)
    val = root / "ImageSets" / "CLS-LOC" / "val.txt"
    truth = root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_ground_truth.txt"
    first = int(truth.read_text().split()[2])
    val.write_text(val.read_text() + val.read_text().splitlines()[2] + "\n")
    truth.write_text(truth.read_text() + f"{first % 3 + 1}\n")
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--test-size", "2",
                             "--no-mean", "--no-blacklist")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "o").exists(), err
    assert (f"{val}:7 names the image ILSVRC2012_val_00000003 again, first on line 3 (class {first} there, "
            f"{first % 3 + 1} here); remove one of the lines") in err
    val.write_text(  # another image under an id named before: blacklisting that id would drop both
        "\n".join(val.read_text().splitlines()[:6] + ["ILSVRC2012_val_00000099 4"]) + "\n")
    with pytest.raises(UserError, match=r"val.txt:7 names the id 4 again, first on line 4"):
        build_lists(root, test_size=2, blacklist=False)


@pytest.mark.parametrize("gt", ["1_0", "\u0663", "+2", " 2x"])
def test_a_ground_truth_class_id_is_plain_digits(tmp_path, run_cli, gt):
    """int() reads '1_0' as 10, an Arabic-Indic three as 3 and '+2' as 2: the ground truth is read as written,
    like the val list's id column beside it."""
    root = tmp_path / "ilsvrc"
    make_fake_imagenet(root, classes=3, per_class=4, val_per_class=2, min_side=16, max_side=20)
    truth = root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_ground_truth.txt"
    lines = truth.read_text().splitlines()
    truth.write_text("\n".join([lines[0], gt, *lines[2:]]) + "\n")
    code, _, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--test-size", "2",
                           "--no-mean", "--no-blacklist")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "o").exists(), err
    assert f"{truth}:2: expected a class id in plain digits, got " in err


@pytest.mark.parametrize("link", ["symbolic to a validation image", "hard to another class's image"])
def test_one_image_file_reached_by_two_entries_is_refused(tmp_path, run_cli, link):
    """Compared by name only, a training image linked to a validation image (or to another class's) was
    listed in two splits under two labels: the lists' files are compared as files."""
    root = tmp_path / "ilsvrc"
    paths = make_fake_imagenet(root, classes=3, per_class=4, val_per_class=2, min_side=16, max_side=20)
    stems = [line.split()[0] for line in paths.train_cls.read_text().splitlines()]
    image = paths.images / "train" / f"{stems[0]}.JPEG"
    if link.startswith("symbolic"):
        target = paths.images / "val" / "ILSVRC2012_val_00000001.JPEG"
        image.unlink()
        image.symlink_to(os.path.relpath(target, image.parent))
    else:
        target = paths.images / "train" / f"{stems[-1]}.JPEG"
        assert stems[-1].split("/")[0] != stems[0].split("/")[0]
        image.unlink()
        os.link(target, image)
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--test-size", "3",
                             "--no-mean", "--no-blacklist")
    assert code == 2 and out == "" and err.count("\n") == 1 and not (tmp_path / "o").exists(), err
    assert err.startswith(f"deepvision imagenet lists: error: {target} and {image} are one file (a link): the train, "
                          f"val and test lists would hold one image twice; remove the link or copy the image"), err
    image.unlink()
    image.write_bytes(target.read_bytes())  # a copy is another image
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "o", "--test-size", "3",
                             "--no-mean", "--no-blacklist")
    assert code == 0, err


@pytest.mark.parametrize("stop", ["Terminated", "KeyboardInterrupt"])
def test_a_stopped_fake_leaves_nothing_its_next_run_refuses(tmp_path, run_cli, monkeypatch, stop):
    """`imagenet fake` stopped by SIGTERM left 551 files in its new --out, and its own next run refused the
    folder as not empty: a stop removes what the run wrote."""
    from deepvision import errors
    from tests.helpers import stop_on_call

    exc = getattr(errors, stop, KeyboardInterrupt)
    line = ("deepvision imagenet fake: terminated (SIGTERM); unfinished files were removed\n" if stop == "Terminated"
            else "interrupted\n")
    fake = ["imagenet", "fake", "--out", tmp_path / "new" / "ilsvrc", "--classes", "2", "--per-class", "3",
            "--val-per-class", "1", "--min-side", "16", "--max-side", "20"]
    stop_on_call(monkeypatch, "deepvision.apps.imagenet.fake._class_image", 4, exc)
    code, out, err = run_cli(*fake)
    assert (code, err) == (130 if exc is KeyboardInterrupt else 143, line), err
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert run_cli(*fake)[0] == 0


def test_an_image_in_another_case_is_listed_as_spelled_and_a_missing_one_refused(tmp_path, run_cli):
    """An image saved as .jpeg (or missing) was listed as .JPEG without a word; the list names the file as it
    is spelled, a missing image is refused naming it and nothing is written."""
    root = tmp_path / "ilsvrc"
    make_fake_imagenet(root, classes=3, per_class=6, val_per_class=2, min_side=16, max_side=20)
    images = DevkitPaths(root).images
    first = sorted((images / "train").rglob("*.JPEG"))[0]
    first.rename(first.with_suffix(".jpeg"))
    val = sorted((images / "val").glob("*.JPEG"))[0]
    val.rename(val.with_suffix(".Jpeg"))
    code, _, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "lists", "--test-size", "3",
                           "--no-mean", "--no-blacklist")
    assert code == 0, err
    listed = [e.path for n in ("train", "val", "test") for e in read_lst(tmp_path / "lists" / f"{n}.lst")]
    assert len(listed) == 24 and all((images / p).is_file() for p in listed)
    assert str(first.with_suffix(".jpeg").relative_to(images)) in listed
    assert str(val.with_suffix(".Jpeg").relative_to(images)) in listed
    first.with_suffix(".jpeg").unlink()
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "again", "--test-size", "3",
                             "--no-mean", "--no-blacklist")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert (f"1 image(s) that {DevkitPaths(root).train_cls} lists are missing (first: {first}); restore them, or "
            f"point --root at the complete ILSVRC folder") in err, err
    assert not (tmp_path / "again").exists()


def test_a_stop_while_the_mean_is_computed_leaves_the_out_folder_as_it_was(fake, tmp_path, run_cli, monkeypatch):
    """mean.json is written with the lists in one step: a stop while it is computed left the lists, labels.txt
    and lists.json (the folder's complete mark) without mean.json. Both a new --out and earlier lists stay."""
    from tests.helpers import stopped_both_ways

    out = tmp_path / "il"
    argv = ["imagenet", "lists", "--root", fake.root, "--out", out, "--test-size", "5", "--workers", "1"]
    for _ in stopped_both_ways(monkeypatch, run_cli, argv, "deepvision.datasets.mean.compute_mean", 1):
        assert not out.exists()
    code, _, err = run_cli(*argv)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["labels.txt", "lists.json", "mean.json", "test.lst", "train.lst", "val.lst"]
    for _ in stopped_both_ways(monkeypatch, run_cli, [*argv[:-4], "--test-size", "7", "--workers", "1"],
                               "deepvision.datasets.mean.write_mean_json", 1):
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_class_with_no_training_image_is_refused_where_the_lists_are_made(tmp_path, run_cli):
    """A class the map names but no training image holds was written to labels.txt (exit 0) and only
    training refused it; one the test split empties is named too."""
    root = tmp_path / "ilsvrc"
    paths = make_fake_imagenet(root, classes=2, per_class=2, val_per_class=1, min_side=16, max_side=20)
    before = paths.map_clsloc.read_text()
    with paths.map_clsloc.open("a") as f:
        f.write("n99999999 3 star\n")
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "l", "--no-mean",
                             "--test-size", "1")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"class n99999999 (star) in {paths.map_clsloc} would have no training image: {paths.train_cls} lists " \
           f"no image of it" in err and not (tmp_path / "l").exists()
    paths.map_clsloc.write_text(before)
    with pytest.raises(UserError, match=r"would have no training image: the test split takes all its images"):
        build_lists(root, test_size=3)


def test_a_blacklist_dropping_every_validation_image_is_refused(tmp_path, run_cli):
    """An empty val.lst was written with exit 0 ("val 0 (4 blacklisted dropped)"), as no other builder does."""
    root = tmp_path / "ilsvrc"
    paths = make_fake_imagenet(root, classes=2, per_class=4, val_per_class=2, min_side=16, max_side=20)
    paths.val_blacklist.write_text("1\n2\n3\n4\n")
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "l", "--no-mean",
                             "--test-size", "2")
    assert (code, out) == (2, "") and err == (f"deepvision imagenet lists: error: no validation image is left: the "
                                              f"blacklist {paths.val_blacklist} drops all 4 that {paths.val} lists; "
                                              f"give the devkit's own blacklist, or --no-blacklist\n")
    assert not (tmp_path / "l").exists()
    code, out, err = run_cli("imagenet", "lists", "--root", root, "--out", tmp_path / "l", "--no-mean",
                             "--test-size", "2", "--no-blacklist")
    assert code == 0 and "val 4" in out, err
