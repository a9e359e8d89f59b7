"""Vehicle identification: .mat annotations -> make/model lists, the fake tree,
the visualiser (RGB input, a descending top-5, the run's evaluation transform), and the C1-C3 recipes."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from deepvision.apps.cars import build_cars_lists, make_fake_cars, make_model
from deepvision.data.lst import read_lst
from deepvision.errors import Terminated, UserError
from deepvision.recipes import recipe_path


@pytest.mark.parametrize(("name", "label"), [
    ("AM General Hummer SUV 2000", "AM General:Hummer"),
    ("Aston Martin V8 Vantage Convertible 2012", "Aston Martin:V8 Vantage"),
    ("Chevrolet Silverado 1500 Extended Cab 2012", "Chevrolet:Silverado 1500"),
    ("Chevrolet Silverado 1500 Regular Cab 2012", "Chevrolet:Silverado 1500"),
    ("Ford Ranger SuperCab 2011", "Ford:Ranger"),
    ("Land Rover Range Rover SUV 2012", "Land Rover:Range Rover"),
    ("Audi S4 Sedan 2007", "Audi:S4"),
    ("Dodge Sprinter Cargo Van 2009", "Dodge:Sprinter"),
    ("Jaguar XK XKR 2012", "Jaguar:XK XKR"),
])
def test_make_model_labels(name, label):
    assert make_model(name) == label


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = make_fake_cars(tmp_path_factory.mktemp("cars") / "stanford", per_class=10, min_side=64, max_side=120)
    return root


def test_lists_from_the_mat_file(run_cli, fake, tmp_path):
    code, out, err = run_cli("cars", "lists", "--root", fake, "--out", tmp_path / "lists")
    assert code == 0, err
    assert "7 make:model classes; train 64, val 13, test 13" in out  # 90 images: int(0.15 * 90) = 13 each
    lists = {s: read_lst(tmp_path / "lists" / f"{s}.lst") for s in ("train", "val", "test")}
    paths = [e.path for entries in lists.values() for e in entries]
    assert sorted(paths) == [f"car_ims/{i:06d}.jpg" for i in range(1, 91)]  # disjoint, together everything
    labels = (tmp_path / "lists" / "labels.txt").read_text().splitlines()
    assert labels == sorted(labels) and "Chevrolet:Silverado 1500" in labels and "Audi:S4" in labels
    assert json.loads((tmp_path / "lists" / "mean.json").read_text()) == {"R": 123.68, "G": 116.779, "B": 103.939}
    ann = scipy.io.loadmat(fake / "cars_annos.mat", squeeze_me=True)
    truth = {str(a["relative_im_path"]): make_model(str(ann["class_names"][int(a["class"]) - 1]))
             for a in ann["annotations"]}
    for entries in lists.values():
        assert all(labels[int(e.label)] == truth[e.path] for e in entries)
    # stratified: every label in every split
    assert all(len({int(e.label) for e in entries}) == 7 for entries in lists.values())
    again = build_cars_lists(fake, seed=42)
    assert [e.path for e in again.test] == [e.path for e in lists["test"]]  # seeded


def test_bad_mat_files_are_one_line(run_cli, fake, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": np.zeros((3, 4)), "class_names": np.array(["a"])})
    code, _, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 2 and "struct array" in err and err.count("\n") == 1
    assert not (tmp_path / "lists").exists()
    (root / "cars_annos.mat").write_bytes(b"garbage")
    code, _, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 2 and "MATLAB" in err
    code, _, err = run_cli("cars", "lists", "--root", tmp_path, "--out", tmp_path / "lists")
    assert code == 2 and "cars_annos.mat" in err


def test_csv_labels(fake, tmp_path):
    rows = ["Image Filename,Make,Model,Vehicle Type,Year"]
    rows += [f"car_ims/{i:06d}.jpg,{'Tesla' if i % 2 else 'Audi'},{'Model S' if i % 2 else 'S4'},Sedan,2012"
             for i in range(1, 91)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    lists = build_cars_lists(fake, tmp_path / "out", csv_path=tmp_path / "labels.csv")
    assert lists.classes == ["Audi:S4", "Tesla:Model S"]


def test_an_image_annotated_twice_is_refused(run_cli, fake, tmp_path):
    """Listed twice, an image could land in train and in test."""
    import shutil

    root = tmp_path / "dup"
    shutil.copytree(fake, root)
    mat = scipy.io.loadmat(fake / "cars_annos.mat")
    mat["annotations"] = np.concatenate([mat["annotations"], mat["annotations"][:, :1]], axis=1)
    scipy.io.savemat(root / "cars_annos.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    n = mat["annotations"].shape[1]
    assert code == 2 and err.count("\n") == 1, err
    assert f"cars_annos.mat: annotation {n} names the image of annotation 1 again (car_ims/000001.jpg)" in err
    assert not (tmp_path / "lists").exists()
    rows = ["Image Filename,Make,Model,Vehicle Type,Year", "car_ims/000001.jpg,Audi,S4,Sedan,2012",
            "car_ims/000002.jpg,Audi,S4,Sedan,2012", "car_ims/000001.jpg,Tesla,Model S,Sedan,2012"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match=r"labels.csv: entry 3 names the image of entry 1 again \(car_ims/000001.jpg\)"):
        build_cars_lists(fake, tmp_path / "out", csv_path=tmp_path / "labels.csv")


def _devkit_layout(fake, root):
    """The devkit layout of the fake set: images 1-60 in cars_train/, the rest in cars_test/."""
    import shutil

    ann = scipy.io.loadmat(fake / "cars_annos.mat")
    (root / "devkit").mkdir(parents=True)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": ann["class_names"]})
    for folder, part in (("cars_train", slice(0, 60)), ("cars_test", slice(60, None))):
        (root / folder).mkdir()
        rows = ann["annotations"][0, part]
        fnames = [str(r["relative_im_path"][0]).split("/")[-1] for r in rows]
        for name in fnames:
            shutil.copy(fake / "car_ims" / name, root / folder / name)
        table = np.array([(np.array([name]), r["class"]) for name, r in zip(fnames, rows)],
                         dtype=[("fname", object), ("class", object)])[None, :]
        mat = "cars_train_annos.mat" if folder == "cars_train" else "cars_test_annos_withlabels.mat"
        scipy.io.savemat(root / "devkit" / mat, {"annotations": table})
    return root


@pytest.mark.parametrize("layout", ["cars_annos", "devkit", "csv"])
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_an_image_reached_under_two_names_is_refused(run_cli, fake, tmp_path, layout, link):
    """Compared by their text, two names of one file (a link) put one image in train and in test under two
    labels: images are compared as files, in both devkit files together."""
    import shutil

    if layout == "devkit":
        root = _devkit_layout(fake, tmp_path / "stanford")
        first, second = "cars_train/000001.jpg", "cars_test/000089.jpg"
    else:
        root = tmp_path / "stanford"
        shutil.copytree(fake, root)
        first, second = "car_ims/000001.jpg", "car_ims/000009.jpg"
    (root / second).unlink()
    if link == "symbolic":
        (root / second).symlink_to(os.path.relpath(root / first, (root / second).parent))
    else:
        os.link(root / first, root / second)
    args = []
    if layout == "csv":
        rows = [f"car_ims/{i:06d}.jpg,{'Tesla' if i % 2 else 'Audi'},S,Sedan,2012" for i in range(1, 91)]
        args = ["--csv", _csv(tmp_path / "labels.csv", rows)]
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists", *args)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    expected = {"cars_annos": f"{root / 'cars_annos.mat'}: annotation 9 names the image of annotation 1 again",
                "devkit": f"{root / 'devkit' / 'cars_test_annos_withlabels.mat'}: annotation 29 names the image of "
                          f"annotation 1 of {root / 'devkit' / 'cars_train_annos.mat'} again",
                "csv": f"{tmp_path / 'labels.csv'}: entry 9 names the image of entry 1 again"}[layout]
    assert err.startswith(f"deepvision cars lists: error: {expected} ({second} is {first}); an image listed twice"), err
    assert not (tmp_path / "lists").exists()
    (root / second).unlink()
    shutil.copy(root / first, root / second)  # a copy is another image
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists", *args)
    assert code == 0 and "train 64, val 13, test 13" in out, err


@pytest.fixture(scope="module")
def cars_run(fake, tmp_path_factory):
    from deepvision.api import train

    out = tmp_path_factory.mktemp("carsrun")
    build_cars_lists(fake, out / "lists")
    lists = out / "lists"
    cfg = {"name": "cars", "model": {"name": "lenet", "args": {"activation": "relu"}},
           "data": {"source": "lst", "root": str(fake), "train": str(lists / "train.lst"),
                    "val": str(lists / "val.lst"), "test": str(lists / "test.lst"),
                    "options": {"labels": str(lists / "labels.txt")}, "image_size": 28, "resize": 32,
                    "batch_size": 16, "workers": 0, "channels": 3},
           "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
           "train": {"epochs": 1, "seed": 0, "tensorboard": False, "log_every": 50}}
    train(cfg, out=out / "runs")
    return out / "runs" / "cars"


def test_show_samples_and_draws(run_cli, cars_run, fake, tmp_path):
    from deepvision.api import predict

    code, out, err = run_cli("cars", "show", cars_run, "--sample-size", "4", "--seed", "0", "--out", tmp_path / "s")
    assert code == 0, err
    assert out.count("[INFO] actual=") == 4 and out.count("predicted=") == 20
    results = json.loads((tmp_path / "s" / "predictions.json").read_text())
    assert len({r["index"] for r in results}) == 4  # without replacement
    test = read_lst(cars_run.parent.parent / "lists" / "test.lst")
    for r in results:
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and len(probs) == 5  # descending top-5
        entry = test[r["index"]]
        # the one evaluation transform: the same numbers as `predict` on the image file
        expected = predict(cars_run, [fake / entry.path], top=5)[0]
        assert [t["class"] for t in r["top"]] == [c for c, _ in expected.top]
        np.testing.assert_allclose(probs, [p for _, p in expected.top], rtol=1e-5)
        img = np.asarray(Image.open(r["image"]))
        src = Image.open(fake / entry.path)
        assert img.shape[1] == min(500, src.width)
        green = (img[:, :, 1] == 255) & (img[:, :, 0] == 0) & (img[:, :, 2] == 0)
        assert green[10:40].sum() > 20  # the top-1 label drawn in green near (10, 30)
    code, _, err = run_cli("cars", "show", cars_run, "--sample-size", "100")
    assert code == 2 and "exceeds" in err
    code, out, err = run_cli("cars", "show", cars_run, "--sample-size", "100000000", "--with-replacement")
    assert (code, out) == (2, "") and "--sample-size must be a whole number from 1 to 10,000, got 100000000" in err


def test_show_refuses_splits_drawn_otherwise_by_a_hand_edit(run_cli, cars_run, tmp_path):
    """The test images are sampled from the split the run was tested on, never one a config.yaml edit draws."""
    import shutil

    copy = tmp_path / "cars"
    shutil.copytree(cars_run, copy)
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text.replace("split_seed: 42", "split_seed: 7", 1))
    code, out, err = run_cli("cars", "show", copy, "--sample-size", "2", "--out", tmp_path / "s")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "(data.split_seed: 42 -> 7)" in err, err
    assert not (tmp_path / "s").exists()


def test_show_refuses_a_test_list_replaced_since_training(run_cli, cars_run, tmp_path):
    """The run's lists moved elsewhere are its data; a test list replaced by another (an entry left out) is
    not the split the run was tested on, and is refused before anything is written."""
    import shutil

    lists = cars_run.parent.parent / "lists"
    copy = tmp_path / "cars"
    shutil.copytree(cars_run, copy)
    shutil.copytree(lists, tmp_path / "lists")
    text = (copy / "config.yaml").read_text()
    assert str(lists) in text
    (copy / "config.yaml").write_text(text.replace(str(lists), str(tmp_path / "lists")))
    assert run_cli("cars", "show", copy, "--sample-size", "2", "--out", tmp_path / "same")[0] == 0
    test = tmp_path / "lists" / "test.lst"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-1]))
    code, out, err = run_cli("cars", "show", copy, "--sample-size", "2", "--out", tmp_path / "s")
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(
        "deepvision cars show: error: the test split of "), err
    assert "is not the one best.pt was trained with (13 images, sha256 " in err and "-> 12 images" in err, err
    assert not (tmp_path / "s").exists()


def test_show_writes_only_into_its_own_folder_outside_the_data(run_cli, cars_run, fake, tmp_path):
    """A folder of the user's files, the run's own folder and the test images' folder are refused in one
    line before the model loads, nothing written; an earlier show's folder is written again."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "000_sample1.png").write_bytes(b"my picture")
    (mine / "predictions.json").write_text('{"mine": true}\n')
    images = sorted((fake / "car_ims").iterdir())
    for out, message in [(mine, "holds files but no predictions.json of an earlier cars show"),
                         (cars_run, "holds files but no predictions.json of an earlier cars show"),
                         (fake / "car_ims", "holds files but no predictions.json of an earlier cars show"),
                         (fake / "car_ims" / "show", "is inside the image folder of the run's test split")]:
        code, out_text, err = run_cli("cars", "show", cars_run, "--sample-size", "2", "--seed", "1", "--out", out)
        assert (code, out_text) == (2, "") and err.count("\n") == 1 and message in err, err
    assert (mine / "000_sample1.png").read_bytes() == b"my picture"
    assert sorted((fake / "car_ims").iterdir()) == images
    for seed in ("1", "2"):
        code, _, err = run_cli("cars", "show", cars_run, "--sample-size", "2", "--seed", seed, "--out",
                               tmp_path / "s")
        assert code == 0, err
    # the folder shows the last sample (seed 1's drawings went), and replaces only the drawings its
    # predictions.json lists, never a file put there since
    listed = sorted(Path(r["image"]).name for r in json.loads((tmp_path / "s" / "predictions.json").read_text()))
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted([*listed, "predictions.json"])
    code, _, err = run_cli("cars", "show", cars_run, "--sample-size", "2", "--seed", "1", "--out", tmp_path / "s")
    seed1 = sorted(Path(r["image"]).name for r in json.loads((tmp_path / "s" / "predictions.json").read_text()))
    assert code == 0 and seed1 != listed, err
    planted = tmp_path / "s" / listed[0]
    planted.write_bytes(b"my picture")  # named like a drawing of seed 2, listed nowhere now
    code, out_text, err = run_cli("cars", "show", cars_run, "--sample-size", "2", "--seed", "2", "--out",
                                  tmp_path / "s")
    assert (code, out_text) == (2, "") and err.count("\n") == 1, err
    assert f"holds {listed[0]}, which its predictions.json does not list" in err
    assert planted.read_bytes() == b"my picture"
    planted.unlink()
    (tmp_path / "s" / "notes.txt").write_text("mine")  # a hand-edited table never names a file to remove
    hand_edited = [{"index": 0, "image": str(tmp_path / "s" / "notes.txt")}]
    (tmp_path / "s" / "predictions.json").write_text(json.dumps(hand_edited))
    code, _, err = run_cli("cars", "show", cars_run, "--sample-size", "2", "--seed", "2", "--out", tmp_path / "s")
    assert code == 0 and (tmp_path / "s" / "notes.txt").read_text() == "mine", err


