"""Pretrained inference: the ImageNet synset table, offline torchvision weights, and
`deepvision classify` on real photos (scikit-image's) with torchvision's real MobileNet-V2 weights."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from deepvision.errors import UserError
from deepvision.inference.synsets import imagenet_class_names, imagenet_synsets

SKIMAGE = pytest.importorskip("skimage.data").__path__[0]
CATS = {"n02123045", "n02123159", "n02123394", "n02123597", "n02124075"}  # tabby, tiger, Persian, Siamese, Egyptian


def test_synset_table_is_the_ilsvrc_class_list():
    syn = imagenet_synsets()
    assert len(syn) == 1000
    wnids = [s.wnid for s in syn]
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids) and wnids == sorted(set(wnids))
    assert str(syn[967]) == "n07920052 espresso"
    assert str(syn[470]) == "n02948072 candle, taper, wax light"  # the reference's candle photo
    assert str(syn[517]) == "n03126707 crane"  # the reference's (wrong) cat prediction
    assert imagenet_class_names()[0] == "n01440764 tench, Tinca tinca"
    # output i of torchvision's ImageNet weights is line i: its category is one of the line's names
    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    differ = [i for i, (c, s) in enumerate(zip(categories, syn))
              if c.lower() not in [n.strip().lower() for n in s.names.split(",")]]
    assert differ == [134, 639]  # torchvision's "crane bird" and "maillot tank suit" disambiguate duplicates
    assert syn[134].name == "crane" and syn[639].names == "maillot, tank suit"


def test_classify_real_photos_offline(run_cli, offline_torch_home, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee.png", "chelsea.png"):
        shutil.copy(Path(SKIMAGE) / name, photos / name)
    out = tmp_path / "preds.csv"
    code, stdout, err = run_cli("classify", photos, "--model", "tv:mobilenet_v2", "--weights", "IMAGENET1K_V1",
                                "--json", "--batch-size", "1", "--out", out)
    assert code == 0, err
    results = {Path(r["image"]).name: r["top"] for r in json.loads(stdout)}
    assert results["coffee.png"][0]["class"] == "n07920052 espresso"
    assert results["coffee.png"][0]["probability"] > 0.9
    assert results["chelsea.png"][0]["class"].split()[0] in CATS
    for top in results.values():
        probs = [t["probability"] for t in top]
        assert len(top) == 5 and probs == sorted(probs, reverse=True)
    assert out.read_text().splitlines()[0] == "image,rank,class,probability"
    assert len(out.read_text().splitlines()) == 11


def test_default_weights_missing_names_the_file_and_the_cached_ones(run_cli, offline_torch_home, tmp_path):
    code, _, err = run_cli("classify", Path(SKIMAGE) / "coffee.png", "--model", "tv:mobilenet_v2")
    assert code == 2 and err.count("\n") == 1
    expected = offline_torch_home / "hub" / "checkpoints" / "mobilenet_v2-7ebf99e0.pth"  # DEFAULT = IMAGENET1K_V2
    assert f"place it at {expected}" in err
    assert "cached weights of tv:mobilenet_v2: IMAGENET1K_V1" in err and "--weights IMAGENET1K_V1" in err


def test_no_cache_no_network_is_one_line(monkeypatch, tmp_path):
    from deepvision.models.registry import create_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPVISION_OFFLINE", "1")
    with pytest.raises(UserError, match=r"ResNet18_Weights\.IMAGENET1K_V1 .*place it at .*/hub/checkpoints/"
                                        r"resnet18-f37072fd\.pth") as exc:
        create_model("tv:resnet18", weights="DEFAULT")
    assert "cached weights" not in str(exc.value)


def test_corrupt_cached_file_is_a_user_error(monkeypatch, tmp_path):
    from deepvision.models.registry import create_model

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"not a zip file")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="resnet18-f37072fd.pth .*cannot be loaded .*delete it"):
        create_model("tv:resnet18", weights="DEFAULT")


def test_bad_inputs_are_one_line_and_write_nothing(run_cli, offline_torch_home, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(Path(SKIMAGE) / "coffee.png", photos / "a.png")
    (photos / "b.jpg").write_bytes(b"this is not a JPEG")
    out = tmp_path / "preds.json"
    code, _, err = run_cli("classify", photos, "--model", "tv:mobilenet_v2", "--weights", "IMAGENET1K_V1",
                           "--batch-size", "1", "--out", out)
    assert code == 2 and "cannot read" in err and "b.jpg" in err and err.count("\n") == 1
    assert not out.exists()
    # weights of another architecture
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    code, _, err = run_cli("classify", photos / "a.png", "--model", "tv:mobilenet_v2", "--weights",
                           tmp_path / "resnet18.pth")
    assert code == 2 and "do not fit this model" in err and err.count("\n") == 1
    code, _, err = run_cli("classify", tmp_path / "missing.png", "--model", "tv:mobilenet_v2", "--weights",
                           "IMAGENET1K_V1")
    assert code == 2 and "not found" in err
    code, _, err = run_cli("classify", photos / "a.png", "--model", "tv:mobilenet_v3")
    assert code == 2 and "unknown torchvision model" in err


@pytest.mark.parametrize("spelling", ["torchvision:IMAGENET1K_V1", "IMAGENET1K_V1",
                                      "torchvision:MobileNet_V2_Weights.IMAGENET1K_V1"])
def test_weights_take_the_config_spelling(offline_torch_home, spelling):
    from deepvision.inference.backbones import load_model

    loaded = load_model("tv:mobilenet_v2", spelling, device="cpu")
    assert loaded.source == {"model": "tv:mobilenet_v2", "weights": "IMAGENET1K_V1"}
    assert len(loaded.classes) == 1000 and loaded.pre.resize == 256 and loaded.pre.size == (224, 224)


@pytest.mark.parametrize("victim, message", [
    ("run/preprocess.json", "is an input of this command"), ("run/history.csv", "is an input of this command"),
    ("photos/a.png", "give a .csv or .json file (the results are written as CSV or JSON); its suffix is '.png'"),
])
def test_classify_out_never_names_an_input(run_cli, tmp_path, victim, message):
    """--out over a file of the run read, or over an input image: one line before anything loads."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "preprocess.json").write_text('{"precious": 1}\n')
    (tmp_path / "run" / "history.csv").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "photos").mkdir()
    shutil.copy(Path(SKIMAGE) / "coffee.png", tmp_path / "photos" / "a.png")
    before = (tmp_path / victim).read_bytes()
    code, _, err = run_cli("classify", tmp_path / "photos", "--run", tmp_path / "run", "--out", tmp_path / victim)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert (tmp_path / victim).read_bytes() == before


