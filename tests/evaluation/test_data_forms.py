"""`evaluate --data PATH` takes every data form training reads from a path (folder, .lst, .rec, HDF5)."""

from pathlib import Path

import numpy as np
import pytest

from deepvision.api import evaluate, train
from deepvision.data.sources import load_data
from deepvision.datasets.hdf5 import HDF5DatasetWriter
from deepvision.errors import UserError
from deepvision.runs.loading import load_run
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    cfg = tiny_config(1, max_samples=300, test_fraction=0.2, test=None)
    return train(cfg, out=tmp_path_factory.mktemp("runs"), name="digits").run_dir


def _write_hdf5(path, images, labels, names):
    writer = HDF5DatasetWriter(path, (len(labels), *images.shape[1:]), "images", dtype="uint8")
    writer.add(images, labels)
    writer.store_class_labels(names)
    writer.close()
    return path


def test_evaluate_an_hdf5_file_scores_like_the_split_it_holds(digits_run, tmp_path, run_cli):
    cfg = load_run(digits_run, device="cpu").cfg
    test = load_data(cfg.data, roles=("test",)).test
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    names = [str(i) for i in range(10)]
    own = evaluate(digits_run, data="test", quiet=True)
    h5 = _write_hdf5(tmp_path / "test.hdf5", images, labels, names)
    scored = evaluate(digits_run, data=str(h5), quiet=True)
    assert scored["samples"] == own["samples"] == len(labels) == 300
    assert scored["rank1"] == pytest.approx(own["rank1"])
    # label_names in another order: samples are relabelled by name, the score is the same
    order = np.random.default_rng(0).permutation(10)
    renamed = _write_hdf5(tmp_path / "renamed.h5", images, np.argsort(order)[labels], [names[i] for i in order])
    assert evaluate(digits_run, data=str(renamed), quiet=True)["rank1"] == pytest.approx(own["rank1"])
    code, out, err = run_cli("evaluate", digits_run, "--data", h5, "--out", tmp_path / "eval")
    assert code == 0, err
    assert (tmp_path / "eval" / "metrics.json").is_file()
    _write_hdf5(tmp_path / "other.hdf5", images, labels % 2, ["cat", "dog"])
    with pytest.raises(UserError, match="class\\(es\\) cat, dog of .*other.hdf5 are not classes of this run"):
        evaluate(digits_run, data=str(tmp_path / "other.hdf5"), quiet=True)
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run_cli("evaluate", digits_run, "--data", tmp_path / "notes.txt")
    assert code == 2 and err.count("\n") == 1 and "a .rec or an HDF5 file" in err


def test_evaluate_refuses_nan_float_images_in_one_line(digits_run, tmp_path, run_cli):
    images = np.full((3, 8, 8), np.nan, np.float32)
    writer = HDF5DatasetWriter(tmp_path / "x.h5", images.shape, "images", dtype="float32")
    writer.add(images, np.arange(3))
    writer.close()
    code, _, err = run_cli("evaluate", digits_run, "--data", tmp_path / "x.h5", "--out", tmp_path / "eval")
    assert code == 2 and err.count("\n") == 1 and "Warning" not in err
    assert "x.h5: the images hold NaN or infinite values (first in row 0)" in err
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize(("dtype", "shift", "scale", "shown"), [
    ("uint16", 0, 200, "first in row 0: 12600"), ("int16", -300, 1, "first in row 0: -300"),
    ("float64", 0, 200.0, "first in row 0: 12600"),
])
def test_evaluate_refuses_images_beyond_0_255_in_one_line(digits_run, tmp_path, run_cli, dtype, shift, scale, shown):
    """16-bit, signed or scaled images were clipped to 8 bits and scored as if they were pixels."""
    images = (np.arange(3 * 8 * 8).reshape(3, 8, 8) % 255).astype(dtype) * scale + shift
    writer = HDF5DatasetWriter(tmp_path / "x.h5", images.shape, "images", dtype=dtype)
    writer.add(images, np.arange(3))
    writer.close()
    code, out, err = run_cli("evaluate", digits_run, "--data", tmp_path / "x.h5", "--out", tmp_path / "eval")
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"deepvision evaluate: error: {tmp_path / 'x.h5'}: the images hold values beyond "
                                f"0-255 ({shown}); image data must be 8-bit pixels 0-255 (scale 16-bit or signed "
                                f"data to that range first)"]
    assert not (tmp_path / "eval").exists()


