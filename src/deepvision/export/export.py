"""`deepvision export RUN --format onnx|torchscript`: one self-contained file, checked against PyTorch.

The exported network takes `pixels`: float32 N x C x H x W in 0..255 (RGB or gray, already resized
and cropped the run's way) and returns `logits`; the run's normalisation (scale, mean, std) is the
first operation inside the file. The file also carries a JSON description under the metadata key
`deepvision` (ONNX `metadata_props`; TorchScript extra file `deepvision.json`): format and version,
model name, classes, the preprocessing (`Preprocess.to_dict()`), input/output names and layout.

After writing, the file is loaded back (onnxruntime's CPU provider, or torch.jit.load) and run on
real inputs; the maximum absolute difference of the logits and the agreement of the top-1 classes
with PyTorch eager are printed, and the export fails (nothing is left at the destination) when they
differ beyond 1e-4 (relative to the largest logit when above 1).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.export.onnx_export import INPUT, OUTPUT
from deepvision.export.result import ExportResult
from deepvision.fileio import file_mode, unlink_quietly
from deepvision.runs.loading import LoadedRun, load_run
from deepvision.runs.rundir import RunDir
from deepvision.version import __version__

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class Deployable(nn.Module):
    """The run's network preceded by its normalisation: 0..255 pixels in, logits out."""

    def __init__(self, model: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("scale", scale.float())
        self.register_buffer("shift", shift.float())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels * self.scale + self.shift)


def describe(loaded: LoadedRun, dynamic_batch: bool, fmt: str) -> dict[str, Any]:
    c, (h, w) = loaded.pre.channels, loaded.pre.size
    return {"format": "deepvision-export", "version": 1, "deepvision": __version__, "export_format": fmt,
            "model": loaded.cfg.model.name, "run": str(loaded.run.path.resolve()), "epoch": loaded.epoch,
            "classes": list(loaded.classes), "preprocess": loaded.pre.to_dict(), "task": "classification",
            "input": {"name": INPUT, "shape": ["batch" if dynamic_batch else 1, c, h, w], "dtype": "float32",
                      "range": [0, 255], "layout": "NCHW", "color": "RGB" if c == 3 else "gray",
                      "note": "pixels after the run's resize/crop; normalisation is inside the model"},
            "output": {"name": OUTPUT, "meaning": "logits; softmax gives class probabilities"}}


