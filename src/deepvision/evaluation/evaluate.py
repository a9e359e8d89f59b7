"""`deepvision evaluate`: score a trained run on a split (or new data) and write a full report.

Why one module of ~450 lines: choosing the data (the run's own split, checked against what the run
recorded, or other data matched to its classes), predicting and writing the report are one path whose
refusals must all come before the report folder is touched.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepvision.config.schema import MAX_BATCH, Config
from deepvision.data.dataset_loader import DatasetSource, describe_sample
from deepvision.data.loader import BatchLoader
from deepvision.data.loaders import build_loaders
from deepvision.data.lst import read_lst
from deepvision.data.preprocess import Preprocess
from deepvision.data.protocols import check_skip_limit
from deepvision.data.source_registry import resolve_path
from deepvision.data.sources import (
    DATA_FORMS,
    DataBundle,
    TensorSplit,
    adapt_tensor_split,
    data_config_for_path,
    load_data,
)
from deepvision.data.tensor_loader import TensorSource
from deepvision.data.tensors import stored_size
from deepvision.engine.distributed import resolve_device
from deepvision.engine.reporting import PhaseProgress
from deepvision.engine.resolve import refuse_output_in_data
from deepvision.engine.tasks import get_task
from deepvision.engine.tasks.age import is_age_buckets
from deepvision.engine.tasks.base import Meter
from deepvision.engine.tasks.classification import ClassificationMeter, shared_samples
from deepvision.engine.trainer import amp_dtype
from deepvision.errors import UserError
from deepvision.evaluation import metrics as M
from deepvision.evaluation.plots import plot_binary, plot_confusion
from deepvision.evaluation.report_folder import ROLES, refuse_other_runs_folder, report_folder, slug
from deepvision.evaluation.tencrop import TenCropTransform, ten_crop
from deepvision.fileio import atomic_write_text, written_whole
from deepvision.models.outputs import class_probabilities
from deepvision.placement import (
    refuse_folder_of_images,
    refuse_mixed_reports,
    refuse_output_folder_over_inputs,
    refuse_output_inside,
    require_own_folder,
)
from deepvision.runs.loading import LoadedRun, load_run, refuse_member_change, refuse_split_edit
from deepvision.runs.rundir import RunDir
from deepvision.safeload import bare_name_here, check_choice, check_range, spreadsheet_cell, spreadsheet_row

# --crops: the views averaged per image -> (what the progress line says, the report folder's suffix)
REPORT_FILES = {"metrics": "metrics.json", "report": "report.csv", "confusion_csv": "confusion_matrix.csv",
                "confusion_png": "confusion_matrix.png", "predictions": "predictions.csv",
                "curves_json": "roc_pr.json", "curves_png": "roc_pr.png"}  # the curves: two classes only
LOGREG_ONLY = ("model.npz", "cv_results.csv", "report.txt")  # what `logreg` writes and evaluate does not
CROPS = {1: ("", ""), 2: (" (with the mirror)", "-flip"), 10: (" (10-crop oversampling)", "-10crop")}


def _check_labels_fit(dataset: Any, n_classes: int, what: str) -> None:
    """Refuse, before predicting, data whose class labels (`targets`, when the dataset has them) go beyond
    the run's classes: the model has no output for them."""
    targets = getattr(dataset, "targets", None)
    if targets is None or not len(targets):
        return
    targets = np.asarray(targets)
    beyond = np.flatnonzero(targets >= n_classes)
    if len(beyond):
        k = int(beyond[0])  # named as the data's own messages name it: its record or file, else "sample k" from 0
        sample = describe_sample(dataset, k, f"the {what} data's sample {k}")
        raise UserError(f"{sample} has label {int(targets[k])}, but the run has "
                        f"{n_classes} classes (labels 0..{n_classes - 1}); it was labelled for another model")


def refuse_split_name_as_path(data: str | None) -> None:
    """Refuse `--data test` (train, val) where a folder or file ./test is here too: the run's split and the
    user's data are spelt alike, and the split would be scored without a word about the folder."""
    kind = bare_name_here(data) if isinstance(data, str) and data in ROLES else None
    if kind:
        raise UserError(f"'{data}' is the run's {data} split and a {kind} in this folder; give --data ./{data} for "
                        f"the {kind}, or evaluate from another folder for the split")