def test_recipes_c1_to_c3():
    expected = {"c1": (45, ["1-30: 1e-4", "31-45: 1e-5"], 82.48), "c2": (120, ["1-100: 1e-5", "101-120: 1e-6"], 78.41),
                "c3": (55, ["1-50: 5e-4", "51-55: 5e-5"], 81.25)}
    for name, (epochs, ranges, val_rank1) in expected.items():
        raw = yaml.safe_load(recipe_path(f"cars_vgg16_{name}").read_text())
        assert raw["model"] == {"name": "tv:vgg16", "pretrained": "torchvision"}
        assert raw["optim"]["momentum"] == 0.9 and raw["optim"]["weight_decay"] == 0.0005
        assert raw["train"]["epochs"] == epochs and raw["schedule"]["ranges"] == ranges
        assert raw["reference"]["val_rank1"] == val_rank1
        assert raw["train"]["freeze"] == {"body_epochs": 0}  # no layer frozen, one rate, as the reference
        assert raw["optim"]["lr_mult"] == {"body": 1.0, "head": 1.0}
    assert yaml.safe_load(recipe_path("cars_vgg16_c3").read_text())["reference"]["test_rank1"] == 84.22


def test_recipes_validate():
    from deepvision.config.io import load_config

    for name in ("c1", "c2", "c3"):
        cfg = load_config(recipe_path(f"cars_vgg16_{name}"))
        assert cfg.model.name == "tv:vgg16" and cfg.data.image_size == 224


