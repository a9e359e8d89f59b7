"""Resolve, then run: turn a config into the fully resolved run before any trainer exists.

`resolve_run` is the one step between a config and training. It copies the config and fills in
everything a run needs: the task, the data (read once: class names, channels, preprocessing), absolute
data paths (so the run can be evaluated or resumed from any directory), the class count and input
channels, the checkpoint prefix and the gradient-accumulation factor. Profile decisions come from
`config.profile` (applied when the config is validated). `config.yaml` is written from the result.
The config passed in is never modified.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepvision.config.schema import Config, DataConfig
from deepvision.data.builtin_sources import split_folder
from deepvision.data.preprocess import Preprocess
from deepvision.data.source_registry import resolve_path
from deepvision.engine.tasks import Task, TaskData, get_task
from deepvision.errors import UserError
from deepvision.fileio import linked_folders
from deepvision.models.registry import ModelSpec, get_model_spec
from deepvision.placement import refuse_output_inside

DATA_FILE_SUFFIXES = (".lst", ".rec", ".idx", ".txt", ".h5", ".hdf5")


@dataclass
class ResolvedRun:
    cfg: Config  # every default filled in: what config.yaml holds
    task: Task
    data: TaskData
    spec: ModelSpec
    test_note: str | None = None  # why a configured test split is not scored (train.test auto), for the log

    @property
    def pre(self) -> Preprocess:
        return self.data.preprocess

    @property
    def classes(self) -> list[str]:
        return list(self.data.classes)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def refuse_output_in_data(cfg: Config, out: str | Path) -> None:
    """Refuse, before anything is written, an output folder inside a folder the config's data splits are read
    from (a folder source's root or class folders): what is written there would be read as data next time."""
    root = Path(cfg.data.root) if cfg.data.root else None
    for name in (cfg.data.train, cfg.data.val, cfg.data.test):
        if not (isinstance(name, str) and name):
            continue
        if cfg.data.source == "folder" and root is not None and root.is_dir():
            folder = split_folder(root, name)  # `train` is root itself when root holds the class folders
        else:
            folder = resolve_path(cfg.data.root, name)
        if folder.is_dir():
            refuse_output_inside(out, folder, "the data folder")
            for link in linked_folders(folder):  # read as part of the data: so is what is written there
                refuse_output_inside(out, link, f"the data folder {folder}'s linked folder")


def refuse_named_test_with_fraction(cfg: Config) -> None:
    """Refuse a named test split together with data.test_fraction, as evaluating the run would: training
    reads no test split when it is not scored, so the carved part would replace the named one unnoticed;
    a split seed where nothing is carved (it would be recorded and never read); and a data.root that is
    not there while the data files it should hold are found in the working directory (the fallback for a
    file missing under the root would record a root no file was read from)."""
    d = cfg.data
    named = [Path(n) for n in (d.train, d.val, d.test, d.options.get("labels")) if isinstance(n, str) and n]
    stray = [p for p in named if p.suffix in DATA_FILE_SUFFIXES and not p.is_absolute() and p.exists()]
    if d.root and not Path(d.root).is_dir() and stray:
        raise UserError(f"data.root {d.root} is not a folder, but {stray[0]} is in the working directory; give "
                        f"the folder that holds the data files, or leave data.root out to read them from here")
    if d.test and d.test != DataConfig().test and d.test_fraction > 0:
        raise UserError(f"data.test and data.test_fraction are both set; use one of them (data.test={d.test}, "
                        f"data.test_fraction={d.test_fraction:g}; --set data.test_fraction=0 reads the split "
                        f"'{d.test}')")
    if d.split_seed != DataConfig.split_seed and not (d.val_fraction or d.test_fraction):  # a new run only: a
        # recorded run's hand edit is named as such by the commands that read it
        raise UserError("data.split_seed is read only when a split is carved out of train (data.val_fraction or "
                        "data.test_fraction above 0); leave it out")


def resolve_run(cfg: Config, *, roles: tuple[str, ...] = ("train", "val"), world: int = 1) -> ResolvedRun:
    """The resolved run for `cfg` on `world` processes, reading the data of `roles`.

    Seeds the global generators from `train.seed` first, so data that is generated or split at load
    time, and the model initialised next, are the same in every process and every attempt.
    """
    cfg = copy.deepcopy(cfg)
    seed_everything(cfg.train.seed)
    task = get_task(cfg.task)(cfg)
    spec = get_model_spec(cfg.model.name)
    test_note = None
    if cfg.train.test != "off" and has_own_test_split(cfg) and "test" not in roles:
        try:
            data = task.load_data((*roles, "test"), spec.input_size, spec.preprocess)
        except UserError as exc:
            if cfg.train.test == "on":
                raise
            # train.test auto: a test split that cannot be read is not scored (training does not need it)
            data = task.load_data(roles, spec.input_size, spec.preprocess)
            test_note = f"the test split is not scored (train.test auto): {exc}"
    else:
        data = task.load_data(roles, spec.input_size, spec.preprocess)
    if cfg.train.test == "on" and "test" not in data.counts():
        raise UserError("train.test is on but the data has no test split other than the val split; set data.test "
                        "(or data.test_fraction), or train.test=auto")
    pre = data.preprocess
    _resolve_data_paths(cfg, pre)
    classes = len(data.classes)
    m = cfg.model
    m.num_classes = m.num_classes or task.num_outputs(classes)
    m.in_channels = m.in_channels or pre.channels
    if m.num_classes < task.num_outputs(classes):
        raise UserError(f"model.num_classes is {m.num_classes} but the data has {classes} classes")
    if m.in_channels != pre.channels:
        raise UserError(f"model.in_channels is {m.in_channels} but the data gives "
                        f"{pre.channels}-channel images (set data.channels)")
    cfg.checkpoint.prefix = cfg.checkpoint_prefix()
    if cfg.checkpoint.monitor is None:
        cfg.checkpoint.monitor = task.default_monitor
    metrics = [f for f in task.history_fields() if f.startswith(("train_", "val_"))]
    if cfg.checkpoint.monitor not in metrics:
        raise UserError(f"checkpoint.monitor '{cfg.checkpoint.monitor}' is not a metric of the {task.name} task; "
                        f"choose from {', '.join(metrics)}")
    tc = cfg.train
    if tc.global_batch:
        per_step = cfg.data.batch_size * world
        if tc.global_batch % per_step:
            raise UserError(f"train.global_batch {tc.global_batch} is not a multiple of data.batch_size x "
                            f"processes = {per_step}; change one of them")
        tc.grad_accum = max(1, tc.global_batch // per_step)
    return ResolvedRun(cfg, task, data, spec, test_note)


def has_own_test_split(cfg: Config) -> bool:
    """Whether the config names a test split (or carves one) that is not the val split monitored in training."""
    d = cfg.data
    if d.test_fraction > 0:
        return True
    return bool(d.test) and d.test != d.val


def _resolve_data_paths(cfg: Config, pre: Preprocess) -> None:
    """Write what the data resolved to into the config: channels, input size, absolute paths."""
    d = cfg.data
    d.channels = pre.channels
    if d.image_size is None and pre.size[0] == pre.size[1]:
        d.image_size = pre.size[0]
    if d.root and Path(d.root).exists():
        d.root = str(Path(d.root).resolve())
    if isinstance(d.mean, str):
        d.mean = str(resolve_path(d.root, d.mean).resolve())
    for role in ("train", "val", "test"):
        name = getattr(d, role)
        if name and Path(name).suffix in DATA_FILE_SUFFIXES:
            path = resolve_path(d.root, name)
            if path.is_file():
                setattr(d, role, str(path.resolve()))
    if isinstance(d.options.get("labels"), str):
        path = resolve_path(d.root, d.options["labels"])
        if path.is_file():
            d.options["labels"] = str(path.resolve())
    if isinstance(d.options.get("image_root"), str) and d.options["image_root"]:  # read as written (lst_source)
        d.options["image_root"] = str(Path(d.options["image_root"]).resolve())
    if isinstance(d.options.get("idx"), dict):
        d.options["idx"] = {k: str(resolve_path(d.root, v).resolve()) for k, v in d.options["idx"].items()}
