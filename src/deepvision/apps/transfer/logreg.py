"""`deepvision logreg`: logistic regression with a grid search over C on an HDF5 feature file (docs/transfer.md).

The file's rows are already in a shuffled order (`deepvision features` shuffles before extracting), so
the first ⌊train_fraction·N⌋ rows train and the rest are held out, as the reference sliced them. The
grid search is scikit-learn's `GridSearchCV` (k-fold, parallel jobs); the best estimator, refitted on
the whole training part, is scored on the held-out rows with a classification report (precision, recall, F1,
support per class with the file's `label_names`) and a confusion matrix.

Solver: the reference era's scikit-learn used liblinear, one-vs-rest. The default here is lbfgs
(multinomial softmax), which needs more than the default 100 iterations on unscaled CNN features:
`max_iter` defaults to 1000 (raise it when logreg warns that the model did not converge, or pass `--standardize`
to scale the features, which makes lbfgs converge in far fewer iterations). `solver="liblinear"` gives
the reference's one-vs-rest fit (scikit-learn >= 1.8 needs it wrapped in OneVsRestClassifier).

The fitted model is saved as `model.npz`: plain arrays (coefficients, intercepts, classes, label names,
optional standardisation) plus JSON metadata, loaded with `allow_pickle=False`, so loading a model never
runs code (`apps/transfer/linear_model.py`: `LinearModel` predicts from it with numpy alone).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.apps.transfer.linear_model import LinearModel
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, same_file, written_whole
from deepvision.placement import (
    refuse_folder_of_images,
    refuse_mixed_reports,
    refuse_output_over_inputs,
    require_own_folder,
)
from deepvision.safeload import check_range, comma_items, spreadsheet_row

__all__ = ["LinearModel", "fit_logreg", "parse_grid", "read_features"]

DEFAULT_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
SOLVERS = ("lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga")


def parse_grid(spec: str | Sequence[float] | None) -> list[float]:
    """`C=0.01,0.1,1` (or `0.01,0.1,1`, or a sequence) -> [0.01, 0.1, 1.0]."""
    if spec is None:
        return list(DEFAULT_GRID)
    if isinstance(spec, str):
        key, sep, values = spec.partition("=")
        if not sep:
            key, values = "C", spec
        if key.strip() != "C":
            raise UserError(f"--grid searches the inverse regularisation C only (C=0.01,0.1,...), got '{key}'")
        try:
            grid = [float(v) for v in comma_items(values, "--grid", "value")]
        except ValueError:
            raise UserError(f"--grid values must be numbers, got '{values}'") from None
    else:
        grid = [float(v) for v in spec]
    if not grid or any(not np.isfinite(c) or c <= 0 for c in grid):
        raise UserError(f"--grid needs one or more positive C values, got {spec!r}")
    return grid


MAX_ITER = 10**7  # solver iterations; scikit-learn's solvers overflow a C int beyond 2^31 - 1


def _estimator(solver: str, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if solver not in SOLVERS:
        raise UserError(f"unknown solver '{solver}'; valid: {', '.join(SOLVERS)}")
    lr = LogisticRegression(solver=solver, max_iter=max_iter, random_state=seed)
    if solver == "liblinear":
        return OneVsRestClassifier(lr), "estimator__C", "ovr"
    return lr, "C", "multinomial"


def _start_workers_shielded(jobs: int) -> None:
    """Start joblib's worker processes for `jobs` with SIGINT and SIGTERM blocked in them.

    Ctrl+C reaches every process of the group, and workers caught while they start up would each print a
    KeyboardInterrupt traceback. They are started from a thread that blocks both signals, which the workers
    inherit; the grid search then reuses them, and a stop during the search still reaches this process,
    whose joblib ends the workers. A stop while they start waits for them to be up, then ends them.
    """
    import multiprocessing.resource_tracker

    from joblib import Parallel, delayed, effective_n_jobs
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.backend import resource_tracker

    # Started from here first: the standard library's tracker (Python 3.11) unblocks the signals of the thread
    # that starts it, which would expose the workers again.
    multiprocessing.resource_tracker.ensure_running()
    resource_tracker.ensure_running()

    def start() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        with contextlib.suppress(Exception):  # the search itself meets and reports whatever broke here
            Parallel(n_jobs=jobs)(delayed(int)(0) for _ in range(effective_n_jobs(jobs)))

    thread = threading.Thread(target=start, name="start-workers", daemon=True)
    thread.start()
    try:
        thread.join()
    except BaseException:
        thread.join()
        get_reusable_executor().shutdown(wait=True, kill_workers=True)
        raise


def _as_linear(best: Any, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind == "ovr":
        if len(best.estimators_) == 1:  # two classes: one binary problem
            est = best.estimators_[0]
            return est.coef_, est.intercept_, best.classes_
        coef = np.concatenate([e.coef_ for e in best.estimators_])
        intercept = np.concatenate([np.atleast_1d(e.intercept_) for e in best.estimators_])
        return coef, intercept, best.classes_
    return best.coef_, np.atleast_1d(best.intercept_), best.classes_


MAX_JOBS = 1024  # parallel fits; more processes than that only exhaust the machine


EXTRACTION_KEYS_IGNORED = ("data", "shuffle", "seed", "rows", "dtype")  # what may differ between two splits


MAX_FEATURE = 1e150  # larger values square to inf: the solver stops at once and the model never moves


def read_features(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features as float64 rows, labels, label names) of a feature file, every value checked."""
    from deepvision.data.hdf5 import read_hdf5_arrays

    x, y, names = read_hdf5_arrays(path, "features")
    if x.dtype.kind not in "biuf":
        raise UserError(f"{path}: features are {x.dtype} values; give numbers (`deepvision features` writes them)")
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=tuple(range(1, x.ndim))))
        raise UserError(f"{path}: {len(rows):,} row(s) hold NaN or infinite features (first: row {rows[0]}); "
                        f"re-extract the features")
    huge = np.abs(x) > MAX_FEATURE
    if huge.any():
        rows = np.flatnonzero(huge.any(axis=tuple(range(1, x.ndim))))
        raise UserError(f"{path}: {len(rows):,} row(s) hold features beyond ±{MAX_FEATURE:g} (first: row {rows[0]}, "
                        f"{x[rows[0]].flat[np.argmax(huge[rows[0]])]:g}), whose squares overflow; a classifier "
                        f"cannot be fitted to them, so re-extract the features")
    bad = np.flatnonzero((y < 0) | (y >= len(names)))
    if len(bad):
        raise UserError(f"{path}: label {y[bad[0]]} (row {bad[0]}) is outside 0..{len(names) - 1} "
                        f"({len(names)} label names)")
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise UserError(f"{path}: 'features' has no columns (shape {x.shape}); re-extract the features")
    return x.reshape(len(x), -1), y, list(names)


