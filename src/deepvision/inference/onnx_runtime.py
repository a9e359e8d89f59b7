"""Predict with an exported `.onnx` file (onnxruntime, CPU provider) instead of a run directory.

The file's `deepvision` metadata (written by `deepvision export`) gives the class names and the
preprocessing, so an image goes through exactly the transform the run used; the normalisation is
inside the model, which takes 0..255 pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models.outputs import class_probabilities
from deepvision.onnxrt import (
    check_external_data,
    check_graph_ops,
    check_same_records,
    check_weights_finite,
    load_model,
    model_metadata,
    ort_session,
    require,
    run_session,
)
from deepvision.safeload import check_class_names, input_file, load_json, printable

METADATA_KEY = "deepvision"  # written by deepvision.export.export


def _shown(value: object) -> str:
    return printable(repr(value))[:60]


def refuse_run_options(path: str | Path, epoch: int | None = None, which: str = "best", device: str = "auto") -> None:
    """Refuse, before the file is read, an option that applies to run directories only: an exported file
    holds one set of weights and runs on the CPU (onnxruntime), so `--epoch` or `--device cuda` would be
    ignored without a word."""
    if epoch is not None or which != "best":
        raise UserError(f"--epoch applies to run directories; {path} holds one set of weights: leave it out")
    if str(device) not in ("auto", "cpu"):
        raise UserError(f"--device {device} applies to run directories; {path} runs on the CPU (onnxruntime): "
                        f"leave it out")


class OnnxClassifier:
    """An exported classifier: `.classes`, `.pre` and `predict_tensors(uint8 batch, top)`."""

    def __init__(self, path: str | Path) -> None:
        self.path = input_file(path, "ONNX file")  # a FIFO is named as one, never opened
        require("onnxruntime")  # a missing package is reported before anything is read
        model = load_model(self.path)  # its metadata_props, not onnxruntime's map, which keeps a repeated key's last
        self.metadata = model_metadata(self.path, model)
        raw = self.metadata.get(METADATA_KEY)
        try:
            self.meta = load_json(raw, f"{self.path} metadata") if raw else None
            if isinstance(self.meta, dict) and self.meta.get("task") == "detection":
                raise UserError(f"{self.path} is an exported detector (boxes out); run it with "
                                f"deepvision.export.detection.load_exported, or `deepvision detect` on its run")
            self.pre = Preprocess.from_dict(self.meta["preprocess"])
            self.classes = self.meta["classes"]
            self.input = self.meta["input"]["name"]
            self.output = self.meta["output"]["name"]
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{self.path} has no deepvision metadata; export it with `deepvision export RUN`") from None
        check_external_data(self.path, model, self.meta)  # before onnxruntime reads weights from beside the file
        check_graph_ops(self.path, model, logits=self.output if isinstance(self.output, str) else None)
        self.session = ort_session(self.path)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if self.input not in inputs or self.output not in outputs:
            raise UserError(f"{self.path}: its metadata names input {self.input!r} and output {self.output!r}, the "
                            f"graph has {inputs} and {outputs}; export it again with `deepvision export RUN`")
        self._check_contract()
        self._check_input_shape()
        self._check_classes()
        check_weights_finite(self.path, model)
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.task = self.meta.get("task", "classification")
        self._check_logits()

    def _check_contract(self) -> None:
        """The metadata must describe what this reader feeds: format version 1 of a classifier, 0..255
        pixels in N x C x H x W, gray or RGB as the channels say (fields an older export lacks are not asked)."""
        meta, fix = self.meta, "export it again with `deepvision export RUN`"
        fmt, version = meta.get("format", "deepvision-export"), meta.get("version", 1)
        if fmt != "deepvision-export" or type(version) is not int or version != 1:  # true and 1.0 equal 1
            raise UserError(f"{self.path}: its metadata is format {_shown(fmt)} version {_shown(version)}; "
                            f"this deepvision reads deepvision-export version 1; {fix}")
        if meta.get("task", "classification") != "classification":
            raise UserError(f"{self.path}: its metadata names task {_shown(meta.get('task'))}; predict runs "
                            f"exported classifiers; {fix}")
        spec = meta["input"] if isinstance(meta["input"], dict) else {}
        wanted = {"range": [0, 255], "layout": "NCHW", "color": "RGB" if self.pre.channels == 3 else "gray"}
        for key, value in wanted.items():
            if key in spec and spec[key] != value:
                raise UserError(f"{self.path}: its metadata gives input {key} {_shown(spec[key])}; the model "
                                f"is fed {value} ({self.pre.channels} channel(s)); {fix}")

    def _check_input_shape(self) -> None:
        """The metadata's channels and size must be what the graph's input takes where its shape is fixed
        (N x C x H x W); otherwise every prediction would fail inside onnxruntime."""
        shape = next(i.shape for i in self.session.get_inputs() if i.name == self.input)
        if len(shape) != 4:
            raise UserError(f"{self.path}: input {self.input!r} has shape {shape}, not N x C x H x W; "
                            f"export it again with `deepvision export RUN`")
        wanted = [self.pre.channels, *self.pre.size]
        fixed = [(d, w) for d, w in zip(shape[1:], wanted) if isinstance(d, int)]
        if any(d != w for d, w in fixed):
            raise UserError(f"{self.path}: its metadata gives {self.pre.channels} channel(s) at "
                            f"{self.pre.size[0]}x{self.pre.size[1]} but input {self.input!r} takes "
                            f"{'x'.join(str(d) for d in shape[1:])}; export it again with `deepvision export RUN`")

    def _check_classes(self) -> None:
        """The metadata's class names: a list of valid, distinct names, one for each of the output's values
        where the graph fixes its width."""
        if not isinstance(self.classes, list):
            raise UserError(f"{self.path}: its metadata's classes are not a list of names; export it again "
                            f"with `deepvision export RUN`")
        check_class_names(self.classes, f"{self.path} metadata")
        check_same_records(self.path, self.metadata, self.meta)
        shape = next(o.shape for o in self.session.get_outputs() if o.name == self.output)
        width = shape[1] if len(shape) == 2 else None  # N x classes; a symbolic width is checked per batch
        if isinstance(width, int) and width != len(self.classes):
            raise UserError(f"{self.path}: its metadata names {len(self.classes)} classes but output "
                            f"{self.output!r} gives {width} values; export it again with `deepvision export RUN`")

    def _check_logits(self) -> None:
        """The output must be logits, which predict turns into probabilities: a graph whose output already
        holds probabilities the graph rule (`check_graph_ops`) does not see (a softmax written by hand, in a
        local function, through a MatMul) would go through softmax twice and report 14% where the model says
        46%. The model runs once on a blank mid-gray image of its own preprocessing; rows all in [0, 1] summing
        to 1 are refused. A Sigmoid's values cannot be told from logits this way."""
        from PIL import Image

        height, width = self.pre.size
        blank = Image.new("RGB" if self.pre.channels == 3 else "L", (width, height), (128,) * self.pre.channels)
        pixels = self.pre.load(blank).unsqueeze(0).repeat(self.fixed_batch or 1, 1, 1, 1)
        try:
            out = np.asarray(self.logits(pixels), dtype=np.float64)
        except UserError:  # a graph that fails to run is reported image by image, as before
            return
        if out.ndim == 2 and out.size and ((out >= 0) & (out <= 1)).all() and \
                (np.abs(out.sum(axis=1) - 1) <= 1e-4).all():
            raise UserError(f"{self.path}: its output {_shown(self.output)} holds probabilities (each row sums to "
                            f"1), not logits, and would go through softmax twice; export the logits (`deepvision "
                            f"export RUN` does)")

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits for a uint8 N x C x H x W batch (one image at a time for a fixed-batch file)."""
        pixels = batch.float().numpy()
        step = self.fixed_batch or len(pixels)
        outs = [run_session(self.session, self.path, [self.output], {self.input: pixels[i : i + step]})[0]
                for i in range(0, len(pixels), step)]
        return np.concatenate(outs)

    def predict_tensors(self, batch: torch.Tensor, top: int) -> list[list[tuple[str, float]]]:
        """Top-k (class, probability) lists for a uint8 batch already resized the run's way."""
        probs = class_probabilities(torch.from_numpy(self.logits(batch)))
        if probs.ndim != 2 or probs.shape[1] != len(self.classes):
            raise UserError(f"{self.path}: output {self.output!r} gives shape {tuple(probs.shape)} for "
                            f"{len(self.classes)} classes; export it again with `deepvision export RUN`")
        k = min(top, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        return [[(self.classes[i], float(v))
                 for v, i in zip(vs.tolist(), ids.tolist())] for vs, ids in zip(values, indices)]
