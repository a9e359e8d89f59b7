"""`deepvision export RUN --format onnx|torchscript`: one self-contained file, checked against PyTorch.

One exporter for every task: `export_run` loads the run, asks its task's `ExportHooks` (see
`export.hooks`; detection's are in `export.detection`) for the module, description and check
inputs, writes the file under a temporary name, runs it from disk, compares it with PyTorch through
the task's parity hook, and only then moves it into place. Below, the classification hooks.

A classification network takes `pixels`: float32 N x C x H x W in 0..255 (RGB or gray, already resized
and cropped the run's way) and returns `logits`; the run's normalisation (scale, mean, std) is the
first operation inside the file. The file also carries a JSON description under the metadata key
`deepvision` (ONNX `metadata_props`; TorchScript extra file `deepvision.json`): format and version,
model name, classes, the preprocessing (`Preprocess.to_dict()`), input/output names and layout.

After writing, the file is loaded back (onnxruntime's CPU provider, or torch.jit.load) and run on
real inputs; the maximum absolute difference of the logits, the relative error (that difference
divided by the largest |logit|: a small absolute difference proves nothing when the logits are small
themselves, as with a freshly initialised network) and the agreement of the top-1 classes with
PyTorch eager are printed, and the export fails (nothing is left at the destination) when the
relative error exceeds 1e-4 or a top-1 class differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.export import detection  # noqa: F401  (registers the detection hooks)
from deepvision.export.hooks import ExportHooks, Parity, hooks_for, register_export
from deepvision.export.onnx_export import INPUT, METADATA_KEY, OUTPUT
from deepvision.export.result import ExportResult
from deepvision.fileio import atomic_path, output_folder, unlink_quietly
from deepvision.models.outputs import check_finite_output
from deepvision.placement import refuse_output_over_inputs, refuse_replacing
from deepvision.runs.loading import LoadedRun, load_run
from deepvision.runs.rundir import RunDir
from deepvision.safeload import check_range, image_files
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


FORMAT_NAMES = {"onnx": "an ONNX file", "torchscript": "a TorchScript file"}


def is_onnx_export(path: Path) -> bool:
    """Whether `path` is an ONNX model this project exported: it parses as a model with a graph and its
    metadata holds the `deepvision` record (a user's downloaded model, or any protobuf, has none)."""
    import onnx

    try:
        if path.stat().st_size >= 2**31:  # protobuf's limit: a larger single file is no ONNX model
            return False
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # whatever the parser says, the file is not an ONNX model
        return False
    return (model.ir_version > 0 and model.HasField("graph") and len(model.graph.node) > 0
            and any(p.key == METADATA_KEY for p in model.metadata_props))


def is_torchscript_export(path: Path) -> bool:
    """Whether `path` is a TorchScript archive this project exported: a zip with a `code/` folder and
    `constants.pkl` (a `torch.save` checkpoint or a `.keras` file has none) and the `deepvision.json`
    extra file (another program's TorchScript model has none)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return (any("/code/" in f"/{n}" for n in names) and any(n.endswith("constants.pkl") for n in names)
            and any(n.endswith("/extra/deepvision.json") for n in names))


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
    source = "given image" if len(paths) == 1 else "given images"
    if not paths:
        root = loaded.cfg.data.root
        if root and Path(root).is_dir():
            found = image_files(root, IMAGE_SUFFIXES)  # linked folders followed, as training reads them
            step = max(1, len(found) // count)
            paths = found[::step][:count]
            source = f"image{'s' if len(paths) != 1 else ''} under {root}"
    if paths:
        return torch.stack([loaded.pre.load(p) for p in paths]), f"the {len(paths)} {source}"
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


@register_export("classification")
class ClassificationExport(ExportHooks):
    """Pixels (N x C x H x W, 0..255) in, logits out; parity by relative error and top-1 agreement."""

    def module(self) -> nn.Module:
        scale, shift = self.loaded.pre.affine()
        return Deployable(self.loaded.model, scale.squeeze(0), shift.squeeze(0)).eval()

    def describe(self, fmt: str, dynamic_batch: bool) -> dict[str, Any]:
        return describe(self.loaded, dynamic_batch, fmt)

    def samples(self, images: list[str | Path] | None) -> tuple[torch.Tensor, str]:
        return check_inputs(self.loaded, images)

    def write(self, fmt: str, module: nn.Module, samples: Any, path: Path, final_name: str, meta: dict[str, Any],
              dynamic_batch: bool, opset: int | None) -> Path | None:
        c, (h, w) = self.loaded.pre.channels, self.loaded.pre.size
        example = torch.zeros(2 if dynamic_batch else 1, c, h, w)
        if fmt == "onnx":
            from deepvision.export.onnx_export import to_onnx

            return to_onnx(module, example, path, final_name, meta, dynamic_batch, opset)
        _to_torchscript(module, example, path, meta)
        return None

    def run_file(self, fmt: str, path: Path, samples: Any, dynamic_batch: bool) -> np.ndarray:
        return _run_file(fmt, path, samples.float().numpy(), dynamic_batch)

    def parity(self, module: nn.Module, samples: Any, got: Any, tolerance: float, source: str) -> Parity:
        with torch.inference_mode():
            expected = check_finite_output(module(samples.float())).numpy()  # NaN answers: no parity to compare
        diff = float(np.abs(got - expected).max())
        peak = float(np.abs(expected).max())
        rel = diff / peak if peak > 0 else (0.0 if diff == 0 else float("inf"))
        agree = float((got.argmax(1) == expected.argmax(1)).mean())
        line = (f"[INFO] parity on {source}: max |logits difference| {diff:.2e}, relative error {rel:.2e} (of "
                f"max |logit| {peak:.3g}), top-1 agreement {agree * 100:.1f}%")
        failure = (f"max abs difference {diff:.3g} > {tolerance * peak:.3g}, relative error {rel:.3g} > "
                   f"{tolerance:g}, or top-1 agreement {agree * 100:.1f}% < 100%")
        return Parity(rel <= tolerance and agree == 1.0, line, failure,
                      {"max_abs_diff": diff, "relative_diff": rel, "top1_agreement": agree})

    def summary(self, result: ExportResult, dynamic_batch: bool) -> str:
        return (f"exported {result.path} ({result.bytes / 1e6:.1f} MB, {result.format}, "
                f"{'dynamic' if dynamic_batch else 'fixed'} batch); verified against PyTorch")


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
    check: bool = True,
    quiet: bool = False,
) -> ExportResult:
    """Export a run's model to one ONNX or TorchScript file and verify it against PyTorch eager.

    The run's task decides what goes in and out (classification: a fixed-size pixel batch in, logits
    out; detection: one uint8 image of any size in, boxes, scores and labels out) and how the file is
    compared (`tolerance`: the largest relative error of classification logits). `check=False` skips
    the comparison where the task allows it (detection's --no-check).
    """
    say = (lambda *_: None) if quiet else print
    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got '{format}'")
    if opset is not None and format != "onnx":
        raise UserError("--opset applies to --format onnx only")
    if opset is not None:
        check_range("--opset (an ONNX opset version)", opset, 7, 99)
    if out is not None and images:
        refuse_output_over_inputs(out, images)  # an image named like the model file would be replaced
    hooks_cls = hooks_for(RunDir.open(run_dir).read_config().task)
    if dynamic_batch and not hooks_cls.dynamic_batch:
        raise UserError("a detection export takes one image of any size; --dynamic-batch does not apply")
    if not check and not hooks_cls.check_optional:
        raise UserError("this task's exports are always checked against PyTorch")
    loaded = load_run(run_dir, epoch, which, "cpu")
    hooks = hooks_cls(loaded)
    module = hooks.module()
    name = f"{loaded.run.path.name}{SUFFIX[format]}"  # RUN/export: a link planted there is refused, never followed
    target = Path(out) if out else loaded.run.folder("export", create=False) / name
    if target.suffix != SUFFIX[format]:
        raise UserError(f"--out {target}: {FORMAT_NAMES[format]} must end in {SUFFIX[format]}")
    # only an earlier export is replaced (a user's own model, a checkpoint or a .pb renamed is not)
    refuse_replacing(target, is_onnx_export if format == "onnx" else is_torchscript_export,
                     f"{FORMAT_NAMES[format]} deepvision exported")
    with output_folder(target.parent):  # a stopped, failed or refused export leaves no empty folder it made
        meta = hooks.describe(format, dynamic_batch)
        samples, source = hooks.samples(images)
        sidecar = None
        parity = None
        try:
            with atomic_path(target) as tmp:  # nothing reaches `target` unless the file passed its parity check
                sidecar = hooks.write(format, module, samples, tmp, target.name, meta, dynamic_batch, opset)
                got = hooks.run_file(format, tmp, samples, dynamic_batch)  # the file as reloaded from disk
                if check:
                    parity = hooks.parity(module, samples, got, tolerance, source)
                    say(parity.line)
                    if not parity.ok:
                        raise UserError(f"the exported {format} model differs from PyTorch ({parity.failure}); "
                                        f"nothing was written to {target}")
        except BaseException:
            if sidecar is not None:
                unlink_quietly(sidecar)
            raise
    result = ExportResult(target, format, target.stat().st_size, len(samples), source, task=meta["task"],
                          classes=list(meta["classes"]), **(parity.fields if parity else {}))
    say(hooks.summary(result, dynamic_batch))
    return result


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
        from deepvision.onnxrt import ort_session, run_session

        session = ort_session(path)
        outs = [run_session(session, path, [OUTPUT], {INPUT: b})[0] for b in batches]
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            outs = [module(torch.from_numpy(b)).numpy() for b in batches]
    return np.concatenate(outs)