def check_inputs(loaded: LoadedRun, images: list[str | Path] | None, count: int = 8) -> tuple[torch.Tensor, str]:
    """uint8 check batch: the given images, else images under the run's data root, else synthetic scenes."""
    paths = [Path(p) for p in images] if images else []
    source = "the given images"
    if not paths:
        root = loaded.cfg.data.root
        if root and Path(root).is_dir():
            found = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            step = max(1, len(found) // count)
            paths, source = found[::step][:count], f"images under {root}"
    if paths:
        return torch.stack([loaded.pre.load(p) for p in paths]), f"{len(paths)} {source}"
    c, (h, w) = loaded.pre.channels, loaded.pre.size
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    batch = []
    for i in range(count):  # gradients, stripes and blobs with noise: images with structure, not constants
        base = torch.stack([(xx * (i + 1) + yy * (c_ + 1)) % 1.0 for c_ in range(c)])
        stripes = (torch.sin((xx * (3 + i) + yy * (2 + c)) * 6.28) > 0).float()
        img = 0.6 * base + 0.3 * stripes + 0.1 * torch.rand(c, h, w, generator=g)
        batch.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.stack(batch), f"{count} synthetic images (no --images and no data.root with images)"


def export_run(
    run_dir: str | Path,
    *,
    format: str = "onnx",
    out: str | Path | None = None,
    dynamic_batch: bool = False,
    opset: int | None = None,
    epoch: int | None = None,
    which: str = "best",
    images: list[str | Path] | None = None,
    tolerance: float = 1e-4,
    quiet: bool = False,
) -> ExportResult:
    """Export a run's model to one ONNX or TorchScript file and verify it against PyTorch eager.

    Detection runs go to `deepvision.export.detection.export_detector` (one image of any size in; boxes,
    scores and labels out); `dynamic_batch` and `tolerance` apply to classification only.
    """
    say = (lambda *_: None) if quiet else print
    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got '{format}'")
    if opset is not None and format != "onnx":
        raise UserError("--opset applies to --format onnx only")
    if RunDir.open(run_dir).read_config().task == "detection":  # boxes, scores and labels out
        from deepvision.export.detection import export_detector

        if dynamic_batch:
            raise UserError("a detection export takes one image of any size; --dynamic-batch does not apply")
        return export_detector(run_dir, out, format, images=images, opset=opset or 17, epoch=epoch, which=which,
                               quiet=quiet)
    loaded = load_run(run_dir, epoch, which, "cpu")
    scale, shift = loaded.pre.affine()
    wrapper = Deployable(loaded.model, scale.squeeze(0), shift.squeeze(0)).eval()
    target = Path(out) if out else loaded.run.path / "export" / f"{loaded.run.path.name}{SUFFIX[format]}"
    if target.suffix != SUFFIX[format]:
        raise UserError(f"--out {target}: a {format} file must end in {SUFFIX[format]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = describe(loaded, dynamic_batch, format)
    c, (h, w) = loaded.pre.channels, loaded.pre.size
    example = torch.zeros(2 if dynamic_batch else 1, c, h, w)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp, sidecar, done = Path(tmp_name), None, False
    try:
        if format == "onnx":
            from deepvision.export.onnx_export import to_onnx

            sidecar = to_onnx(wrapper, example, tmp, target.name, meta, dynamic_batch, opset)
        else:
            _to_torchscript(wrapper, example, tmp, meta)
        pixels, source = check_inputs(loaded, images)
        with torch.inference_mode():
            expected = wrapper(pixels.float()).numpy()
        got = _run_file(format, tmp, pixels.float().numpy(), dynamic_batch)
        diff = float(np.abs(got - expected).max())
        agree = float((got.argmax(1) == expected.argmax(1)).mean())
        say(f"[INFO] parity on {source}: max |logits difference| {diff:.2e}, top-1 agreement {agree * 100:.1f}%")
        limit = tolerance * max(1.0, float(np.abs(expected).max()))
        if diff > limit or agree < 1.0:
            raise UserError(f"the exported {format} model differs from PyTorch (max abs difference {diff:.3g} > "
                            f"{limit:.3g} or top-1 agreement {agree * 100:.1f}% < 100%); nothing was written")
        os.chmod(tmp, file_mode())  # mkstemp's 0600 -> what every other output gets (0644 under umask 022)
        os.replace(tmp, target)
        done = True
    finally:
        unlink_quietly(tmp)
        if sidecar is not None and not done:
            unlink_quietly(sidecar)
    size = target.stat().st_size
    say(f"exported {target} ({size / 1e6:.1f} MB, {format}, "
        f"{'dynamic' if dynamic_batch else 'fixed'} batch); verified against PyTorch")
    return ExportResult(target, format, size, int(pixels.shape[0]), source, classes=list(loaded.classes),
                        max_abs_diff=diff, top1_agreement=agree)


def _to_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    import warnings

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notices
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"deepvision.json": json.dumps(meta)})


def _run_file(format: str, path: Path, pixels: np.ndarray, dynamic_batch: bool) -> np.ndarray:
    """Logits of the written file for a batch, one image at a time when the batch size is fixed."""
    batches = [pixels] if dynamic_batch else [pixels[i : i + 1] for i in range(len(pixels))]
    if format == "onnx":
        from deepvision.onnxrt import ort_session

        session = ort_session(path)
        outs = [session.run([OUTPUT], {INPUT: b})[0] for b in batches]
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            outs = [module(torch.from_numpy(b)).numpy() for b in batches]
    return np.concatenate(outs)
