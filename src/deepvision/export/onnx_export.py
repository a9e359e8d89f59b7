"""ONNX writing (torch.onnx's exporter, weights inside the file, or beside it past protobuf's limit)."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.onnxrt import EXTERNAL_KEY, external_data_record, require

METADATA_KEY = "deepvision"  # read by deepvision.inference.onnx_runtime
INPUT, OUTPUT = "pixels", "logits"
_ONNX_SINGLE_FILE_LIMIT = 1_900_000_000  # protobuf's 2 GB cap, with room for the graph


@contextlib.contextmanager
def _quiet_exporter_logs():
    """The exporter's own log lines (opset fallbacks, a version converter's traceback) stay out of the output:
    what matters reaches the user as one line (a UserError) instead."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def to_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path, final_name: str, meta: dict[str, Any],
            dynamic_batch: bool, opset: int | None) -> Path | None:
    """Export to `path` with the metadata. Models over protobuf's 2 GB limit keep their weights in
    `<final_name>.data` beside it (returned), its size and SHA-256 recorded in the metadata; others are one
    file (None)."""
    onnx = require("onnx")
    require("onnxscript")
    dynamic = {"pixels": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter_logs():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapper, (example,), input_names=[INPUT], output_names=[OUTPUT],
                                        opset_version=opset, dynamo=True, external_data=False,
                                        dynamic_shapes=dynamic, verbose=False)
    except Exception as exc:  # the exporter raises many types for operators it cannot convert
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"torch.onnx could not export this model ({type(exc).__name__}: {reason})") from None
    if program is None:
        raise UserError("torch.onnx returned no program")
    model = program.model_proto
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and written != opset:  # the exporter falls back to its own opset when it cannot convert
        raise UserError(f"torch.onnx could not write this model at opset {opset} (it gives opset {written}); "
                        f"give --opset {written} or leave --opset out")
    sidecar = path.parent / f"{final_name}.data"
    big = model.ByteSize() > _ONNX_SINGLE_FILE_LIMIT
    if big:  # the weights first, so that the metadata can record the size and digest of the file they went to
        from onnx.external_data_helper import convert_model_to_external_data, write_external_data_tensors

        convert_model_to_external_data(model, all_tensors_to_one_file=True, location=sidecar.name)
        write_external_data_tensors(model, str(path.parent))
        meta = {**meta, EXTERNAL_KEY: external_data_record(sidecar)}
    del model.metadata_props[:]
    for key, value in ((METADATA_KEY, json.dumps(meta)), ("classes", json.dumps(meta["classes"])),
                       ("preprocess", json.dumps(meta["preprocess"]))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "deepvision"
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))
    return sidecar if big else None
