"""`deepvision logreg`: grid search, held-out report, a model saved without pickle."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from deepvision.apps.transfer.logreg import LinearModel, fit_logreg, parse_grid
from deepvision.datasets.hdf5 import HDF5DatasetWriter
from deepvision.errors import Terminated, UserError


def blobs(path, n=240, d=12, classes=("0", "180", "270", "90"), seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(classes), d))
    y = rng.integers(0, len(classes), n)
    x = centres[y] + rng.normal(0, spread, (n, d))
    with HDF5DatasetWriter(path, (n, d), "features", buf_size=50) as w:
        w.add(x, y)
        w.store_class_labels(classes)
    return x, y


def test_fit_reports_and_saves_a_pickle_free_model(tmp_path, capsys):
    x, y = blobs(tmp_path / "f.h5")
    res = fit_logreg(tmp_path / "f.h5", tmp_path / "m", grid="C=0.001,0.1,10", cv=3, jobs=1)
    out = capsys.readouterr().out
    assert "[INFO] best hyperparameters: {'C': " in out and "precision" in out and "270" in out
    assert res["train_rows"] == 180 and res["test_rows"] == 60  # first 75% train, the rest held out
    assert res["accuracy"] >= 0.95
    rows = [line.split(",") for line in (tmp_path / "m" / "cv_results.csv").read_text().splitlines()[1:]]
    assert [float(r[0]) for r in rows] == [0.001, 0.1, 10.0]
    assert float(next(r for r in rows if r[3] == "1")[0]) == res["best_params"]["C"]
    assert sum(r["support"] for r in res["per_class"].values()) == 60
    for name in ("model.npz", "metrics.json", "report.csv", "report.txt", "confusion_matrix.csv",
                 "confusion_matrix.png", "cv_results.csv"):
        assert (tmp_path / "m" / name).is_file()
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["accuracy"] == res["accuracy"]
    with np.load(tmp_path / "m" / "model.npz", allow_pickle=False) as z:  # nothing to unpickle
        assert z["coef"].shape == (4, 12)
    model = LinearModel.load(tmp_path / "m")
    ref = LogisticRegression(C=res["best_params"]["C"], max_iter=1000, random_state=42).fit(x[:180], y[:180])
    np.testing.assert_allclose(model.predict_proba(x[180:]), ref.predict_proba(x[180:]), rtol=1e-6, atol=1e-9)
    assert model.label_names == ["0", "180", "270", "90"]
    assert (model.predict(x[180:]) == y[180:]).mean() == res["accuracy"]


def test_liblinear_one_vs_rest_and_standardize(tmp_path):
    x, y = blobs(tmp_path / "f.h5", spread=2.0)
    fit_logreg(tmp_path / "f.h5", tmp_path / "m", grid=[1.0], cv=2, jobs=1, solver="liblinear", quiet=True)
    model = LinearModel.load(tmp_path / "m" / "model.npz")
    ref = OneVsRestClassifier(LogisticRegression(C=1.0, solver="liblinear", random_state=42)).fit(x[:180], y[:180])
    np.testing.assert_allclose(model.predict_proba(x[180:]), ref.predict_proba(x[180:]), rtol=1e-6, atol=1e-9)
    res = fit_logreg(tmp_path / "f.h5", tmp_path / "s", grid=[1.0], cv=2, jobs=1, standardize=True, quiet=True)
    scaled = LinearModel.load(tmp_path / "s")
    assert scaled.mean is not None and (scaled.predict(x[180:]) == y[180:]).mean() == res["accuracy"]


def test_binary_features(tmp_path):
    x, y = blobs(tmp_path / "f.h5", classes=("cat", "dog"))
    res = fit_logreg(tmp_path / "f.h5", tmp_path / "m", grid=[1.0], cv=2, jobs=1, quiet=True)
    model = LinearModel.load(tmp_path / "m")
    assert model.coef.shape == (1, 12) and res["accuracy"] > 0.9
    assert model.predict_proba(x[:5]).shape == (5, 2)


def test_bad_input_is_one_line(run_cli, tmp_path):
    with h5py.File(tmp_path / "nofeat.h5", "w") as db:
        db["labels"] = np.zeros(4, np.int64)
    code, _, err = run_cli("logreg", tmp_path / "nofeat.h5", "--out", tmp_path / "m")
    assert code == 2 and "no data dataset features" in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()
    (tmp_path / "junk.h5").write_text("not hdf5")
    code, _, err = run_cli("logreg", tmp_path / "junk.h5")
    assert code == 2 and "cannot read" in err
    blobs(tmp_path / "f.h5")
    code, _, err = run_cli("logreg", tmp_path / "f.h5", "--grid", "gamma=1")
    assert code == 2 and "C only" in err
    with pytest.raises(UserError, match="positive C"):
        parse_grid("C=0,1")
    assert parse_grid("C=0.01,10") == [0.01, 10.0] and len(parse_grid(None)) == 7
    code, _, err = run_cli("logreg", tmp_path / "f.h5", "--solver", "adam")
    assert code == 2 and "unknown solver" in err
    code, _, err = run_cli("logreg", tmp_path / "f.h5", "--solver", "sag", "--max-iter", "3000000000")
    assert code == 2 and err.count("\n") == 1  # scikit-learn's solvers overflowed a C int (a traceback)
    assert "--max-iter must be a whole number from 1 to 10,000,000, got 3000000000" in err
    with pytest.raises(UserError, match="not a deepvision logistic-regression model"):
        np.savez(tmp_path / "other.npz", a=np.zeros(2))
        LinearModel.load(tmp_path / "other.npz")


def test_features_without_columns_are_one_line(run_cli, tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as db:
        db["features"] = np.zeros((40, 0), np.float32)
        db["labels"] = np.arange(40) % 2
        db.create_dataset("label_names", data=np.array([b"a", b"b"]))
    code, _, err = run_cli("logreg", tmp_path / "f.h5", "--out", tmp_path / "m.npz")
    assert code == 2 and err.count("\n") == 1 and "'features' has no columns (shape (40, 0))" in err, err
    assert not (tmp_path / "m.npz").exists()


def test_an_out_that_is_a_file_is_refused_before_the_grid_search(run_cli, tmp_path):
    blobs(tmp_path / "f.h5")
    before = (tmp_path / "f.h5").read_bytes()
    code, out, err = run_cli("logreg", tmp_path / "f.h5", "--out", tmp_path / "f.h5")
    assert code == 2 and err.count("\n") == 1 and "is a file; give a folder" in err
    assert "best hyperparameters" not in out  # nothing was fitted
    assert (tmp_path / "f.h5").read_bytes() == before


def _split_files(tmp_path, n_train=150, n_test=90, classes=("0", "180", "270", "90")):
    """Two feature files drawn from the same class centres: a training split and a separate test split."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 3, (len(classes), 12))
    out = []
    for name, n in (("train.h5", n_train), ("test.h5", n_test)):
        y = rng.integers(0, len(classes), n)
        x = centres[y] + rng.normal(0, 1.5, (n, 12))
        with HDF5DatasetWriter(tmp_path / name, (n, 12), "features", buf_size=50) as w:
            w.add(x, y)
            w.store_class_labels(classes)
        out.append((x, y))
    return out


