"""`deepvision predict`: top-k classes for image files, with the run's own preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from deepvision.engine.distributed import resolve_device
from deepvision.errors import UserError
from deepvision.models.outputs import class_probabilities
from deepvision.runs.loading import LoadedRun, load_run
from deepvision.safeload import check_range, input_file, shell_word


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, float]]  # (class name, probability), most likely first

    @property
    def label(self) -> str:
        return self.top[0][0]

    def to_dict(self) -> dict:
        return {"image": self.image, "top": [{"class": c, "probability": p} for c, p in self.top]}


def check_top(top: object, option: str = "--top") -> int:
    """`top` if it is a whole number of classes, 1 or more (more than the model has gives them all);
    UserError naming `option` otherwise. The library checks it, so the Python API refuses what the
    CLI refuses."""
    return check_range(option, top, 1)


def predict_tensors(loaded: LoadedRun, batch: torch.Tensor, top: int) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) lists for a uint8 N x C x H x W batch already preprocessed."""
    device = next(loaded.model.parameters()).device
    with torch.inference_mode():
        x = loaded.pre.normalize(batch.to(device))
        probs = class_probabilities(loaded.model(x)).cpu()
    k = min(top, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [[(loaded.classes[i], float(v)) for v, i in zip(vs.tolist(), ids.tolist())]
            for vs, ids in zip(values, indices)]


def predict_images(
    run_dir: str | Path | LoadedRun,
    images: list[str | Path],
    *,
    top: int = 5,
    epoch: int | None = None,
    which: str = "best",
    device: str = "auto",
    batch_size: int = 64,
) -> list[Prediction]:
    """Predict each image file with a run, or an exported `.onnx` file (onnxruntime, CPU).

    Unreadable files raise UserError before any prediction is made; a missing image, a folder, a FIFO
    or a device is refused before the model is loaded.
    """
    check_top(top, "top")
    for p in images:
        input_file(p, "image", "; give an image file (JPEG, PNG, BMP, GIF, TIFF or WebP)")
    if not isinstance(run_dir, LoadedRun) and Path(run_dir).suffix == ".onnx":
        from deepvision.inference.onnx_runtime import OnnxClassifier, refuse_run_options

        refuse_run_options(run_dir, epoch, which, device)
        loaded = OnnxClassifier(run_dir)
    else:
        loaded = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, epoch, which, resolve_device(device))
    if getattr(getattr(loaded, "cfg", None), "task", None) == "detection":
        raise UserError(f"{loaded.run.path} is a detection run: use `deepvision detect "
                        f"{shell_word(loaded.run.path)} IMAGE...`")
    tensors = [loaded.pre.load(p) for p in images]  # decode everything first: fail fast on bad input
    results: list[Prediction] = []
    for start in range(0, len(tensors), batch_size):
        batch = torch.stack(tensors[start : start + batch_size])
        tops = loaded.predict_tensors(batch, top) if not isinstance(loaded, LoadedRun) else \
            predict_tensors(loaded, batch, top)
        for path, top_k in zip(images[start : start + batch_size], tops):
            results.append(Prediction(str(path), top_k))
    return results