def test_evaluate_out_inside_the_data_folder_is_refused(tmp_path, run_cli):
    """--out DATA/0 would put confusion_matrix.png among class 0's images (counted by the next evaluate):
    one line before the run is read, nothing written."""
    data = tmp_path / "data"
    (data / "0").mkdir(parents=True)
    (data / "0" / "a.png").write_bytes(b"not read")
    for out in (data / "0", data, data / "new" / "eval"):
        code, _, err = run_cli("evaluate", tmp_path / "no-run", "--data", data, "--out", out)
        assert code == 2 and err.count("\n") == 1 and "is inside the data folder" in err, err
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == ["0", "0/a.png"]


def test_evaluate_out_in_another_data_sets_class_folder_is_refused(digits_run, tmp_path, run_cli):
    """confusion_matrix.png joined the class folder of a data set the run never read (the next build took it
    for a photo)."""
    other = tmp_path / "other" / "180"
    other.mkdir(parents=True)
    (other / "image_00000.png").write_bytes(b"a photo")
    code, _, err = run_cli("evaluate", digits_run, "--out", other)
    assert code == 2 and err.count("\n") == 1 and "holds images (image_00000.png, ...)" in err
    assert [p.name for p in other.iterdir()] == ["image_00000.png"]


def test_evaluate_out_over_the_images_of_a_list_is_refused(digits_run, tmp_path, run_cli):
    """Images a .lst names like report files (report.csv, metrics.json) are never replaced by the report:
    --out at their folder, or whose report file is one of them (a hard link), is one line, nothing written."""
    import os

    from PIL import Image

    lim = tmp_path / "lim"
    lim.mkdir()
    for name in ("report.csv", "metrics.json"):
        Image.fromarray(np.full((28, 28), 90, np.uint8)).save(lim / name, format="PNG")
    (lim / "l.lst").write_text("0\t0\treport.csv\n1\t1\tmetrics.json\n")
    (tmp_path / "other").mkdir()
    os.link(lim / "report.csv", tmp_path / "other" / "report.csv")
    before = {p: p.read_bytes() for p in [*lim.iterdir(), tmp_path / "other" / "report.csv"]}
    code, out, err = run_cli("evaluate", digits_run, "--data", lim / "l.lst", "--out", lim)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"deepvision evaluate: error: --out {lim} holds the input {lim / 'report.csv'}; its "
                                f"outputs would replace or mix with the inputs, so choose another folder"]
    code, out, err = run_cli("evaluate", digits_run, "--data", lim / "l.lst", "--out", tmp_path / "other")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"--out {tmp_path / 'other'} would overwrite an input with {tmp_path / 'other' / 'report.csv'}" in err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in lim.iterdir()) == ["l.lst", "metrics.json", "report.csv"]
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["report.csv"]


