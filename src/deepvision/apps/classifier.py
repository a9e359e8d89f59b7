"""A trained classifier for the applications, from a run directory, a checkpoint file or a Keras .h5 file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models.outputs import class_probabilities

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass
class Classifier:
    model: nn.Module
    pre: Preprocess
    classes: list[str]
    source: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N x classes) of a uint8 N x C x H x W batch at the model's input size."""
        with torch.inference_mode():
            x = self.pre.normalize(batch.to(self.device))
            return class_probabilities(self.model(x)).cpu().numpy()

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """A BGR or grayscale uint8 image (any size) -> the uint8 1 x C x H x W model input (bilinear resize)."""
        import cv2

        h, w = self.pre.size
        if self.pre.channels == 1:
            img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        else:
            img = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        arr = img[:, :, None] if img.ndim == 2 else img
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


def load_classifier(source: str | Path, *, keras_model: str | None = None, epoch: int | None = None,
                    device: str = "cpu") -> Classifier:
    """From a run directory (best.pt, or `epoch`), a deepvision checkpoint (.pt) or a Keras .h5 (imported in memory)."""
    from deepvision.engine.distributed import resolve_device

    dev = resolve_device(device)
    path = Path(source)
    if keras_model not in (None, "auto") and path.suffix.lower() not in KERAS_SUFFIXES:
        raise UserError(f"--keras-model names the architecture of a Keras file; {path} is not one (a run or a "
                        f"checkpoint brings its own architecture), so leave --keras-model out")
    if path.is_dir():
        from deepvision.runs.loading import load_run

        loaded = load_run(path, epoch=epoch, device=dev, classifier=True)
        return Classifier(loaded.model, loaded.pre, loaded.classes, str(loaded.checkpoint))
    if not path.is_file():
        raise UserError(f"model not found: {path} (give a run directory, a .pt checkpoint or a Keras .h5 file)")
    if path.suffix.lower() in KERAS_SUFFIXES:
        from deepvision.interop.keras_import import load_keras

        imported = load_keras(path, keras_model)
        return Classifier(imported.model.to(dev).eval(), imported.pre, imported.classes, str(path))
    return _from_checkpoint(path, dev)


def _from_checkpoint(path: Path, device: torch.device) -> Classifier:
    from deepvision.config.io import build_config
    from deepvision.runs.checkpoint import load_checkpoint
    from deepvision.runs.loading import build_checked, check_classifier
    from deepvision.safeload import check_class_names

    ckpt = load_checkpoint(path)
    cfg = build_config(ckpt["config"]) if isinstance(ckpt.get("config"), dict) else None
    if cfg is not None:
        check_classifier(cfg, path)
    if cfg is None or not isinstance(ckpt.get("preprocess"), dict):
        raise UserError(f"{path} holds no config/preprocessing; give its run directory instead")
    cfg.model.pretrained = None
    pre = Preprocess.from_dict(ckpt["preprocess"])
    model = build_checked(cfg, pre, ckpt["model_state"], str(path), f"the preprocessing stored in {path}")
    classes = ckpt.get("classes") or []
    classes = list(classes) if isinstance(classes, (list, tuple)) else [classes]
    check_class_names(classes, f"the class names in {path}")
    outputs = cfg.model.num_classes or len(classes)
    if len(classes) > outputs:
        raise UserError(f"{path} names {len(classes)} classes for a model of {outputs} outputs; the file is "
                        f"damaged")
    classes += [str(i) for i in range(len(classes), outputs)]
    return Classifier(model.to(device).eval(), pre, classes, str(path))
