"""Checkpoints: written atomically, loaded with `weights_only=True`, validated before use.

A checkpoint is a plain dict of tensors and primitives (no pickled objects), so loading one never
runs code. Writes go to a temporary file in the same folder, then a rename (`fileio.atomic_path`), so a crash or a
full disk leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepvision.config.schema import MAX_EPOCHS
from deepvision.errors import UserError
from deepvision.fileio import atomic_path, read_torch_file

FORMAT = "deepvision-checkpoint"
VERSION = 1


class _Recorder(io.RawIOBase):
    """A write-only file that remembers the OSError it raised: torch.save reports a failed write
    (a full disk, say) as a RuntimeError without the cause."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file beside `path`, fsync, then rename over it (`fileio.atomic_path`)."""
    with atomic_path(path, hint=" — free some space or choose another --out") as tmp, open(tmp, "wb") as f:
        recorder = _Recorder(f)
        try:
            torch.save(obj, recorder)
        except RuntimeError:  # torch wraps the file's OSError (a full disk); report the real cause
            if recorder.error is not None:
                raise recorder.error from None
            raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a deepvision checkpoint (weights_only=True: nothing is unpickled)."""
    path = Path(path)
    ckpt = read_torch_file(path, "checkpoint", "use another checkpoint (deepvision resume --epoch N, evaluate "
                           "--epoch N)", map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model_state" not in ckpt:
        raise UserError(f"{path} is not a deepvision checkpoint (a plain state dict can be used as model.pretrained)")
    run_id, epoch = ckpt.get("run_id"), ckpt.get("epoch", 0)
    if run_id is not None and not isinstance(run_id, str):
        raise UserError(f"{path}: its run_id is {str(run_id)[:40]!r}, not a run id; the file is damaged, use another "
                        f"checkpoint")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCHS:
        raise UserError(f"{path}: its epoch is {str(epoch)[:40]!r}, not a whole number from 0 to {MAX_EPOCHS:,}; "
                        f"the file is damaged, use another checkpoint")
    return ckpt


def rng_state() -> dict[str, Any]:
    """Every RNG the run touches, as tensors/primitives (weights_only-safe)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _py_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu() if state["torch"].device.type != "cpu" else state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _py_state_to_list(st: tuple) -> list:
    version, internal, gauss = st
    return [version, list(internal), gauss]