def test_evaluate_refuses_its_data_in_one_line_before_the_model_loads(digits_run, tmp_path, run_cli, busy_machine):
    """No "[INFO] loading model..." and no busy-cores note before a refusal of --data: the data is read first."""
    import os

    from PIL import Image

    (tmp_path / "imgs" / "0").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "imgs" / "0" / f"{i}.png")
    assert run_cli("im2rec", "--list", "--recursive", "--no-shuffle", tmp_path / "p", tmp_path / "imgs")[0] == 0
    assert run_cli("im2rec", "--num-thread", "1", tmp_path / "p", tmp_path / "imgs")[0] == 0
    idx = (tmp_path / "p.idx").read_text().splitlines()
    (tmp_path / "p.idx").write_text("\n".join([idx[0], idx[1].split("\t")[0] + "\tnan", *idx[2:]]) + "\n")
    os.mkfifo(tmp_path / "f.lst")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for data, message in ((tmp_path / "p.rec", f"{tmp_path / 'p.idx'}:2: expected 'key<TAB>byte offset'"),
                          (tmp_path / "f.lst", f"list file {tmp_path / 'f.lst'} is a FIFO, not a regular file")):
        code, out, err = run_cli("evaluate", digits_run, "--data", data, "--out", tmp_path / "eval")
        assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
        assert err.startswith(f"deepvision evaluate: error: {message}"), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not (tmp_path / "eval").exists()


def test_evaluate_refuses_its_checkpoint_in_one_line_on_a_busy_machine(digits_run, tmp_path, run_cli, busy_machine):
    """An epoch never saved, a labels.txt that does not fit the checkpoint: the error line alone, without the
    busy-cores note or an "[INFO]" line before it."""
    import shutil

    code, out, err = run_cli("evaluate", digits_run, "--epoch", "99")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1, err
    assert err.startswith("deepvision evaluate: error: epoch 99 was never saved in "), err
    run = tmp_path / "labrun"
    shutil.copytree(digits_run, run)
    labels = (run / "labels.txt").read_text().splitlines()
    (run / "labels.txt").write_text("\n".join(labels[:9]) + "\n")
    code, out, err = run_cli("evaluate", run)
    assert (code, out) == (2, "") and len(err.splitlines()) == 1, err
    assert err.startswith(f"deepvision evaluate: error: {run / 'labels.txt'} names 9 classes"), err


def test_evaluate_a_folder_of_other_classes_is_the_refusal_alone(digits_run, tmp_path, run_cli):
    """The class folders are compared with the run's classes before "[INFO] model loaded" is printed."""
    import numpy as np
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "ef" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ef" / name / "a.png")
    code, out, err = run_cli("evaluate", digits_run, "--data", tmp_path / "ef")
    assert code == 2 and out == "" and err.count("\n") == 1, out + err
    assert "class folder(s) cat, dog of" in err and "are not classes of this run" in err


def test_evaluate_and_logreg_never_write_into_each_others_report(digits_run, tmp_path, run_cli):
    """One folder, one command's report: evaluate refuses a folder holding a logreg model, logreg one
    holding an evaluate report (the files both write would be replaced, the rest left)."""
    logreg_out = tmp_path / "lr"
    logreg_out.mkdir()
    (logreg_out / "model.npz").write_bytes(b"kept")
    code, out, err = run_cli("evaluate", digits_run, "--out", logreg_out)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"--out {logreg_out} holds model.npz, part of a logreg model and report" in err
    assert sorted(p.name for p in logreg_out.iterdir()) == ["model.npz"]
    code, _, err = run_cli("evaluate", digits_run, "--out", tmp_path / "ev")
    assert code == 0, err
    features = tmp_path / "f.h5"
    writer = HDF5DatasetWriter(features, (40, 4), "features")
    writer.add(np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2)
    writer.close()
    before = {p.name: p.read_bytes() for p in (tmp_path / "ev").iterdir()}
    code, _, err = run_cli("logreg", features, "--out", tmp_path / "ev")
    assert code == 2 and "holds predictions.csv, part of an evaluate report" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "ev").iterdir()} == before
    (tmp_path / "class_a").mkdir()
    (tmp_path / "class_a" / "0.png").write_bytes(b"an image of the data")
    code, _, err = run_cli("logreg", features, "--out", tmp_path / "class_a")
    assert code == 2 and "holds images (0.png, ...); the report's figures would join them as data" in err
    assert [p.name for p in (tmp_path / "class_a").iterdir()] == ["0.png"]


