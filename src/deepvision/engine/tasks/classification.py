"""Image classification: cross-entropy on logits; rank-1, rank-k and loss as metrics."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvision.config.schema import DataConfig
from deepvision.data.loaders import build_loaders, resolve_preprocess
from deepvision.data.preprocess import Preprocess, normalize_batch
from deepvision.data.protocols import Loader
from deepvision.data.sources import DataBundle, load_data
from deepvision.engine.distributed import all_reduce_sum
from deepvision.engine.tasks.base import Task, overlap_note
from deepvision.engine.tasks.registry import register_task
from deepvision.errors import UserError
from deepvision.fileio import resolved_paths
from deepvision.runs.split_members import members_record
from deepvision.safeload import printable


class ClassificationMeter:
    """Running sums of cross-entropy, rank-1 and rank-k hits and the sample count.

    `mark()` remembers the current sums, so `compute(since_mark=True)` gives the metrics of the
    batches after it (the speedometer's window) without a second accumulator. With `loss_is_sum`
    each update's loss is the batch's summed cross-entropy (validation), else its mean (training).
    Rank-k is None when there are no more than k classes (it would always be 1).
    """

    def __init__(self, device: torch.device, topk: int = 5, loss_is_sum: bool = False) -> None:
        self.device, self.topk, self.loss_is_sum = device, topk, loss_is_sum
        self.reset()

    def reset(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.hits = torch.zeros(2, dtype=torch.int64, device=self.device)  # rank-1, rank-k
        self.count = 0  # on the host: no device transfer per batch
        self.classes: int | None = None
        self._mark = (self.loss.clone(), self.hits.clone(), 0)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor | None) -> None:
        self.classes = logits.shape[1]
        k = min(self.topk, self.classes)
        hits = logits.topk(k, dim=1).indices == targets.unsqueeze(1)  # at most one hit per row
        self.hits += torch.stack([hits[:, 0].sum(), hits.sum()])
        n = targets.shape[0]
        if loss is None:
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            self.loss += loss.double()
        else:
            self.loss += loss.double() if self.loss_is_sum else loss.double() * n
        self.count += n

    def mark(self) -> None:
        self._mark = (self.loss.clone(), self.hits.clone(), self.count)

    def compute(self, distributed: bool = False, since_mark: bool = False) -> dict[str, float]:
        loss, hits, count = self.loss, self.hits, self.count
        if since_mark:
            loss, hits, count = loss - self._mark[0], hits - self._mark[1], count - self._mark[2]
        sums = torch.cat([loss.view(1), hits.double(), torch.tensor([float(count)], dtype=torch.float64,
                                                                    device=self.device)])
        if distributed:
            all_reduce_sum(sums)
        total_loss, top1, topk, n = sums.tolist()
        trivial = self.classes is not None and self.classes <= self.topk
        if n == 0:
            return {"loss": float("nan"), "acc": float("nan"), "top5": None if trivial else float("nan"), "count": 0}
        return {"loss": total_loss / n, "acc": top1 / n, "top5": None if trivial else topk / n, "count": int(n)}


@dataclass
class ClassificationData:
    """The splits of a classification run and the preprocessing resolved for them."""

    bundle: DataBundle
    preprocess: Preprocess
    data_cfg: Any

    @property
    def classes(self) -> list[str]:
        return self.bundle.classes

    @property
    def channels(self) -> int:
        return self.preprocess.channels

    def counts(self) -> dict[str, int]:
        return self.bundle.counts()

    def notes(self) -> list[str]:
        """A [WARN] line for each val/test split sharing samples with the training split (`overlap_notes`)."""
        return overlap_notes(self.bundle)

    def loaders(self, roles: tuple[str, ...], *, seed: int, rank: int = 0, world: int = 1,
                device: torch.device | str = "cpu", max_steps: int | None = None) -> dict[str, Loader]:
        return build_loaders(self.data_cfg, self.bundle, self.preprocess, seed=seed, rank=rank, world=world,
                             device=device, max_steps=max_steps, roles=roles)


def refuse_classes_without_samples(bundle: DataBundle, cfg: DataConfig) -> None:
    """Refuse training data whose class names (a labels file, HDF5 label_names, class folders) name a class the
    training split holds no sample of: the model would get an output it never learns, without a word."""
    labels = np.asarray(bundle.train.targets)
    if labels.size == 0 or labels.min() < 0:
        return  # refused elsewhere, in the reader's own words
    missing = np.flatnonzero(np.bincount(labels, minlength=len(bundle.classes)) == 0)
    if missing.size:
        more = f" (and {missing.size - 1} more)" if missing.size > 1 else ""
        raise UserError(f"class '{printable(bundle.classes[missing[0]])}'{more} has no sample in the training split "
                        f"({cfg.source}: {cfg.train}); the model would get an output it never learns: remove it from "
                        f"the class names (the labels file, or label_names) or add samples of it")


def overlap_notes(bundle: DataBundle) -> list[str]:
    """A [WARN] line for each val/test split sharing samples with the training split: the same image files
    (one list given twice, or lists made separately), or the records or rows of the training file itself given
    again (a .rec or HDF5 file, by identity: through a link too). Its scores would not measure generalisation."""
    return [overlap_note(role, shared, len(split)) for role in ("val", "test")
            if (split := bundle.role(role)) is not None and (shared := shared_samples(bundle.train, split))]


def shared_samples(train_split: Any, split: Any) -> int:
    """How many samples of `split` are samples of `train_split`: the same image files (by path), or the same
    records or rows of one file (by identity: through a link too; samples carved from the file are not shared).
    Samples of no file (generated, downloaded into memory) are compared only as the same split object."""
    if split is train_split:  # e.g. `val: train`
        return len(split)
    train, held = _members(train_split), _members(split)
    if train is None or held is None or held[0] != train[0]:  # other files, or samples of no file
        return 0
    if held[0] is None:  # image files, by path
        return len(train[1] & held[1])
    return int(np.isin(held[1], train[1]).sum())  # records by byte offset, rows by number


def _members(split: Any) -> tuple[Any, Any] | None:
    """What a split's samples are, to compare splits: (None, absolute image paths) for image files, (the file's
    kind, st_dev and st_ino; byte offsets or row numbers) for a record or HDF5 file; None for samples of no file."""
    indices = getattr(split, "indices", None)
    base = getattr(split, "dataset", split)
    if (paths := getattr(base, "paths", None)) is not None:
        return None, resolved_paths(paths if indices is None else [paths[i] for i in indices])
    if (origin := getattr(base, "origin", None)) is not None:  # rows read from a file (TensorSplit)
        return ("rows", *origin[0]), origin[1]
    record_file, positions = getattr(base, "file", None), getattr(base, "positions", None)
    if getattr(record_file, "offsets", None) is None:
        return None
    offsets = record_file.offsets if positions is None else record_file.offsets[positions]
    st = os.stat(record_file.path)
    return ("records", st.st_dev, st.st_ino), np.asarray(offsets if indices is None else offsets[indices])


@register_task("classification")
class ClassificationTask(Task):
    """One label per image; logits out of the model."""

    train_metrics = ("loss", "acc", "top5")
    val_metrics = ("loss", "acc", "top5")
    default_monitor = "val_acc"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.label_smoothing = cfg.train.label_smoothing
        self.topk = cfg.train.topk
        self.channels_last = False
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        self.bundle: DataBundle | None = None
        self.members: dict[str, Any] | None = None

    def load_data(self, roles: tuple[str, ...], model_input: tuple[int, int, int] | None,
                  model_preprocess: dict[str, Any] | None) -> ClassificationData:
        bundle = load_data(self.cfg.data, roles=roles)
        if not self.cfg.data.max_samples:  # a smoke run's first N samples may hold some classes only
            refuse_classes_without_samples(bundle, self.cfg.data)
        pre = resolve_preprocess(self.cfg.data, bundle, model_input, model_preprocess)
        self.bundle, self.members = bundle, None
        return ClassificationData(bundle, pre, self.cfg.data)

    def data_record(self) -> dict[str, Any] | None:
        """The members of the splits read (`members_record`), computed once: scoring the run's own splits and
        resuming it compare them with the splits drawn then."""
        if self.members is None and self.bundle is not None:
            self.members = members_record(self.bundle)
        return self.members

    def setup(self, pre: Preprocess, device: torch.device, channels_last: bool) -> None:
        """Fix the device-side normalisation (uint8 -> float in one pass) and the memory format."""
        super().setup(pre, device, channels_last)
        self._affine = pre.affine(device)

    def to_device(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        a, b = self._affine
        x = normalize_batch(x, a, b)  # uint8 -> normalised float in one pass, on the device
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def train_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing), logits

    def eval_outputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x).float()
        return logits, F.cross_entropy(logits, y, reduction="sum")

    def meter(self, device: torch.device, phase: str) -> ClassificationMeter:
        return ClassificationMeter(device, self.topk, loss_is_sum=phase != "train")
