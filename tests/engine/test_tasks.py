"""The task interface: the trainer runs any registered task; classification's numbers are the same in
training-time validation and in `evaluate`; callbacks receive the named events."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepvision.api import evaluate, train
from deepvision.config import build_config
from deepvision.engine.callbacks import Callback
from deepvision.engine.distributed import DistInfo
from deepvision.engine.resolve import resolve_run
from deepvision.engine.tasks import get_task, register_task, task_names
from deepvision.engine.tasks.classification import ClassificationMeter, ClassificationTask
from deepvision.engine.trainer import Trainer
from deepvision.errors import UserError
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def test_classification_is_registered_and_unknown_tasks_are_one_line_errors():
    assert "classification" in task_names() and get_task("classification") is ClassificationTask
    with pytest.raises(UserError, match="unknown task 'segmentation'"):
        resolve_run(build_config({**tiny_config(1), "task": "segmentation"}))


def test_resolve_run_leaves_the_config_alone_and_fills_in_the_run():
    cfg = build_config(tiny_config(1))
    resolved = resolve_run(cfg)
    assert cfg.model.num_classes is None and cfg.checkpoint.prefix is None and cfg.checkpoint.monitor is None
    r = resolved.cfg
    assert r.model.num_classes == 10 and r.model.in_channels == 1 and r.data.channels == 1
    assert r.checkpoint.prefix == "lenet" and r.checkpoint.monitor == "val_acc"
    assert resolved.classes == [str(i) for i in range(10)] and resolved.pre.size == (28, 28)
    with pytest.raises(UserError, match="checkpoint.monitor 'val_map' is not a metric"):
        resolve_run(build_config({**tiny_config(1), "checkpoint": {"monitor": "val_map"}}))


def test_meter_matches_cross_entropy_and_topk_of_logits():
    torch.manual_seed(0)
    logits, y = torch.randn(50, 7) * 4, torch.randint(0, 7, (50,))
    m = ClassificationMeter(torch.device("cpu"), topk=3, loss_is_sum=True)
    for i in range(0, 50, 16):
        m.update(logits[i:i + 16], y[i:i + 16], F.cross_entropy(logits[i:i + 16], y[i:i + 16], reduction="sum"))
    got = m.compute()
    assert got["count"] == 50
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert got["acc"] == pytest.approx((logits.argmax(1) == y).double().mean().item(), abs=1e-12)
    top3 = (logits.topk(3, 1).indices == y[:, None]).any(1).double().mean().item()
    assert got["top5"] == pytest.approx(top3, abs=1e-12)


def test_validation_and_evaluate_compute_the_same_numbers(tmp_path):
    """One metrics path: history.csv's val_* and `evaluate --data val` agree for the same checkpoint
    (formerly evaluate took the cross-entropy of clipped probabilities: 277.63 vs 8.66)."""
    cfg = tiny_config(1, max_samples=400)
    cfg["optim"]["lr"] = 2.0  # a diverged, over-confident model: where clipped probabilities went wrong
    result = train(cfg, out=tmp_path, name="m")
    row = result.history[-1]
    report = evaluate(result.run_dir, data="val", which="last", quiet=True)
    assert report["samples"] == 359  # the digits validation split (20% of 1,797)
    assert report["rank1"] == row["val_acc"] and report["rank5"] == row["val_top5"]
    assert report["cross_entropy"] == pytest.approx(row["val_loss"], rel=1e-6)
    assert math.isfinite(report["cross_entropy"])


class _Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_train_start(self) -> None:
        self.events.append(("train_start",))

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.events.append(("epoch_start", epoch, steps))

    def on_train_epoch_end(self, epoch, train, seconds) -> None:
        self.events.append(("train_epoch_end", epoch, sorted(train)))

    def on_epoch_end(self, epoch, logs) -> None:
        self.events.append(("epoch_end", epoch, logs.epoch, logs.row()["val_acc"] is not None))

    def on_train_end(self) -> None:
        self.events.append(("train_end",))


def test_custom_callbacks_get_the_events_and_checkpoints_are_still_written(tmp_path):
    rec = _Recorder()
    resolved = resolve_run(build_config(tiny_config(2, max_samples=200)))
    run = RunDir.create(tmp_path, "cb")
    trainer = Trainer(resolved, run, dist=DistInfo(), device=torch.device("cpu"), callbacks=[rec])
    trainer.fit()
    steps = len(trainer.loaders["train"])
    assert rec.events == [("train_start",), ("epoch_start", 0, steps), ("train_epoch_end", 0, ["acc", "count",
                          "loss", "top5"]), ("epoch_end", 0, 1, True), ("epoch_start", 1, steps),
                          ("train_epoch_end", 1, ["acc", "count", "loss", "top5"]), ("epoch_end", 1, 2, True),
                          ("train_end",)]
    assert (run.checkpoints / "last.pt").is_file() and (run.checkpoints / "lenet-0002.pt").is_file()
    assert not run.history_path.exists()  # the history writer was not among the chosen callbacks


def test_a_new_task_is_a_module_and_a_registry_entry(tmp_path):
    """A regression task on the same data: its own loss, metrics and history columns; the loop is untouched."""

    class MeanAbsMeter:
        def __init__(self) -> None:
            self.total, self.n, self._mark = 0.0, 0, (0.0, 0)

        def update(self, outputs, targets, loss):
            self.total += float((outputs.argmax(1).float() - targets.float()).abs().sum())
            self.n += len(targets)

        def mark(self):
            self._mark = (self.total, self.n)

        def compute(self, distributed=False, since_mark=False):
            total, n = (self.total - self._mark[0], self.n - self._mark[1]) if since_mark else (self.total, self.n)
            return {"mae": total / max(n, 1), "count": n}

    @register_task("digit_distance")
    class DigitDistance(ClassificationTask):
        train_metrics = ("mae",)
        val_metrics = ("mae",)
        default_monitor = "val_mae"
        minimize = ("mae",)

        def meter(self, device, phase):
            return MeanAbsMeter()

    try:
        cfg = {**tiny_config(2, max_samples=300), "task": "digit_distance"}
        result = train(cfg, out=tmp_path, name="reg")
        run = RunDir(result.run_dir)
        header = run.history_path.read_text().splitlines()[0]
        assert header == "epoch,lr,train_mae,val_mae,samples_per_s,seconds"
        assert result.history[-1]["val_mae"] < result.history[0]["train_mae"]
        maes = [row["val_mae"] for row in result.history]
        assert result.best_epoch == 1 + maes.index(min(maes))  # lower is better: the task says so
    finally:
        from deepvision.engine.tasks import registry

        registry._TASKS.pop("digit_distance", None)


def test_age_task_tracks_one_off_accuracy_in_training_and_validation(tmp_path):
    from deepvision.engine.tasks.age import AGE_BUCKETS, OneOffMeter
    from tests.helpers import make_image_folder

    order = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    meter = OneOffMeter(torch.device("cpu"), order)
    logits = torch.eye(8)[[0, 2, 5, 7]]  # predicted buckets 0, 2, 5, 7
    meter.update(logits, torch.tensor([0, 1, 3, 7]), torch.tensor(1.0))
    assert meter.compute()["one_off"] == 0.75 and meter.compute()["acc"] == 0.5
    make_image_folder(tmp_path / "ages", n_per_class=3, size=16, classes=AGE_BUCKETS)
    cfg = {"task": "age", "model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path / "ages"), "train": ".", "val": ".", "test": None,
                    "image_size": 16, "channels": 1, "batch_size": 8, "workers": 0}}
    result = train(cfg, out=tmp_path / "runs", name="age")
    row = result.history[0]
    assert 0 <= row["val_acc"] <= row["val_one_off"] <= 1 and row["train_one_off"] >= row["train_acc"]
    header = (result.run_dir / "history.csv").read_text().splitlines()[0]
    assert "train_one_off" in header and "val_one_off" in header
    with pytest.raises(UserError, match="8 Adience age buckets"):
        train({**tiny_config(1, max_samples=50), "task": "age"}, out=tmp_path / "runs", name="digits")


def _overlap_data(tmp_path):
    """A 12-record .rec, a 12-row HDF5 file, another of each, and a link to each."""
    import h5py

    from deepvision.data.records import IRHeader, pack_header
    from deepvision.datasets.records import RecordWriter

    for name in ("a", "b"):
        with RecordWriter(tmp_path / f"{name}.rec") as w:
            for i in range(12):
                w.write(pack_header(IRHeader(0, float(i % 2), i, 0), b"x" * 8), key=i)
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["images"] = np.full((12, 8, 8), 7, np.uint8)
            f["labels"] = np.arange(12) % 2
        (tmp_path / f"{name}-link.rec").symlink_to(f"{name}.rec")
        (tmp_path / f"{name}-link.h5").symlink_to(f"{name}.h5")
    return tmp_path


@pytest.mark.parametrize("source, ext", [("rec", "rec"), ("hdf5", "h5")])
def test_the_training_file_given_again_as_val_or_test_is_named_by_one_rule(tmp_path, source, ext):
    """A .rec or HDF5 file given as val or test as well as train (the same path, or a link to it) trained with
    no word, as the lst source warns; splits carved from the file and other files are not shared."""
    from deepvision.config.schema import DataConfig
    from deepvision.data.sources import load_data
    from deepvision.engine.tasks.classification import overlap_notes

    root = _overlap_data(tmp_path)

    def notes(**split) -> list[str]:
        return overlap_notes(load_data(DataConfig(**{"source": source, "root": str(root), "train": f"a.{ext}",
                                                     "test": None, "val_fraction": 0.0, **split})))

    warn = "[WARN] 12 of the 12 {} images are training images too: {} scores do not measure generalisation"
    assert notes(val=f"a.{ext}") == [warn.format("val", "val")]
    assert notes(val=f"b.{ext}", test=f"a-link.{ext}") == [warn.format("test", "test")]
    assert notes(val=f"a-link.{ext}", max_samples=6) == [warn.replace("12", "6").format("val", "val")]
    assert notes(val=f"b.{ext}", test=f"b-link.{ext}") == []
    assert notes(val_fraction=0.25) == notes(val=f"b-link.{ext}") == []  # carved rows or records are distinct
    data = load_data(DataConfig(source=source, root=str(root), train=f"a.{ext}", test=None, val_fraction=0.5))
    data.val = data.train.subset(np.arange(3))  # three training samples, picked again
    assert overlap_notes(data) == ["[WARN] 3 of the 3 val images are training images too: val scores do not "
                                   "measure generalisation"]


def test_data_info_and_train_warn_of_a_linked_training_file_as_val(tmp_path, run_cli):
    import yaml

    root = _overlap_data(tmp_path)
    cfg = tiny_config(1, source="hdf5", root=str(root), train="a.h5", val="a-link.h5", test=None, val_fraction=0.0,
                      batch_size=4, workers=0, image_size=28)
    cfg["train"]["max_steps"] = 1
    (tmp_path / "hl.yaml").write_text(yaml.safe_dump(cfg))
    warn = "[WARN] 12 of the 12 val images are training images too: val scores do not measure generalisation"
    code, out, err = run_cli("data", "info", tmp_path / "hl.yaml")
    assert code == 0 and warn in out.splitlines(), err
    code, out, err = run_cli("train", tmp_path / "hl.yaml", "--out", tmp_path / "runs")
    assert code == 0 and " ".join(out.split()).count(warn) == 1, err  # the run's report wraps long lines


def test_a_tutorial_text_file_given_again_as_val_is_named_too(tmp_path):
    from deepvision.config.schema import DataConfig
    from deepvision.data.sources import load_data
    from deepvision.engine.tasks.classification import overlap_notes

    (tmp_path / "a.txt").write_text("".join(f"{i % 10} , {' '.join(['0'] * 784)}\n" for i in range(4)))
    (tmp_path / "link.txt").symlink_to("a.txt")
    data = load_data(DataConfig(source="mnist_text", root=str(tmp_path), train="a.txt", val="link.txt", test=None,
                                val_fraction=0.0))
    assert overlap_notes(data) == ["[WARN] 4 of the 4 val images are training images too: val scores do not "
                                   "measure generalisation"]


def test_a_class_named_without_a_training_sample_is_refused_before_training(tmp_path, run_cli):
    """label_names (or a labels file) naming one class more than the training data holds trained a model with an
    output it never learned, exit 0 (the folder source refused an empty class folder only)."""
    import h5py
    import yaml

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (40, 16, 16)).astype(np.uint8), np.arange(40) % 2  # classes a and b only
    for name, rows in (("t.h5", slice(0, 30)), ("v.h5", slice(30, 40))):
        with h5py.File(tmp_path / name, "w") as f:
            f["images"], f["labels"] = x[rows], y[rows]
            f["label_names"] = np.array(["a", "b", "c"], dtype=h5py.string_dtype())
    cfg = {"name": "c", "model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "hdf5", "root": str(tmp_path), "train": "t.h5", "val": "v.h5", "test": None,
                    "image_size": 16, "batch_size": 8, "workers": 0}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs")
    assert code == 2 and err.count("\n") == 1, err
    assert ("class 'c' has no sample in the training split (hdf5: t.h5); the model would get an output it never "
            "learns: remove it from the class names") in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    code, _, err = run_cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--set", "data.max_samples=20")
    assert code == 0, err  # a smoke run's first N samples may hold some classes only
