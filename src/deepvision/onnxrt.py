"""The one place that imports the ONNX packages and opens onnxruntime sessions (export, predict, detect).

Every session runs on the CPU provider with onnxruntime's own log quieted; a file onnxruntime cannot load
is a one-line UserError naming it, and a missing package names the extra to install.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from deepvision.errors import UserError

ONNX_EXTRA = "pip install 'deepvision[onnx]'"


def require(module: str) -> Any:
    """Import onnx / onnxruntime / onnxscript, or a one-line UserError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export and inference need the '{module}' package: {ONNX_EXTRA}") from None


def ort_session(path: str | Path, spin: bool = True, threads: int | None = None) -> Any:
    """An onnxruntime CPU inference session for `path`; `spin=False` stops its idle threads from busy-waiting
    (fair timing when PyTorch runs in between), `threads` fixes its intra-op thread count."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"onnxruntime cannot load {path} ({first})") from None


def check_weights_finite(path: str | Path) -> None:
    """UserError naming the first weight (initializer) of the ONNX file at `path` that holds NaN or
    infinity: every prediction through it would be NaN ("nan%"). Tensors stored outside the file are
    left to onnxruntime."""
    import numpy as np

    onnx = require("onnx")
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's own exception types
        why = str(exc).strip()[:120] or type(exc).__name__
        raise UserError(f"cannot read {path} as an ONNX model ({why})") from None
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                continue
            values = numpy_helper.to_array(tensor)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():
                raise UserError(f"{path}: weight {tensor.name!r} holds NaN or infinite values; the file is "
                                f"damaged (export it again from a run whose weights are finite)")
        for node in graph.node:  # the branches of If/Loop/Scan hold initializers too
            graphs += [attr.g for attr in node.attribute if attr.HasField("g")]
            graphs += [g for attr in node.attribute for g in attr.graphs]