def _data_config_for(cfg: Config, data: str | None) -> tuple[Config, str]:
    """A config whose data section yields the split to evaluate, and that split's role."""
    cfg = copy.deepcopy(cfg)
    if data is None or data in ROLES:
        return cfg, data or "auto"
    if not Path(data).exists():
        raise UserError(f"--data must be train, val, test or a path to {DATA_FORMS}; {data} not found")
    cfg.data.options.pop("labels", None)  # the run's labels file names its own data's classes, not these
    cfg.data = data_config_for_path(cfg.data, data, image_root=cfg.data.options.get("image_root"))
    return cfg, "train"


def _refuse_report_over_listed_images(out: str | Path, list_file: str | Path, root: str | None) -> None:
    """Refuse, before any image is read, a report folder that holds images the .lst names (the folder of
    one of them, or a report file that is one): the report would replace them or mix with them."""
    base = Path(root) if root else Path(list_file).parent
    images = [base / entry.path for entry in read_lst(list_file)]  # an absolute entry stays as it is
    refuse_output_folder_over_inputs(out, images, [Path(out) / name for name in REPORT_FILES.values()])


FILE_SOURCES = ("folder", "lst", "rec", "hdf5")  # sources whose samples are files a run can name again


def _trained_from(run_cfg: Config, data: str | Path) -> Path | None:
    """The run's training file or folder when `data` is that same file or folder (by identity: a link to it
    too), or the list a record file beside it was packed from (`X.rec` and `X.lst`, as `im2rec` writes
    them), else None; training warns of a val split that holds training images in the same way."""
    if run_cfg.data.source not in FILE_SOURCES or not run_cfg.data.train:
        return None
    trained = resolve_path(run_cfg.data.root, run_cfg.data.train)
    given = Path(data).with_suffix(".rec") if Path(data).suffix == ".idx" else Path(data)
    packed = {".rec": ".lst", ".lst": ".rec"}.get(given.suffix)
    for path in (given, *([given.with_suffix(packed)] if packed else [])):
        with contextlib.suppress(OSError):  # either is missing or unreadable: nothing to compare
            if os.path.samefile(path, trained):
                return trained
    return None


def _training_samples_in(run_cfg: Config, split: Any) -> int:
    """How many samples of `split` the run trained on (`shared_samples`): the run's training split is listed
    again from its config, carved parts included, without decoding an image; 0 when it cannot be read."""
    if run_cfg.data.source not in FILE_SOURCES:
        return 0
    try:
        train = load_data(run_cfg.data, roles=("train",)).train
    except (UserError, OSError):  # the training data moved or changed: nothing to compare
        return 0
    return shared_samples(train, split)


