"""A trained network to apply, with its own preprocessing and class names, from one string:

- `tv:NAME`: torchvision's published ImageNet weights (`weights`: DEFAULT, a tag such as IMAGENET1K_V1,
  or a state-dict file for that architecture), preprocessed as those weights' metadata documents and
  labelled with the ImageNet synsets (`n07920052 espresso`);
- a deepvision run directory: its best (or chosen) checkpoint, its stored evaluation transform and labels;
- a registered model name (`vgg16_ref`, ...) with an optional weights file.

`describe()` returns a small JSON-able dict from which `load_model(**...)` rebuilds the same network, so
feature files and fitted classifiers record what produced their features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.data.preprocess import Preprocess
from deepvision.engine.distributed import resolve_device
from deepvision.errors import UserError
from deepvision.safeload import refuse_name_and_file


@dataclass
class LoadedModel:
    """A network in eval mode on `device`, its evaluation transform and its output class names."""

    model: nn.Module
    pre: Preprocess
    classes: list[str]
    source: dict[str, Any] = field(default_factory=dict)  # {"model": ..., "weights": ...} or {"run": ...}
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    run_id: str | None = None  # a run's id: what fitted on its features can tell it from another run

    @property
    def title(self) -> str:
        if "run" in self.source:
            return f"run {self.source['run']}"
        weights = self.source.get("weights")
        return f"{self.source.get('model')}" + (f" ({weights})" if weights else " (no weights)")

    @property
    def spec(self) -> str:
        """The MODEL_OR_RUN argument that loads this network."""
        return str(self.source.get("run") or self.source.get("model"))

    def describe(self) -> dict[str, Any]:
        return dict(self.source)


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` is a run folder: one with a config.yaml (UserError when something other than a
    regular file is in its place, as every command that opens a run says)."""
    from deepvision.runs.rundir import RunDir

    p = Path(path)
    return p.is_dir() and os.path.lexists(p / "config.yaml") and RunDir(p).has_config()


def _is_file_arg(weights: str | None) -> bool:
    return bool(weights) and (Path(str(weights)).exists() or Path(str(weights)).suffix in (".pt", ".pth", ".bin"))


def preprocess_from_entry(entry: Any) -> Preprocess:
    """The evaluation transform a torchvision weights entry documents (resize, crop, mean/std, interpolation)."""
    from deepvision.models.torchvision_models import preprocess_of

    meta = preprocess_of(entry)
    return Preprocess(channels=3, size=tuple(meta["size"]), resize=meta["resize"], scale=meta["scale"],
                      mean=meta["mean"], std=meta["std"], interpolation=meta["interpolation"])


def load_model(model: str | None = None, weights: str | None = None, *, run: str | Path | None = None,
               epoch: int | None = None, device: str | torch.device = "auto") -> LoadedModel:
    """Resolve `model` (tv:NAME, a run directory, or a registered name) or `run` into a LoadedModel. A bare
    registered or torchvision name that is also a file or folder here is refused (`./NAME` names the run)."""
    if run is None and model and ":" in model:  # tv:NAME, timm:NAME
        library = {"tv": "torchvision"}.get(model.split(":")[0], model.split(":")[0])
        refuse_name_and_file(model, f"a {library} model name", f"or rename it to use {library}'s model")
    elif run is None and model and ":" not in model:
        from deepvision.models.registry import canonical_name, list_models

        if canonical_name(model) in list_models():
            refuse_name_and_file(model, "a registered model", "or rename it to use the model")
    if run is not None or (model is not None and is_run_dir(model)):
        run = run if run is not None else model
        if weights is not None:  # taken, it would be ignored without a word
            raise UserError(f"--weights goes with a model (tv:NAME or a registered name), not a run: {run} "
                            f"uses its own checkpoint; leave --weights out")
        return _from_run(run, epoch, device if isinstance(device, torch.device) else resolve_device(device))
    if epoch is not None:
        raise UserError("--epoch goes with a run directory (a checkpoint of the run); leave it out")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if not model:
        raise UserError("give a model (tv:NAME, a registered model name) or a run directory")
    if Path(model).exists() and not model.startswith("tv:"):
        raise UserError(f"{model} is not a deepvision run directory (no config.yaml); give a run directory, "
                        f"tv:NAME or a registered model name")
    if model.startswith("tv:"):
        return _from_torchvision(model, weights, dev)
    return _from_registry(model, weights, dev)


def _from_run(run: str | Path, epoch: int | None, device: torch.device) -> LoadedModel:
    from deepvision.runs.loading import load_run

    loaded = load_run(run, epoch=epoch, device=device, classifier=True)  # features and classify alike
    source = {"run": str(Path(run).resolve())}
    if epoch is not None:
        source["epoch"] = epoch
    return LoadedModel(loaded.model, loaded.pre, list(loaded.classes), source, device, loaded.run.run_id or None)


def _from_torchvision(model: str, weights: str | None, device: torch.device) -> LoadedModel:
    from deepvision.inference.synsets import imagenet_class_names
    from deepvision.models.pretrained import torchvision_tag
    from deepvision.models.registry import create_model, get_model_spec
    from deepvision.models.torchvision_models import resolve_weights

    name = model.removeprefix("tv:")
    get_model_spec(model)  # unknown names: one line with suggestions
    tag = torchvision_tag(model, weights) if weights else "DEFAULT"  # a tag that is also a file here: refused
    if tag is None and _is_file_arg(weights):
        from deepvision.models.weights import load_state_dict_file, load_weights

        entry = resolve_weights(name, "DEFAULT")
        classes_n = len(entry.meta["categories"])
        net = create_model(model, num_classes=classes_n)
        load_weights(net, load_state_dict_file(str(weights)), strict=True, source=f"weights in {weights}")
        source = {"model": model, "weights": str(Path(str(weights)).resolve())}
    else:
        entry = resolve_weights(name, str(tag or weights))
        classes_n = len(entry.meta["categories"])
        net = create_model(model, num_classes=classes_n, weights=entry.name)
        source = {"model": model, "weights": entry.name}
    categories = list(entry.meta["categories"])
    classes = imagenet_class_names() if classes_n == 1000 else categories
    return LoadedModel(net.to(device).eval(), preprocess_from_entry(entry), classes, source, device)


def _from_registry(model: str, weights: str | None, device: torch.device) -> LoadedModel:
    from deepvision.models.pretrained import load_pretrained
    from deepvision.models.registry import create_model, get_model_spec

    spec = get_model_spec(model)
    net = create_model(model)
    source: dict[str, Any] = {"model": model, "weights": None}
    if weights:
        if not _is_file_arg(weights):
            raise UserError(f"--weights for '{model}' must be a weights file (a state dict or a deepvision "
                            f"checkpoint); named weights exist only for tv: models")
        load_pretrained(net, str(weights), model)
        source["weights"] = str(Path(str(weights)).resolve())
    meta = spec.preprocess
    c, h, w = spec.input_size
    pre = Preprocess(channels=c, size=(h, w), resize=meta.get("resize"), scale=meta.get("scale", 1 / 255),
                     mean=meta.get("mean", []), std=meta.get("std", []))
    classes = [str(i) for i in range(spec.num_classes)]
    return LoadedModel(net.to(device).eval(), pre, classes, source, device)