@pytest.mark.parametrize("out, message", [
    ("photos/new.jpg", "its suffix is '.jpg'"), ("preds", "its suffix is none"), ("preds.txt", "its suffix is '.txt'"),
    ("photos/new.csv", "is inside the input folder {photos}; the next command over that folder would read it"),
    ("photos/sub/new.json", "is inside the input folder {photos}"),
])
def test_classify_out_is_csv_or_json_outside_the_input_folders(run_cli, tmp_path, out, message):
    """`--out photos/new.jpg` was a CSV named like a photo in the input folder (the next classify of the
    folder failed on it): the suffix must be .csv or .json and the file outside every input folder."""
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    shutil.copy(Path(SKIMAGE) / "coffee.png", tmp_path / "photos" / "a.png")
    code, _, err = run_cli("classify", tmp_path / "photos", "--model", "tv:nothing", "--out", tmp_path / out)
    assert code == 2 and err.count("\n") == 1, err
    assert message.format(photos=tmp_path / "photos") in err
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png", "sub"]


def test_classify_out_replaces_only_its_own_tables(tmp_path):
    """An existing --out is replaced when classify wrote it (CSV or JSON) or it is empty; another run's
    history.csv or an evaluate report's predictions.csv is refused, unchanged."""
    from deepvision.inference.classify import check_predictions_out, write_predictions
    from deepvision.inference.predict import Prediction

    results = [Prediction("a.png", [("cat", 0.75), ("dog", 0.25)])]
    for name in ("p.csv", "p.json"):
        write_predictions(results, tmp_path / name)
        write_predictions(results[:0], tmp_path / name)  # its own table: replaced
        write_predictions(results, tmp_path / name)
    (tmp_path / "empty.csv").write_text("")
    check_predictions_out(tmp_path / "empty.csv")
    for name, text in (("history.csv", "epoch,loss\n1,0.5\n"), ("predictions.csv", "image,label,predicted\n"),
                       ("notes.json", '{"a": 1}'),  # and an annotation export beginning as a classify table:
                       ("ls.json", '[{"image": "/data/upload/1/cat1.jpg", "id": 1, "label": [{"x": 10}]}]\n')):
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=f"^--out {tmp_path / name} exists and is not a table classify wrote; "
                                            f"choose a new file name"):
            write_predictions(results, tmp_path / name)
        assert (tmp_path / name).read_text() == text


def test_options_of_the_other_kind_of_model_are_refused(run_cli, tmp_path):
    """--weights with a run (which uses its own checkpoint) and --epoch with a model would be ignored: one
    line, before anything loads."""
    from deepvision.inference.backbones import load_model

    (tmp_path / "run").mkdir()
    (tmp_path / "photos").mkdir()
    shutil.copy(Path(SKIMAGE) / "coffee.png", tmp_path / "photos" / "a.png")
    code, out, err = run_cli("classify", tmp_path / "photos", "--run", tmp_path / "run", "--weights",
                             tmp_path / "nonexistent.pth")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"--weights goes with a model (tv:NAME or a registered name), not a run: {tmp_path / 'run'} uses its " \
           f"own checkpoint" in err
    with pytest.raises(UserError, match="--epoch goes with a run directory"):
        load_model("tv:mobilenet_v2", epoch=3, device="cpu")


def test_a_weights_tag_that_is_also_a_file_here_is_refused(run_cli, tmp_path, monkeypatch):
    """`--weights DEFAULT` loaded a file named DEFAULT in the working directory as torchvision's weights;
    now the word is refused while both exist, and `./DEFAULT` loads the file."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(SKIMAGE) / "coffee.png", tmp_path / "one.png")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "DEFAULT")
    before = (tmp_path / "DEFAULT").read_bytes()
    for tag in ("DEFAULT", "torchvision"):
        (tmp_path / tag).write_bytes(before)
        code, out, err = run_cli("classify", "one.png", "--model", "tv:resnet18", "--weights", tag, "--out",
                                 tmp_path / "p.json")
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert f"'{tag}' is " in err and f"and a file in this folder; give ./{tag} for the file, or " \
               "torchvision:DEFAULT for the weights" in err
        assert (tmp_path / tag).read_bytes() == before and not (tmp_path / "p.json").exists()
    code, out, err = run_cli("classify", "one.png", "--model", "tv:resnet18", "--weights", "./DEFAULT", "--top", "1")
    assert code == 0 and "1. n" in out, err