def collect_probs(loaded: LoadedRun, loader, device: torch.device, crops: int = 1,
                  meter: Meter | None = None, progress: PhaseProgress | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and labels for every sample of `loader`, in loader order.

    Batches go through the run's task exactly as training-time validation sends them (`to_device`,
    then `eval_outputs` under the run's autocast setting), so a `meter` (single crop) reports the same
    loss and accuracies for the same checkpoint. With crops=10 the loader yields raw (uncropped) batches,
    or batches of 10 crops per sample, and the probabilities of the 10 crops are averaged; with crops=2
    those of each image and its mirror. `progress`
    advances by one per batch.
    """
    task = get_task(loaded.cfg.task)(loaded.cfg)
    task.setup(loaded.pre, device, channels_last=False)
    amp = amp_dtype(loaded.cfg.train.amp, device)
    probs, labels = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        for x, y in loader:
            if crops == 10 and x.dim() == 4:  # in-memory tensors: crop on the device
                x = ten_crop(x.to(device, non_blocking=True), loaded.pre.size)
            elif crops == 2:  # the image and its mirror
                x = torch.stack([x, x.flip(-1)], 1)
            if x.dim() == 5:
                n, k = x.shape[:2]
                xs, ys = task.to_device((x.flatten(0, 1), y.repeat_interleave(k)), device)
                logits, _ = task.eval_outputs(loaded.model, xs, ys)
                probs.append(class_probabilities(logits).view(n, k, -1).mean(1).cpu())
            else:
                xs, ys = task.to_device((x, y), device)
                logits, loss = task.eval_outputs(loaded.model, xs, ys)
                if meter is not None:
                    meter.update(logits, ys, loss)
                probs.append(class_probabilities(logits).cpu())
            labels.append(y.cpu())
            if progress is not None:
                progress.advance(1)
    if not probs:
        return np.zeros((0, len(loaded.classes)), np.float32), np.zeros(0, np.int64)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy().astype(np.int64)


def evaluate_run(
    run_dir: str | Path,
    *,
    epoch: int | None = None,
    data: str | None = None,
    which: str = "best",
    batch_size: int | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    crops: int = 1,
    quiet: bool = False,
    skip_corrupt: bool = False,
) -> dict[str, Any]:
    """Evaluate a run and write metrics.json, report.csv, confusion matrix, (binary) ROC/PR.

    Returns the metrics dict. Every sample is scored exactly once (no padded batches). `crops=10`
    averages the probabilities of the 10-crop oversampling (corners + centre, and their mirrors), `crops=2`
    those of the centre view and its mirror (test-time flip).
    `skip_corrupt` scores only the readable samples (the report counts them) instead of stopping at
    the first unreadable record or image.
    """
    check_choice("--crops", crops, CROPS)
    if batch_size is not None:
        check_range("--batch-size", batch_size, 1, MAX_BATCH)
    if out is None:
        RunDir(run_dir).folder("eval", create=False)  # a link planted as eval/ is refused before any work
    else:
        refuse_mixed_reports(out, LOGREG_ONLY, "a logreg model and report")
        if data is not None and data not in ROLES:
            refuse_output_inside(out, data, "the data folder")
    run = RunDir.open(run_dir)
    if out is not None:
        refuse_other_runs_folder(out, run)
    run_cfg = run.read_config()
    if out is not None:  # the report's PNGs would become images of the run's own data, or of any other
        refuse_output_in_data(run_cfg, out)
        refuse_folder_of_images(out, [*(n for n in REPORT_FILES.values() if n.endswith(".png")), "pr_curves.png"])
    if run_cfg.task == "detection":  # mAP, per-class AP, PR curves
        from deepvision.evaluation.detection import evaluate_detection_run

        ignored = [o for o, given in (("--crops", crops != 1), ("--skip-corrupt", skip_corrupt)) if given]
        if ignored:  # taken, they would be ignored without a word: the report would not say so
            given = " and ".join(ignored)
            raise UserError(f"{given} {'goes' if len(ignored) == 1 else 'go'} with classification runs; {run.path} "
                            f"is a detection run (one view per image, every image read): leave {given} out")
        if out is not None:  # a folder of the user's files is never written into; an earlier report is replaced
            require_own_folder(out, "metrics.json", '{\n  "split":', "evaluate")

        loaded = load_run(run_dir, epoch=epoch, which=which, device=resolve_device(device))
        if batch_size:
            loaded.cfg.data.eval_batch_size = batch_size
        own_split = data is None or data in ROLES  # else: another built dataset's test split
        report = evaluate_detection_run(loaded, (data or "test") if own_split else "test",
                                        data=None if own_split else data, out=out)
        if not quiet:
            print("\n".join(report.lines()))
        return report.metrics()
    dev = resolve_device(device)
    say = (lambda *_: None) if quiet else print
    # the data is read (and refused, in one line) before the model loads and before anything is printed
    cfg, role = _data_config_for(run_cfg, data)
    recorded = None
    if data in (None, *ROLES):  # the run's own split: drawn as the checkpoint's were, never as an edit says
        recorded = refuse_split_edit(run, run_cfg, run.resolve_checkpoint(epoch, which))
    if out is not None and data not in (None, *ROLES) and cfg.data.source == "lst":
        _refuse_report_over_listed_images(out, cfg.data.train, cfg.data.root)
    if out is not None:  # a folder of the user's files is never written into; an earlier report is replaced
        require_own_folder(out, "metrics.json", '{\n  "run":', "evaluate")
    cfg.data.channels = run.read_preprocess().channels  # new data is read the way the model was trained
    cfg.data.skip_corrupt = cfg.data.skip_corrupt or skip_corrupt
    bundle: DataBundle = load_data(cfg.data, roles=("val", "test") if role == "auto" else (role,))
    if role == "auto":
        role = "test" if bundle.test is not None else "val" if bundle.val is not None else None
        if role is None:
            raise UserError("the run's data has no test or val split; pass --data train or a data path")
    if bundle.role(role) is None:
        present = load_data(cfg.data, roles=ROLES)  # only to name the splits the run does have
        raise UserError(f"the run's data has no '{role}' split; choose from "
                        f"{', '.join(r for r in ROLES if present.role(r) is not None)} (--data), or give "
                        f"{DATA_FORMS}")
    if crops == 10:  # decided from the stored preprocessing, before the model loads
        _check_ten_crop(bundle.role(role), run.read_preprocess())
    loaded = load_run(run_dir, epoch=epoch, which=which, device=dev)  # refused in one line, before any output
    own = data is None or data in ROLES  # the run's own split, however spelled: never relabelled by name
    if not own and (trained := _trained_from(run_cfg, data)) is not None:
        say(f"[WARN] {data} is the data the run trained from ({trained}): its score does not measure "
            f"generalisation")
    elif not own and (shared := _training_samples_in(run_cfg, bundle.role(role))):
        say(f"[WARN] {shared:,} of the {len(bundle.role(role)):,} images of {data} are images the run trained on: "
            f"its score does not measure generalisation")
    unnamed = [str(i) for i in range(len(bundle.classes))]  # an HDF5 file without label_names, a list without
    if own and bundle.classes not in (loaded.classes, unnamed):
        shown = [", ".join(c[:4]) + (", ..." if len(c) > 4 else "") for c in (bundle.classes, loaded.classes)]
        raise UserError(f"the run's data now names the classes {shown[0]}, but the run was trained on "
                        f"{shown[1]}: its class folders or labels file changed since training; restore them, "
                        f"or give other data as a path (--data PATH)")
    if own:  # the run's own split holds the members it held when the run was trained
        refuse_member_change(run_cfg, recorded, bundle, (role,), run.resolve_checkpoint(epoch, which))
    if cfg.data.source == "folder" and not own and bundle.classes != loaded.classes:
        bundle = _remap_classes(bundle, role, loaded.classes, data)
    named = cfg.data.source in ("hdf5", "lst", "rec")  # a labels file: label numbers taken as the run's classes
    if named and not own and bundle.classes not in (loaded.classes, unnamed):
        bundle = _remap_classes(bundle, role, loaded.classes, data, "class(es)")
    _check_labels_fit(bundle.role(role), len(loaded.classes), role if data in (None, *ROLES) else str(data))
    say(f"[INFO] model loaded from {loaded.checkpoint}")  # after the data's classes fit: a refusal stays one line
    if batch_size:
        cfg.data.eval_batch_size = batch_size
    # score the chosen split as evaluation data: no augmentation, no shuffling, no padding
    eval_bundle = DataBundle(None, None, bundle.role(role), bundle.classes, bundle.channels, bundle.size)
    if crops == 10:
        loader = _ten_crop_loader(cfg, eval_bundle.test, loaded, dev)
    else:
        loader = build_loaders(cfg.data, eval_bundle, loaded.pre, seed=cfg.train.seed, device=dev,
                               roles=("test",))["test"]
    say(f"[INFO] predicting on {role if data in (None, *ROLES) else data} data"
        + CROPS[crops][0] + "...")
    loader.skips.warn, loader.skips.limit = False, None  # said and bounded below, in evaluate's own words
    meter = ClassificationMeter(dev, loss_is_sum=True) if crops == 1 else None
    progress = PhaseProgress("evaluate", len(loader), stream=sys.stdout, bar=None) if not quiet else None
    try:
        probs, labels = collect_probs(loaded, loader, dev, crops, meter, progress)
    finally:
        if progress is not None:
            progress.close()
    classes = loaded.classes
    if not len(labels):
        what = role if data in (None, *ROLES) else str(data)
        raise UserError(f"no sample of the {what} data could be read"
                        + (" (every one was unreadable and skipped)" if cfg.data.skip_corrupt else "")
                        + "; nothing to evaluate, no report written")
    if skipped := loader.skips.epoch:  # --skip-corrupt: the run's data.max_skipped_fraction bounds it
        what = role if data in (None, *ROLES) else str(data)
        check_skip_limit(len(skipped), len(labels), cfg.data.max_skipped_fraction, what, f"first: {skipped[0]}",
                         training=False)
        print(f"[WARN] skipped {len(skipped)} unreadable sample(s) of {len(skipped) + len(labels)} (--skip-corrupt; "
              f"first: {skipped[0]}); scored the rest", file=sys.stderr)
    if len(labels) and labels.max() >= probs.shape[1]:
        raise UserError(f"the data has label {int(labels.max())} but the model predicts {probs.shape[1]} classes; "
                        f"it was labelled for another model")
    result: dict[str, Any] = {
        "run": str(loaded.run.path), **({"run_id": loaded.run.run_id} if loaded.run.run_id else {}),
        "checkpoint": str(loaded.checkpoint), "epoch": loaded.epoch,
        "data": role if data in (None, *ROLES) else str(data), "samples": int(len(labels)), "crops": crops,
        # rank-5 is omitted (None) with 5 classes or fewer, where it is always 100%
        "rank1": M.rank_k(probs, labels, 1), "rank5": M.rank_k(probs, labels, 5) if len(loaded.classes) > 5 else None,
        "cross_entropy": M.cross_entropy(probs, labels),
    }
    if meter is not None and len(labels):  # the numbers training-time validation reports, from the logits
        scores = meter.compute()
        result.update(rank1=scores["acc"], rank5=scores["top5"], cross_entropy=scores["loss"])
    if is_age_buckets(classes):  # Adience age: one-off accuracy too
        result["one_off"] = M.one_off(probs, labels, classes)
    report = M.per_class_report(probs, labels, classes)
    cm = M.confusion(probs, labels, len(classes))
    default = f"{slug(result['data'])}-{loaded.checkpoint.stem}{CROPS[crops][1]}"
    out_dir = Path(out) if out else report_folder(loaded.run, default, result["data"])
    # the report lands whole or not at all: a stop or a failure leaves the folder as it was (no new folder)
    with written_whole(out_dir, last=REPORT_FILES["metrics"], stale=REPORT_FILES.values()) as tmp:
        files = {key: out_dir / name for key, name in REPORT_FILES.items() if not key.startswith("curves")}
        plot_confusion(cm, classes, tmp / REPORT_FILES["confusion_png"])
        atomic_write_text(tmp / REPORT_FILES["confusion_csv"], _matrix_csv(cm, classes))
        atomic_write_text(tmp / REPORT_FILES["report"], _report_csv(report, classes))
        atomic_write_text(tmp / REPORT_FILES["predictions"], _predictions_csv(probs, labels, classes))
        if len(classes) == 2:
            curves = M.binary_curves(probs, labels)
            result["roc_auc"], result["average_precision"] = curves["roc_auc"], curves["average_precision"]
            if curves.get("roc"):
                files.update({key: out_dir / REPORT_FILES[key] for key in ("curves_json", "curves_png")})
                atomic_write_text(tmp / REPORT_FILES["curves_json"], json.dumps(curves) + "\n")
                plot_binary(curves, classes[1], tmp / REPORT_FILES["curves_png"])
        result["per_class"] = {c: report[c] for c in classes if c in report}
        result["macro_avg"] = report.get("macro avg")
        result["confusion_matrix"] = cm.tolist()
        result["files"] = {k: str(v) for k, v in files.items()}
        atomic_write_text(tmp / REPORT_FILES["metrics"], json.dumps(result, indent=2) + "\n")
    say(f"[INFO] rank-1: {result['rank1'] * 100:.2f}%")
    if "one_off" in result:
        say(f"[INFO] one-off: {result['one_off'] * 100:.2f}%")
    if result["rank5"] is not None:
        say(f"[INFO] rank-5: {result['rank5'] * 100:.2f}%")
    say(f"[INFO] cross-entropy: {abs(result['cross_entropy']):.4f}")
    if result.get("roc_auc") is not None:
        say(f"[INFO] ROC AUC: {result['roc_auc']:.4f}  average precision: {result['average_precision']:.4f}")
    say(f"[INFO] report written to {out_dir}")
    return result


def _remap_classes(bundle: DataBundle, role: str, classes: list[str], data: str, what: str = "class folder(s)"
                   ) -> DataBundle:
    """Data whose classes (folders, an HDF5 file's label names, a list's or record's labels file) are a subset
    of the run's: relabel by name."""
    spelled = [unicodedata.normalize("NFC", c) for c in classes]  # 'café' as macOS spells a folder is the class
    unknown = [c for c in bundle.classes if unicodedata.normalize("NFC", c) not in spelled]
    if unknown:
        raise UserError(f"{what} {', '.join(unknown[:5])} of {data} are not classes of this run "
                        f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''})")
    split = bundle.role(role)
    index = np.array([spelled.index(unicodedata.normalize("NFC", c)) for c in bundle.classes])
    if isinstance(split, TensorSplit):
        split.labels = torch.as_tensor(index[split.labels.numpy()], dtype=torch.int64)
    elif hasattr(split, "file"):  # a record file (opened for this evaluation alone): its headers' labels
        labels = split.file.labels.copy()
        labels[:, 0] = index[labels[:, 0].astype(np.int64)]
        split.file.labels = labels
    else:
        split.targets = index[np.asarray(split.targets)]
    return DataBundle(bundle.train, bundle.val, bundle.test, list(classes), bundle.channels, bundle.size)


def _check_ten_crop(split, pre: Preprocess) -> None:
    """Refuse 10-crop where the run's preprocessing leaves no room to crop: in-memory images stored at the
    model input's size, or image files without data.resize."""
    if isinstance(split, TensorSplit):
        if stored_size(*split.images.shape[-2:], pre.size, pre.resize, pre.crop) == tuple(pre.size):
            raise UserError("10-crop needs images larger than the model input: set data.resize (e.g. 256 for a "
                            "224 input) when training")
    elif not pre.resize:
        raise UserError("10-crop needs data.resize (the shorter side before cropping, e.g. 256 for a 224 input)")


def _ten_crop_loader(cfg: Config, split, loaded: LoadedRun, device: torch.device):
    """Batches of uncropped images (in-memory data) or of 10 crops per sample (files/records)."""
    pre = loaded.pre
    bs = cfg.data.eval_batch_size or cfg.data.batch_size
    if isinstance(split, TensorSplit):
        stored = adapt_tensor_split(split, pre.channels, pre.size, pre.resize, pre.crop)
        return BatchLoader(TensorSource(stored.images, stored.labels, device=device), bs, training=False)
    return BatchLoader(DatasetSource(split, TenCropTransform(pre), skip_errors=cfg.data.skip_corrupt), bs,
                       training=False, workers=cfg.data.workers)


def _matrix_csv(cm: np.ndarray, classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(spreadsheet_row(["true\\predicted", *classes]))
    for name, row in zip(classes, cm.tolist()):
        w.writerow([spreadsheet_cell(name), *row])
    return buf.getvalue()


def _report_csv(report: dict[str, Any], classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "precision", "recall", "f1", "support"])
    for name in [*classes, "macro avg", "weighted avg"]:
        r = report.get(name)
        if r:
            w.writerow([spreadsheet_cell(name), f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                        f"{r['f1-score']:.4f}", int(r["support"])])
    return buf.getvalue()


def _predictions_csv(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "label", "predicted", "probability"])
    pred = probs.argmax(1)
    for i, (y, p) in enumerate(zip(labels.tolist(), pred.tolist())):
        w.writerow([i, spreadsheet_cell(classes[y]), spreadsheet_cell(classes[p]), f"{probs[i, p]:.6f}"])
    return buf.getvalue()
