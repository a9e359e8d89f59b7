"""Class names and data errors: im2rec records class names and training from its lists or records uses them;
recipes need a data root; `mean` names the path it tried; a missing optional module names its extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepvision.config import build_config
from deepvision.data.lst import labels_files
from deepvision.data.sources import load_data
from tests.helpers import make_image_folder, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Lists and records of a 2-class image folder, made with the CLI."""
    from deepvision.cli.main import main

    tmp = tmp_path_factory.mktemp("packed")
    images = make_image_folder(tmp / "images", n_per_class=8, size=28)
    data = tmp / "data"
    data.mkdir()
    assert main(["im2rec", "--list", "--recursive", "--train-ratio", "0.75", str(data / "set"), str(images)]) == 0
    assert main(["im2rec", "--encoding", ".png", "--num-thread", "1", str(data / "set"), str(images)]) == 0
    return tmp, data, images


def test_im2rec_writes_the_class_names_beside_the_lists(packed):
    _, data, _ = packed
    assert (data / "set.labels.txt").read_text() == "horizontal\nvertical\n"
    assert labels_files(data / "set_train.rec") == [data / "set.labels.txt"]
    assert labels_files(data / "set_val.lst") == [data / "set.labels.txt"]
    assert labels_files(data / "other.rec") == []


@pytest.mark.parametrize(("source", "ext"), [("rec", ".rec"), ("lst", ".lst")])
def test_training_data_from_those_files_has_the_names(packed, source, ext):
    tmp, data, images = packed
    cfg = build_config(tiny_config(1, source=source, root=str(data) if source == "rec" else str(images),
                                   train=str(data / f"set_train{ext}"), val=str(data / f"set_val{ext}"),
                                   val_fraction=0.0, channels=3))
    bundle = load_data(cfg.data, roles=("train", "val"))
    assert bundle.classes == ["horizontal", "vertical"]
    assert len(bundle.train) == 12 and len(bundle.val) == 4


def test_a_run_trained_from_records_stores_the_names(packed, run_cli):
    tmp, data, _ = packed
    cfg = tiny_config(1, source="rec", root=str(data), train="set_train.rec", val="set_val.rec", val_fraction=0.0,
                      batch_size=4, workers=0, channels=3)
    cfg["train"]["max_steps"] = 1
    (tmp / "rec.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", tmp / "rec.yaml", "--out", tmp / "runs", "--name", "rec")
    assert code == 0, err
    assert (tmp / "runs" / "rec" / "labels.txt").read_text() == "horizontal\nvertical\n"


@pytest.mark.parametrize(("option", "message"), [
    ("decoder=bogus", "data.options.decoder must be one of auto, simplejpeg, cv2, nvjpeg, gpu, got 'bogus'"),
    ("memory_format=nchw", "data.options.memory_format must be one of channels_last, contiguous, got 'nchw'"),
    ("prefetch=abc", "data.options.prefetch must be a whole number from 1 to 64, got 'abc' (a str)"),
    ("prefetch=-5", "data.options.prefetch must be a whole number from 1 to 64, got -5"),
    ("prefetch=2.7", "data.options.prefetch must be a whole number from 1 to 64, got 2.7 (a float)"),
    ("idx=foo", "data.options.idx must map split names to .idx paths ({train: a.idx}), got 'foo'"),
    ("labels=5", "data.options.labels must be the path of a class-names file, got 5"),
    ("data_key=5", "data.options.data_key must name an HDF5 dataset (text), got 5"),
    ("model.args.num_classes=0", "model.args.num_classes is set by model.num_classes; give it there"),
])
def test_record_options_are_checked_before_the_run_starts(packed, run_cli, option, message):
    tmp, data, _ = packed
    cfg = tiny_config(1, source="rec", root=str(data), train="set_train.rec", val="set_val.rec", val_fraction=0.0,
                      batch_size=4, workers=0, channels=3)
    (tmp / "opts.yaml").write_text(yaml.safe_dump(cfg))
    key = option if option.startswith("model.") else f"data.options.{option}"
    code, out, err = run_cli("train", tmp / "opts.yaml", "--out", tmp / "opt-runs", "--set", key)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp / "opt-runs").exists()  # no run folder is left, nor the --out folder the command made