def test_a_separate_test_file_is_the_report_and_every_training_row_trains(run_cli, tmp_path):
    (x, y), (tx, ty) = _split_files(tmp_path)
    code, out, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "test.h5", "--grid", "C=0.1,1",
                             "--cv", "3", "--jobs", "1", "--out", tmp_path / "m")
    assert code == 0, err
    assert "training on the 150 rows of train.h5, testing on the 90 rows of test.h5" in out
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["train_rows"] == 150 and metrics["test_rows"] == 90
    assert metrics["test_file"] == str(tmp_path / "test.h5")
    assert sum(r["support"] for r in metrics["per_class"].values()) == 90  # the report is on the test file
    model = LinearModel.load(tmp_path / "m")
    ref = LogisticRegression(C=metrics["best_params"]["C"], max_iter=1000, random_state=42).fit(x, y)
    np.testing.assert_allclose(model.predict_proba(tx), ref.predict_proba(tx), rtol=1e-6, atol=1e-9)
    assert metrics["accuracy"] == (model.predict(tx) == ty).mean()
    assert f"test accuracy: {metrics['accuracy'] * 100:.2f}% (90 rows of test.h5)" in out


def test_a_test_file_of_another_extraction_is_refused_in_one_line(run_cli, tmp_path):
    _split_files(tmp_path)
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "test.h5", "--train-fraction", "0.5")
    assert code == 2 and err.count("\n") == 1 and "give one or the other" in err
    blobs(tmp_path / "names.h5", classes=("a", "b", "c", "d"))
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "names.h5")
    assert code == 2 and err.count("\n") == 1 and "same classes" in err
    blobs(tmp_path / "wide.h5", d=13)
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "wide.h5")
    assert code == 2 and "13 features per row" in err and "has 12" in err
    for name, layer in (("train.h5", "features.18"), ("test.h5", "features.30")):
        with h5py.File(tmp_path / name, "a") as db:
            db.attrs["deepvision"] = json.dumps({"network": "tv:vgg16", "layer": layer, "data": name})
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "test.h5", "--out", tmp_path / "m")
    assert code == 2 and "extracted differently" in err and "(layer differ)" in err and not (tmp_path / "m").exists()
    for bare, flag in (("test.h5", "--test "), ("train.h5", "")):  # one file without the record: nothing to compare
        with h5py.File(tmp_path / bare, "a") as db:
            del db.attrs["deepvision"]
        before = (tmp_path / bare).read_bytes()
        kept = tmp_path / ("train.h5" if bare == "test.h5" else "test.h5")
        code, out, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "test.h5", "--out",
                                 tmp_path / "m")
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert (f"{flag}{tmp_path / bare} carries no deepvision extraction record, {kept} does; extract it with "
                f"`deepvision features` and the options of {kept}") in err
        assert (tmp_path / bare).read_bytes() == before and not (tmp_path / "m").exists()
        with h5py.File(tmp_path / bare, "a") as db:
            db.attrs["deepvision"] = json.dumps({"network": "tv:vgg16", "layer": "features.30", "data": bare})
    for name in ("train.h5", "test.h5"):
        with h5py.File(tmp_path / name, "a") as db:
            db.attrs["deepvision"] = json.dumps({"network": "tv:vgg16", "layer": "features.30", "data": "photos/"})
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "test.h5")
    assert code == 2 and "both extracted from photos/" in err
    (tmp_path / "same.h5").hardlink_to(tmp_path / "train.h5")
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "same.h5")
    assert code == 2 and err.count("\n") == 1 and "is the training file" in err
    before = (tmp_path / "test.h5").read_bytes()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "report.csv").symlink_to(tmp_path / "test.h5")
    code, _, err = run_cli("logreg", tmp_path / "train.h5", "--test", tmp_path / "o" / "report.csv",
                           "--out", tmp_path / "o")
    assert code == 2 and "is an input of this command" in err
    assert (tmp_path / "test.h5").read_bytes() == before