def _check_same_extraction(train: Path, test: Path, names: list[str], test_names: list[str], dim: int,
                           test_dim: int) -> None:
    """UserError unless `test` holds features of the same network, layer and classes as `train`, drawn from
    other data; a file without deepvision's record beside one with it is refused (nothing to compare)."""
    if same_file(train, test):
        raise UserError(f"--test {test} is the training file {train}; give the features of a separate split")
    if test_names != names:
        raise UserError(f"--test {test} has the label names {test_names[:6]}, {train} has {names[:6]}; extract "
                        f"both splits with the same classes")
    if test_dim != dim:
        raise UserError(f"--test {test} has {test_dim:,} features per row, {train} has {dim:,}; extract both "
                        f"splits with the same network, layer and --pool")
    from deepvision.inference.features import read_feature_info

    a, b = read_feature_info(train), read_feature_info(test)
    if bool(a) != bool(b):  # one record says what the other file must be; a file without one cannot be checked
        (bare, kept), flag = ((train, test), "") if b else ((test, train), "--test ")
        raise UserError(f"{flag}{bare} carries no deepvision extraction record, {kept} does; extract it with "
                        f"`deepvision features` and the options of {kept}, so the two can be compared")
    differ = sorted(k for k in (a.keys() | b.keys()) - set(EXTRACTION_KEYS_IGNORED) if a and b and a.get(k) != b.get(k))
    if differ:
        raise UserError(f"--test {test} was extracted differently from {train} ({', '.join(differ)} differ); "
                        f"extract both splits with the same `deepvision features` options")
    if a.get("data") and a.get("data") == b.get("data"):
        raise UserError(f"--test {test} and {train} were both extracted from {a['data']}; give the features "
                        f"of a separate split")