def test_features_and_classify_with_a_run(run_cli, cars_run, fake, tmp_path):
    import h5py

    lists = cars_run.parent.parent / "lists"
    code, _, err = run_cli("features", cars_run, lists / "test.lst", "--image-root", fake, "--labels",
                           lists / "labels.txt", "--out", tmp_path / "f.h5", "--no-shuffle")
    assert code == 0, err
    with h5py.File(tmp_path / "f.h5", "r") as db:
        meta = json.loads(db.attrs["deepvision"])
        assert db["features"].shape[0] == 13
        assert db["labels"][:].tolist() == [int(e.label) for e in read_lst(lists / "test.lst")]
    assert meta["run"] == str(cars_run.resolve()) and meta["preprocess"]["size"] == [28, 28]
    code, out, err = run_cli("classify", fake / "car_ims" / "000001.jpg", "--run", cars_run, "--top", "2", "--json")
    assert code == 0, err
    top = json.loads(out)[0]["top"]
    labels = (lists / "labels.txt").read_text().splitlines()
    assert len(top) == 2 and all(t["class"] in labels for t in top)


def test_features_names_a_fifo_labels_file(run_cli, cars_run, fake, tmp_path):
    lists = cars_run.parent.parent / "lists"
    os.mkfifo(tmp_path / "d.fifo")
    code, out, err = run_cli("features", cars_run, lists / "test.lst", "--image-root", fake, "--labels",
                             tmp_path / "d.fifo", "--out", tmp_path / "f.h5")
    assert code == 2 and out == ""
    assert err.splitlines() == [f"deepvision features: error: labels file {tmp_path / 'd.fifo'} is a FIFO, not a "
                                f"regular file"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.fifo"]


def test_lists_refuse_an_out_whose_files_would_replace_the_label_csv(run_cli, fake, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    names = sorted(p.name for p in (fake / "car_ims").iterdir())
    (out / "train.lst").write_text("filename,make,model,type,year\n"
                                   + "".join(f"{n},Make{i % 3},Model{i % 3},sedan,2012\n" for i, n in enumerate(names)))
    before = (out / "train.lst").read_bytes()
    code, stdout, err = run_cli("cars", "lists", "--root", fake, "--out", out, "--csv", out / "train.lst")
    assert (code, stdout) == (2, "")
    assert err.splitlines() == [f"deepvision cars lists: error: --out {out} would overwrite the input "
                                f"{out / 'train.lst'} "
                                f"(--csv) with its train.lst; choose another folder"]
    assert (out / "train.lst").read_bytes() == before and [p.name for p in out.iterdir()] == ["train.lst"]


def test_a_fifo_label_csv_is_named_as_such(run_cli, fake, tmp_path):
    os.mkfifo(tmp_path / "labels.csv")
    code, _, err = run_cli("cars", "lists", "--root", fake, "--out", tmp_path / "o", "--csv", tmp_path / "labels.csv")
    assert code == 2 and err.count("\n") == 1 and "labels.csv is a FIFO, not a regular file" in err


@pytest.mark.parametrize("name", ["cars_annos.mat", "devkit/cars_meta.mat"])
def test_a_fifo_annotation_file_is_named_as_such(run_cli, tmp_path, name):
    (tmp_path / "root" / "devkit").mkdir(parents=True)
    os.mkfifo(tmp_path / "root" / name)
    code, _, err = run_cli("cars", "lists", "--root", tmp_path / "root", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1
    assert f"Stanford Cars file {tmp_path / 'root' / name} is a FIFO, not a regular file" in err
    assert not (tmp_path / "o").exists()


def test_class_names_with_escapes_are_refused_before_writing(fake, tmp_path, run_cli):
    """A make/model with an ANSI escape or a bidi override never reaches labels.txt (as the other
    class-name readers rule): one line, nothing written."""
    rows = ["Image Filename,Make,Model,Vehicle Type,Year"]
    odd, even = "Ev\u202eli\x1b[2J", "Plain"
    rows += [f"car_ims/{i:06d}.jpg,Acme,{odd if i % 2 else even},Sedan,2012" for i in range(1, 91)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code, _, err = run_cli("cars", "lists", "--root", fake, "--out", tmp_path / "out",
                           "--csv", tmp_path / "labels.csv")
    assert code == 2 and err.count("\n") == 1 and "control character" in err and "\x1b" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, message", [
    ("relative_im_path", "car_ims/../../outside.jpg", "annotation 1: image path 'car_ims/../../outside.jpg' is "
                                                      "outside the dataset folder"),
    ("relative_im_path", "/etc/passwd", "annotation 1: image path '/etc/passwd' is outside the dataset folder"),
    ("relative_im_path", "car_ims/link.jpg", "annotation 1: {root}/car_ims/link.jpg is a link to {out}, outside "
                                             "the dataset folder"),
    ("class", 2.5, "annotation 1 has class 2.5, not a whole number"),
    ("class", [1, 2], "annotation 1 has class [1 2], not one number"),
    ("class", np.zeros((1, 0)), "annotation 1 has class [], not one number"),
    ("class", "3", "annotation 1 has class '3', not a number"),
    ("relative_im_path", np.array([["car_ims/000001.jpg", "car_ims/000002.jpg"]], dtype=object),
     "annotation 1 has relative_im_path ['car_ims/000001.jpg' 'car_ims/000002.jpg'], not one image path"),
])
def test_an_annotation_leaving_the_folder_or_not_one_whole_class_is_refused(tmp_path, run_cli, field, value, message):
    root = make_fake_cars(tmp_path / "stanford", per_class=3, min_side=32, max_side=48)
    Image.new("RGB", (40, 30)).save(tmp_path / "outside.jpg")
    os.symlink(tmp_path / "outside.jpg", root / "car_ims" / "link.jpg")
    mat = scipy.io.loadmat(root / "cars_annos.mat")
    if not isinstance(value, np.ndarray):  # a MATLAB string is 1 x n, a number 1 x 1, [1, 2] 1 x 2
        value = np.array([value] if isinstance(value, str | list) else [[value]])
    mat["annotations"][0, 0][field] = value
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": mat["annotations"], "class_names": mat["class_names"]})
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "o")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    expected = message.format(root=root, out=tmp_path / "outside.jpg")
    assert err.startswith(f"deepvision cars lists: error: {root / 'cars_annos.mat'}: {expected}"), err
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before and not (tmp_path / "o").exists()


def _csv(path, rows):
    path.write_text("\n".join(["Image Filename,Make,Model,Vehicle Type,Year", *rows]) + "\n")
    return path


@pytest.mark.parametrize("make, model, message", [
    ("A:B", "C", "labels.csv:3: the make 'A:B' holds ':', which joins make and model in a label"),
    ("A", "B:C", "labels.csv:3: the model 'B:C' holds ':', which joins make and model in a label"),
    ("", "", "labels.csv:3: the make is empty; every image needs a make and a model"),
    ("Audi", " ", "labels.csv:3: the model is empty; every image needs a make and a model"),
])
def test_a_make_or_model_that_would_merge_classes_is_refused(fake, tmp_path, run_cli, make, model, message):
    """make 'A:B' + model 'C' and make 'A' + model 'B:C' would both be the class 'A:B:C'; rows without a
    make and model the class ':'."""
    rows = [f"car_ims/{i:06d}.jpg,{make if i == 2 else 'Audi'},{model if i == 2 else 'S4'},Sedan,2012"
            for i in range(1, 91)]
    code, out, err = run_cli("cars", "lists", "--root", fake, "--out", tmp_path / "out",
                             "--csv", _csv(tmp_path / "labels.csv", rows))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="class name 'A:B C 2012': the make 'A:B' holds ':'"):
        make_model("A:B C 2012")