def _edited(tmp_path, name, edit):
    """A valid feature file (with the `deepvision` attribute `features` writes), changed by `edit(db)`."""
    blobs(tmp_path / f"{name}.h5", n=40, d=6, classes=("a", "b", "c"))
    with h5py.File(tmp_path / f"{name}.h5", "r+") as db:
        db.attrs["deepvision"] = json.dumps({"model": "lenet", "layer": "fc"})
        edit(db)
    return tmp_path / f"{name}.h5"


def _replace(db, key, value):
    del db[key]
    db[key] = value


FEATURE_FILE_CASES = [
    ("empty", lambda db: (_replace(db, "features", db["features"][:0]), _replace(db, "labels", db["labels"][:0])),
     "{f} holds no rows ('features' is 0x6); give a file with at least one sample"),
    ("huge", lambda db: _replace(db, "features", np.full(db["features"].shape, 1e308)),
     "{f}: 40 row(s) hold features beyond ±1e+150 (first: row 0, 1e+308), whose squares overflow"),
    ("names", lambda db: _replace(db, "label_names", np.array([0, 1, 2])),
     "{f}: 'label_names' must be text (one class name each), got int64 values"),
    ("attr", lambda db: db.attrs.__setitem__("deepvision", "{not json"),
     "{f} attribute 'deepvision' is not valid JSON"),
    ("list", lambda db: db.attrs.__setitem__("deepvision", "[1, 2]"),
     "{f} attribute 'deepvision' is not a JSON object"),
]