def test_a_stale_labels_file_is_a_one_line_error(tmp_path, packed):
    _, data, _ = packed
    (tmp_path / "set_train.rec").symlink_to(data / "set_train.rec")
    (tmp_path / "set.labels.txt").write_text("only-one\n")
    cfg = build_config(tiny_config(1, source="rec", train=str(tmp_path / "set_train.rec"), val_fraction=0.25))
    with pytest.raises(Exception, match=r"set.labels.txt \(found beside set_train.rec\) names 1 classes"):
        load_data(cfg.data, roles=("train",))


def test_recipes_need_a_data_root(run_cli, tmp_path):
    code, _, err = run_cli("train", "lenet_mnist", "--out", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert "data.root is not set" in err and "--data-root DIR" in err
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_mean_without_root_names_the_path_and_suggests_root(packed, run_cli, tmp_path):
    _, data, images = packed
    code, _, err = run_cli("mean", data / "set_train.lst", "--num-thread", "1")
    assert code == 2 and err.count("\n") == 1
    first = (data / "set_train.lst").read_text().splitlines()[0].split("\t")[-1]
    assert str(data / first) in err and "does not exist" in err and "pass --root DIR" in err
    code, out, err = run_cli("mean", data / "set_train.lst", "--root", images, "--num-thread", "1")
    assert code == 0 and '"R"' in out


def test_a_missing_extra_is_one_line_naming_it(tmp_path):
    """Without OpenCV: `im2rec` and `imagenet lists` say which extra to install, and write nothing."""
    script = f"""
import sys
sys.modules["cv2"] = None  # as if opencv-python-headless were not installed
from deepvision.apps.imagenet import make_fake_imagenet
from deepvision.cli.main import main
root = make_fake_imagenet({str(tmp_path / "ILSVRC")!r}, classes=2, per_class=2, val_per_class=1, min_side=32,
                          max_side=40)
codes = [main(["im2rec", "--list", "--recursive", {str(tmp_path / "x")!r}, str(root.images)]),
         main(["imagenet", "lists", "--root", str(root.root), "--out", {str(tmp_path / "lists")!r}])]
print(codes)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip() == "[2, 2]", proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr
    assert lines[0].startswith("deepvision im2rec: error: this needs opencv-python-headless (module cv2)")
    assert lines[1].startswith("deepvision imagenet lists: error: this needs opencv-python-headless")
    assert all(line.endswith("pip install 'deepvision[records]'") for line in lines)
    assert not (tmp_path / "lists").exists() and not list(tmp_path.glob("x*"))


def test_lists_naming_an_image_under_two_labels_or_shared_splits_are_named(packed, run_cli, tmp_path):
    """One image listed under two labels is refused by the list reader; val and test splits that are
    training images are trained on with a [WARN] line saying how many."""
    from deepvision.data.lst import read_lst
    from deepvision.errors import UserError

    tmp, data, images = packed
    (tmp_path / "dup.lst").write_text("0\t0\thorizontal/a.png\n1\t1\tvertical/b.png\n2\t1\thorizontal/a.png\n")
    with pytest.raises(UserError, match=r"dup.lst:3: horizontal/a.png is listed again with other labels \(first "
                                        r"on line 1\); an image has one label"):
        read_lst(tmp_path / "dup.lst")
    (tmp_path / "dup3.lst").write_text("0\t0\th/a.png\n1\t1\th/../h/a.png\n")  # one file, another spelling
    with pytest.raises(UserError, match=r"dup3.lst:2: h/../h/a.png is listed again with other labels"):
        read_lst(tmp_path / "dup3.lst")
    (tmp_path / "same.lst").write_text("0\t0\th/a.png\n1\t0\th/a.png\n")  # listed twice, one label: oversampling
    assert len(read_lst(tmp_path / "same.lst")) == 2
    (tmp_path / "index.lst").write_text("0\t0\th/a.png\n1\t1\tv/b.png\n1\t2\tc/c.png\n")  # im2rec refuses it too
    with pytest.raises(UserError, match=r"index.lst: lines 2 and 3 both have index 1; each image needs its own"):
        read_lst(tmp_path / "index.lst")
    cfg = tiny_config(1, source="lst", root=str(images), train=str(data / "set_train.lst"),
                      val=str(data / "set_train.lst"), test=str(data / "set_val.lst"), val_fraction=0.0,
                      batch_size=4, workers=0, channels=3)
    cfg["train"]["max_steps"] = 1
    (tmp_path / "shared.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli("train", tmp_path / "shared.yaml", "--out", tmp_path / "runs")
    assert code == 0, err
    assert "[WARN] 12 of the 12 val images are training images too" in out + err
    assert "test images are training images" not in out + err