def test_evaluate_a_list_or_record_matches_its_labels_file_to_the_runs_classes_by_name(digits_run, tmp_path,
                                                                                       run_cli):
    """The class names beside a .lst/.rec (PREFIX.labels.txt) say what its label numbers mean: names in
    another order are relabelled by name (the score is the list's own), a name the run lacks is refused."""
    from PIL import Image

    cfg = load_run(digits_run, device="cpu").cfg
    test = load_data(cfg.data, roles=("test",)).test
    images, labels = test.images[:40, 0].numpy(), test.labels[:40].numpy()
    (tmp_path / "img").mkdir()
    for k, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "img" / f"{k}.png")
    names = [str(i) for i in range(10)]
    order = np.random.default_rng(0).permutation(10)

    def write_list(prefix: str, numbers, class_names) -> str:
        (tmp_path / f"{prefix}.lst").write_text("".join(f"{k}\t{n}\timg/{k}.png\n" for k, n in enumerate(numbers)))
        (tmp_path / f"{prefix}.labels.txt").write_text("".join(f"{c}\n" for c in class_names))
        return str(tmp_path / f"{prefix}.lst")

    own = evaluate(digits_run, data=write_list("own", labels, names), quiet=True)
    renamed = write_list("renamed", np.argsort(order)[labels], [names[i] for i in order])
    scored = evaluate(digits_run, data=renamed, quiet=True)
    assert scored["confusion_matrix"] == own["confusion_matrix"] and scored["rank1"] == pytest.approx(own["rank1"])
    assert run_cli("im2rec", "--num-thread", "1", tmp_path / "renamed", tmp_path)[0] == 0
    scored = evaluate(digits_run, data=str(tmp_path / "renamed.rec"), quiet=True)
    assert scored["confusion_matrix"] == own["confusion_matrix"]
    (tmp_path / "renamed.labels.txt").write_text("".join(f"c{i}\n" for i in order))
    for data in ("renamed.lst", "renamed.rec"):
        code, out, err = run_cli("evaluate", digits_run, "--data", tmp_path / data, "--out", tmp_path / "eval")
        assert code == 2 and err.count("\n") == 1, err
        assert f"class(es) c{order[0]}, c{order[1]}" in err and "are not classes of this run (0, 1, 2" in err
    assert not (tmp_path / "eval").exists()


def test_reports_never_replace_a_users_files_or_the_report_of_other_data(digits_run, tmp_path, run_cli):
    """evaluate --out and logreg --out replaced a user's report.csv and metrics.json in any folder; two data
    files of one name (A/g10.h5, B/g10.h5) shared RUN/eval/g10_h5-best, the second report replacing the first."""
    import json

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.csv").write_text("my notes\n")
    code, out, err = run_cli("evaluate", digits_run, "--out", notes)
    assert (code, out) == (2, "") and f"--out {notes} holds files but no metrics.json of an earlier evaluate" in err
    features = tmp_path / "f.h5"
    writer = HDF5DatasetWriter(features, (40, 4), "features")
    writer.add(np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2)
    writer.close()
    code, out, err = run_cli("logreg", features, "--out", notes)
    assert code == 2 and f"--out {notes} holds files but no metrics.json of an earlier logreg" in err
    assert [p.name for p in notes.iterdir()] == ["report.csv"] and (notes / "report.csv").read_text() == "my notes\n"
    for _ in range(2):  # its own report is replaced
        assert run_cli("logreg", features, "--out", tmp_path / "lr")[0] == 0
    beside = tmp_path / "feats"  # a folder holding the features alone takes the report beside them
    beside.mkdir()
    features.rename(beside / "f.h5")
    code, _, err = run_cli("logreg", beside / "f.h5", "--out", beside)
    assert code == 0 and (beside / "metrics.json").is_file(), err
    test = load_data(load_run(digits_run, device="cpu").cfg.data, roles=("test",)).test
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    folders = []
    for name, n in (("A", 100), ("B", 60), ("A", 100)):
        (tmp_path / name).mkdir(exist_ok=True)
        h5 = tmp_path / name / "g10.h5"
        if not h5.exists():
            _write_hdf5(h5, images[:n], labels[:n], [str(i) for i in range(10)])
        folders.append(Path(evaluate(digits_run, data=str(h5), quiet=True)["files"]["metrics"]).parent)
    assert [f.name for f in folders] == ["g10_h5-best", "g10_h5-best-2", "g10_h5-best"]
    notes = folders[0].parent / "other_h5-best"  # a folder of the user's own where the default would go
    notes.mkdir()
    (notes / "report.csv").write_text("my notes\n")
    (tmp_path / "A" / "g10.h5").rename(tmp_path / "A" / "other.h5")
    scored = evaluate(digits_run, data=str(tmp_path / "A" / "other.h5"), quiet=True)
    assert Path(scored["files"]["metrics"]).parent.name == "other_h5-best-2"
    assert [p.name for p in notes.iterdir()] == ["report.csv"]
    assert json.loads((folders[1] / "metrics.json").read_text())["samples"] == 60
    assert json.loads((folders[0] / "metrics.json").read_text())["samples"] == 100