@pytest.mark.parametrize("name, edit, message", FEATURE_FILE_CASES, ids=[c[0] for c in FEATURE_FILE_CASES])
def test_a_damaged_feature_file_is_one_line_before_any_fit(run_cli, tmp_path, name, edit, message):
    path = _edited(tmp_path, name, edit)
    before = path.read_bytes()
    code, out, err = run_cli("logreg", path, "--grid", "C=1", "--cv", "2", "--jobs", "1", "--out", tmp_path / "m")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    assert err.startswith("deepvision logreg: error: " + message.format(f=path)), err
    assert path.read_bytes() == before and not (tmp_path / "m").exists()


def test_a_model_that_did_not_converge_is_one_line_of_ours(tmp_path, capfd):
    """No scikit-learn warning text from the folds (worker processes too): one [WARN] line for the model kept."""
    from deepvision.cli.main import main

    blobs(tmp_path / "f.h5", spread=4.0)
    capfd.readouterr()
    code = main(["logreg", str(tmp_path / "f.h5"), "--grid", "C=1,10", "--cv", "2", "--jobs", "2", "--max-iter", "1",
                 "--out", str(tmp_path / "m")])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "ConvergenceWarning" not in out + err and "STOP" not in out + err and err == "", err
    assert "[WARN] the model reached max_iter=1 before converging; raise --max-iter or use --standardize" in out
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["unconverged_fits"] == 1


@pytest.mark.parametrize(("stop", "code"), [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_a_stop_while_the_report_is_written_leaves_the_folder_as_it_was(run_cli, tmp_path, monkeypatch, stop, code):
    """Ctrl+C or SIGTERM as the model is saved (its report half written): a new --out is not left behind
    (empty or half full), an earlier model and report stay whole."""
    blobs(tmp_path / "f.h5", n=60)
    assert run_cli("logreg", tmp_path / "f.h5", "--grid", "C=1", "--cv", "2", "--jobs", "1",
                   "--out", tmp_path / "m")[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    def stopped(self, path):
        raise stop

    monkeypatch.setattr(LinearModel, "save", stopped)
    for out in (tmp_path / "m", tmp_path / "new" / "m"):
        got, _, err = run_cli("logreg", tmp_path / "f.h5", "--grid", "C=10", "--cv", "2", "--jobs", "1",
                              "--out", out)
        assert (got, err.count("\n")) == (code, 1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5", "m"]


def _blocked_signals() -> int:
    """The calling process's blocked-signal mask, as Linux reports it."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("SigBlk:")[1].split()[0], 16)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_grid_search_workers_start_with_the_stop_signals_blocked():
    # Ctrl+C reaches the whole process group: workers still starting up would print tracebacks.
    import signal

    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    from deepvision.apps.transfer.logreg import _start_workers_shielded

    try:
        _start_workers_shielded(2)
        masks = Parallel(n_jobs=2)(delayed(_blocked_signals)() for _ in range(4))
    finally:
        get_reusable_executor().shutdown(wait=True)
    stops = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    assert all(mask & stops == stops for mask in masks)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()  # this process still takes the stop
