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