def test_a_csv_image_or_image_folder_out_of_the_root_is_refused(tmp_path, run_cli):
    """The CSV's images get the inside-the-root check of the .mat annotations: a link out of ROOT, or an
    --images folder that is not under ROOT, would pack a file from elsewhere."""
    root = make_fake_cars(tmp_path / "stanford", per_class=3, min_side=32, max_side=48)
    (tmp_path / "outside").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "outside" / "secret.jpg")
    os.symlink(tmp_path / "outside" / "secret.jpg", root / "car_ims" / "lnk.jpg")
    os.symlink(tmp_path / "outside", root / "elsewhere")
    rows = [f"{i:06d}.jpg,M{i % 3},X,Sedan,2012" for i in range(1, 28)]
    csv_path = _csv(tmp_path / "labels.csv", [*rows, "lnk.jpg,M0,X,Sedan,2012"])
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "o", "--csv", csv_path)
    assert code == 2 and err.count("\n") == 1, err
    assert (f"labels.csv:29: {root}/car_ims/lnk.jpg is a link to {tmp_path}/outside/secret.jpg, outside the "
            f"dataset folder {root}; copy the file into the dataset\n") in err
    csv_path = _csv(tmp_path / "labels.csv", ["secret.jpg,M0,X,Sedan,2012"] + rows)
    for images in ("../outside", str(tmp_path / "outside"), "elsewhere"):
        code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "o", "--csv", csv_path,
                                 "--images", images)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--images {images} is not a folder under --root {root}; the images must lie inside" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("stop", "code"), [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_a_stopped_show_leaves_the_folder_as_it_was(run_cli, cars_run, fake, tmp_path, monkeypatch, stop, code):
    """Ctrl+C or SIGTERM while the third drawing is made: the earlier sample stays whole (its drawings and
    predictions.json), none of this run's drawings is left, a new --out is not created, and the command runs again."""
    from deepvision.apps.cars import show

    out = tmp_path / "s"
    assert run_cli("cars", "show", cars_run, "--sample-size", "2", "--seed", "1", "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write, calls = show.write_image, []

    def stop_at_the_third(path, bgr):
        calls.append(path)
        if len(calls) % 3 == 0:
            raise stop
        real_write(path, bgr)

    monkeypatch.setattr(show, "write_image", stop_at_the_third)
    for target in (out, tmp_path / "new" / "s"):
        got, _, err = run_cli("cars", "show", cars_run, "--sample-size", "4", "--seed", "2", "--out", target)
        assert (got, err.count("\n")) == (code, 1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and not (tmp_path / "new").exists()
    monkeypatch.setattr(show, "write_image", real_write)
    assert run_cli("cars", "show", cars_run, "--sample-size", "4", "--seed", "2", "--out", out)[0] == 0
    assert len(list(out.glob("*.png"))) == 4


def test_a_stopped_fake_leaves_nothing_its_next_run_refuses(tmp_path, run_cli, monkeypatch):
    """`cars fake` stopped by SIGTERM left 1,803 images and no cars_annos.mat, and its own next run refused
    the folder as not empty: a stop (SIGTERM, Ctrl+C) removes what the run wrote."""
    from tests.helpers import stopped_both_ways

    argv = ["cars", "fake", "--out", tmp_path / "new" / "cars", "--per-class", "1"]
    for _ in stopped_both_ways(monkeypatch, run_cli, argv, "deepvision.apps.cars.fake._car_image", 3):
        assert not (tmp_path / "new").exists()
    code, _, err = run_cli(*argv)
    assert code == 0 and (tmp_path / "new" / "cars" / "cars_annos.mat").is_file(), err


def test_two_test_annotation_files_that_differ_are_refused(run_cli, fake, tmp_path):
    """cars_test_annos_withlabels.mat in devkit/ and beside it: taking the first would be a guess, unless the
    two hold the same bytes."""
    import shutil

    root = _devkit_layout(fake, tmp_path / "stanford")
    devkit_test = root / "devkit" / "cars_test_annos_withlabels.mat"
    shutil.copy(devkit_test, root / "cars_test_annos_withlabels.mat")
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "same")
    assert code == 0 and "train 64, val 13, test 13" in out, err
    mat = scipy.io.loadmat(devkit_test)
    for row in mat["annotations"][0]:  # a new array each: SciPy's may share memory with Python's cached bytes
        row["class"] = np.array([[int(row["class"][0, 0]) % 9 + 1]], dtype=np.uint8)
    scipy.io.savemat(root / "cars_test_annos_withlabels.mat", {"annotations": mat["annotations"]})
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"deepvision cars lists: error: cars_test_annos_withlabels.mat is both in {root / 'devkit'} "
                          f"and in {root}, and the two files differ; remove or move the wrong one"), err
    assert not (tmp_path / "lists").exists()
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_the_all_in_one_and_the_devkit_layouts_together_are_refused(run_cli, fake, tmp_path):
    """cars_annos.mat (+ car_ims/) beside a complete devkit layout: reading either without a word would be a
    guess; a devkit without its test labels is no second layout."""
    import shutil

    root = _devkit_layout(fake, tmp_path / "stanford")
    shutil.copy(fake / "cars_annos.mat", root / "cars_annos.mat")
    shutil.copytree(fake / "car_ims", root / "car_ims")
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"deepvision cars lists: error: {root} holds two layouts of Stanford Cars: cars_annos.mat "
                          f"with car_ims/, and the devkit (devkit/cars_meta.mat"), err
    assert "give the folder to read as --root" in err
    assert not (tmp_path / "lists").exists()
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    (root / "devkit" / "cars_test_annos_withlabels.mat").unlink()
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 0 and "train 64, val 13, test 13" in out, err
    assert (tmp_path / "lists" / "train.lst").read_text().count("car_ims/") == 64