def test_class_folders_in_another_unicode_spelling_are_the_runs_classes(tmp_path, run_cli):
    """macOS writes 'café' as e + U+0301: evaluating such a copy of the data scores it as the run's class
    'café' (U+00E9), as run names are compared; it was refused naming two names that print alike."""
    import shutil
    import unicodedata

    from tests.helpers import make_image_folder

    nfc = make_image_folder(tmp_path / "nfc", n_per_class=12, size=16, classes=("b", "caf\u00e9"))
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(nfc), "train": ".", "val": None, "test": None,
                    "val_fraction": 0.25, "image_size": 16, "batch_size": 8}}
    run = train(cfg, out=tmp_path / "runs", name="u").run_dir
    nfd = tmp_path / "nfd"
    for name in ("b", "caf\u00e9"):
        shutil.copytree(nfc / name, nfd / unicodedata.normalize("NFD", name))
    plain = evaluate(run, data=str(nfc), quiet=True, out=tmp_path / "e1")
    other = evaluate(run, data=str(nfd), quiet=True, out=tmp_path / "e2")
    assert other["samples"] == plain["samples"] == 24 and other["rank1"] == plain["rank1"]


def test_the_runs_own_split_whose_classes_changed_is_refused_however_spelled(tmp_path, run_cli):
    """A class folder moved aside (or a labels file reordered) since training: `evaluate RUN` ended in a
    traceback where the test split was carved from train, and `--data test` scored under the new names."""
    import shutil

    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data", n_per_class=10, size=16, classes=("a", "b", "c"))
    cfg = tiny_config(1, source="folder", root=str(tmp_path / "data"), train=".", image_size=16, val_fraction=0.2,
                      test_fraction=0.2)
    cfg["model"]["num_classes"] = 3
    run = train(cfg, out=tmp_path / "runs", name="f").run_dir
    assert evaluate(run, quiet=True)["samples"] == 6
    shutil.move(tmp_path / "data" / "b", tmp_path / "b")
    line = ("deepvision evaluate: error: the run's data now names the classes a, c, but the run was trained on "
            "a, b, c: its class folders or labels file changed since training; restore them, or give other data "
            "as a path (--data PATH)\n")
    for extra in ([], ["--data", "test"], ["--data", "val"]):
        code, _, err = run_cli("evaluate", run, *extra, "--out", tmp_path / "eval")
        assert (code, err) == (2, line)
    assert not (tmp_path / "eval").exists()
    code, _, err = run_cli("evaluate", run, "--data", tmp_path / "data", "--out", tmp_path / "eval")
    assert code == 0, err  # other data, given as a path, is relabelled by name