def fit_logreg(
    features: str | Path,
    out: str | Path | None = None,
    *,
    test: str | Path | None = None,
    train_fraction: float | None = None,
    grid: str | Sequence[float] | None = None,
    cv: int = 3,
    jobs: int = -1,
    solver: str = "lbfgs",
    max_iter: int = 1000,
    standardize: bool = False,
    seed: int = 42,
    quiet: bool = False,
) -> dict[str, Any]:
    """Grid-search C, score held-out rows, write the report and `model.npz` under `out`.

    Without `test`, the first `train_fraction` (0.75) of the rows train and the rest are held out; with
    `test` (a feature file of a separate split, same extraction), every row of `features` trains and the
    report is on `test`."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from deepvision.evaluation import metrics as M
    from deepvision.evaluation.plots import plot_confusion
    from deepvision.inference.features import read_feature_info

    say = (lambda *_: None) if quiet else print
    if test is not None and train_fraction is not None:
        raise UserError("--train-fraction splits FEATURES.h5 when there is no --test file; give one or the other")
    if train_fraction is None:
        train_fraction = 1.0 if test is not None else 0.75
    elif not 0.0 < train_fraction < 1.0:
        raise UserError(f"--train-fraction must be between 0 and 1, got {train_fraction}")
    if cv < 2:
        raise UserError(f"--cv must be at least 2 folds, got {cv}")
    check_range("--max-iter", max_iter, 1, MAX_ITER)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not (jobs == -1 or 1 <= jobs <= MAX_JOBS):
        raise UserError(f"--jobs must be a whole number from 1 to {MAX_JOBS:,}, or -1 for every core; got {jobs!r}")
    values = parse_grid(grid)
    features = Path(features)
    out_dir = Path(out) if out else features.with_name(f"{features.stem}-logreg")
    if out_dir.exists() and not out_dir.is_dir():  # said before the grid search, not after it
        raise UserError(f"--out {out_dir} is a file; give a folder for the model and its report")
    refuse_mixed_reports(out_dir, ("predictions.csv", "roc_pr.json"), "an evaluate report")
    files = {"model": out_dir / "model.npz", "metrics": out_dir / "metrics.json", "report": out_dir / "report.csv",
             "report_txt": out_dir / "report.txt", "confusion_csv": out_dir / "confusion_matrix.csv",
             "confusion_png": out_dir / "confusion_matrix.png", "cv_results": out_dir / "cv_results.csv"}
    refuse_folder_of_images(out_dir, [files["confusion_png"].name])  # its PNG would join a folder of images
    for target in files.values():  # an input named like an output would be replaced
        refuse_output_over_inputs(target, [features] + ([test] if test is not None else []))
    # never a folder of the user's files (the features themselves may lie there)
    require_own_folder(out_dir, "metrics.json", '{\n  "features":', "logreg",
                       inputs=[features] + ([test] if test is not None else []))
    estimator, key, kind = _estimator(solver, max_iter, seed)
    x, y, names = read_features(features)
    feature_info = read_feature_info(features)  # a damaged attribute is said before any fit
    if test is not None:
        test = Path(test)
        tx, ty, test_names = read_features(test)
        _check_same_extraction(features, test, names, test_names, x.shape[1], tx.shape[1])
        if len(y) < cv:
            raise UserError(f"{features} has {len(y)} rows: too few for {cv}-fold CV")
        n, i = len(y) + len(ty), len(y)
        x, y = np.concatenate([x, tx]), np.concatenate([y, ty])  # rows past i are the test split's
    else:
        n = len(y)
        i = int(train_fraction * n)
        if i < cv or n - i < 1:
            raise UserError(f"{features} has {n} rows: too few for a {train_fraction:g} train split and "
                            f"{cv}-fold CV")
    counts = np.bincount(y[:i], minlength=len(names))
    present = counts[counts > 0]
    if len(present) < 2:
        raise UserError(f"the training rows of {features} hold a single class; a classifier needs two or more")
    if present.min() < cv:  # stratified folds need every class in every fold
        rare = names[int(np.flatnonzero(counts == present.min())[0])]
        raise UserError(f"class {rare!r} has {int(present.min())} training row(s) in {features}, too few for "
                        f"{cv}-fold cross-validation; lower --cv (at least 2) or add rows")
    folds = StratifiedKFold(cv, shuffle=False)
    x_train = x[:i]
    mean = scale = None
    if standardize:
        mean = x_train.mean(axis=0)
        scale = x_train.std(axis=0)
        scale[scale == 0] = 1.0
    fit_x = (x_train - mean) / scale if standardize else x_train
    if test is None:
        say(f"[INFO] {n:,} rows x {x.shape[1]:,} features; training on the first {i:,}, testing on the last "
            f"{n - i:,}")
    else:
        say(f"[INFO] {x.shape[1]:,} features; training on the {i:,} rows of {features.name}, testing on the "
            f"{n - i:,} rows of {test.name}")
    say(f"[INFO] tuning hyperparameters: C in {', '.join(f'{c:g}' for c in values)} ({cv}-fold, solver {solver})")
    search = GridSearchCV(estimator, {key: values}, cv=folds, n_jobs=jobs, refit=False)
    t0 = time.perf_counter()
    if jobs != 1:
        _start_workers_shielded(jobs)
    with warnings.catch_warnings():  # the filter reaches the worker processes: no library text from the folds
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(fit_x, y[:i])
    if jobs != 1:  # joblib keeps its worker processes for reuse: a finished fit leaves none behind
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    best = clone(estimator).set_params(**search.best_params_)
    with warnings.catch_warnings(record=True) as caught:  # the model kept: said in one line of ours
        warnings.simplefilter("always", ConvergenceWarning)
        best.fit(fit_x, y[:i])
    fit_seconds = time.perf_counter() - t0
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    best_c = float(search.best_params_[key])
    say(f"[INFO] best hyperparameters: {{'C': {best_c:g}}} (CV accuracy {search.best_score_:.4f})")
    coef, intercept, classes = _as_linear(best, kind)
    info = {"features": feature_info, "features_file": str(features.resolve()), "C": best_c,
            "solver": solver, "max_iter": max_iter, "standardize": standardize, "train_rows": i, "test_rows": n - i,
            "test_file": str(test.resolve()) if test is not None else None}
    model = LinearModel(np.asarray(coef, np.float64), np.asarray(intercept, np.float64), np.asarray(classes),
                        list(names), kind, mean, scale, info)
    probs_known = model.predict_proba(x[i:])
    probs = np.zeros((n - i, len(names)))
    probs[:, np.asarray(classes, dtype=np.int64)] = probs_known  # columns for every label name
    labels = y[i:]
    report = M.per_class_report(probs, labels, names)
    cm = M.confusion(probs, labels, len(names))
    accuracy = float((probs.argmax(1) == labels).mean())
    from sklearn.metrics import classification_report

    text = classification_report(labels, probs.argmax(1), labels=list(range(len(names))), target_names=names,
                                 zero_division=0, digits=2)
    say(text.rstrip("\n"))
    say(f"[INFO] {'held-out' if test is None else 'test'} accuracy: {accuracy * 100:.2f}% ({n - i:,} rows"
        f"{'' if test is None else ' of ' + test.name})")
    if unconverged:
        say(f"[WARN] the model reached max_iter={max_iter} before converging; raise --max-iter or use "
            f"--standardize")
    # the model and report land whole or not at all: a stop or a failure leaves the folder as it was
    with written_whole(out_dir, last=files["metrics"].name, stale=[p.name for p in files.values()]) as tmp:
        plot_confusion(cm, names, tmp / files["confusion_png"].name)
        atomic_write_text(tmp / files["confusion_csv"].name, _table([["true\\predicted", *names],
                                                                   *[[c, *row] for c, row in zip(names, cm.tolist())]]))
        atomic_write_text(tmp / files["report"].name, _report_csv(report, names))
        atomic_write_text(tmp / files["report_txt"].name, text)
        cv_rows = [["C", "mean_test_score", "std_test_score", "rank"]]
        res = search.cv_results_
        for c, m, s, r in zip(res[f"param_{key}"], res["mean_test_score"], res["std_test_score"],
                              res["rank_test_score"]):
            cv_rows.append([f"{float(c):g}", f"{m:.6f}", f"{s:.6f}", int(r)])
        atomic_write_text(tmp / files["cv_results"].name, _table(cv_rows))
        model.save(tmp / files["model"].name)
        result = {"features": str(features), "test_file": str(test) if test is not None else None, "rows": n,
                  "dim": int(x.shape[1]), "train_rows": i, "test_rows": n - i,
                  "best_params": {"C": best_c}, "cv_accuracy": float(search.best_score_), "accuracy": accuracy,
                  "solver": solver, "max_iter": max_iter, "standardize": standardize,
                  "unconverged_fits": unconverged, "fit_seconds": fit_seconds,
                  "per_class": {c: report[c] for c in names if c in report},
                  "macro_avg": report.get("macro avg"), "weighted_avg": report.get("weighted avg"),
                  "confusion_matrix": cm.tolist(), "files": {k: str(v) for k, v in files.items()}}
        atomic_write_text(tmp / files["metrics"].name, json.dumps(result, indent=2) + "\n")
    say(f"[INFO] model and report written to {out_dir}")
    return result


def _table(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(spreadsheet_row(row) for row in rows)  # label names from outside
    return buf.getvalue()


def _report_csv(report: dict[str, Any], names: list[str]) -> str:
    rows: list[list[Any]] = [["class", "precision", "recall", "f1", "support"]]
    for name in [*names, "macro avg", "weighted avg"]:
        r = report.get(name)
        if r:
            rows.append([name, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1-score']:.4f}",
                         int(r["support"])])
    return _table(rows)