def test_cars_annos_and_a_devkit_meta_naming_the_classes_differently_are_refused(run_cli, fake, tmp_path):
    """cars_annos.mat beside a devkit/cars_meta.mat (the usual car_devkit.tgz download, no cars_train/) whose
    class_names differ: cars_annos.mat's names were taken without a word; one line names both files."""
    import shutil

    root = tmp_path / "stanford"
    (root / "devkit").mkdir(parents=True)
    shutil.copy(fake / "cars_annos.mat", root / "cars_annos.mat")
    shutil.copytree(fake / "car_ims", root / "car_ims")
    names = [str(x[0]) for x in scipy.io.loadmat(fake / "cars_annos.mat")["class_names"][0]]
    reversed_names = np.empty((1, len(names)), dtype=object)  # a new array: SciPy's own are never written into
    for i, name in enumerate(names[::-1]):
        reversed_names[0, i] = np.array([name])
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": reversed_names})
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert (f"{root / 'cars_annos.mat'} and {root / 'devkit' / 'cars_meta.mat'} name the classes differently "
            f"(class 1 is {names[0]!r} in one and {names[-1]!r} in the other); the labels would come from one without "
            f"a word: remove or move the wrong file") in err, err
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    assert not (tmp_path / "lists").exists()
    same = np.empty((1, len(names)), dtype=object)
    for i, name in enumerate(names):
        same[0, i] = np.array([name])
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": same})
    code, out, err = run_cli("cars", "lists", "--root", root, "--out", tmp_path / "lists")
    assert code == 0, err


def test_a_stop_while_mean_json_is_written_leaves_no_lists(fake, tmp_path, run_cli, monkeypatch):
    """labels.txt and mean.json land with the lists in one step: a stop while they are written leaves no
    --out folder, never lists marked complete without them."""
    from tests.helpers import stopped_both_ways

    argv = ["cars", "lists", "--root", fake, "--out", tmp_path / "lists"]
    for _ in stopped_both_ways(monkeypatch, run_cli, argv, "deepvision.datasets.mean.write_mean_json", 1):
        assert not (tmp_path / "lists").exists()
    code, _, err = run_cli(*argv)
    assert code == 0 and (tmp_path / "lists" / "mean.json").is_file(), err
