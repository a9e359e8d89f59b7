"""Loading weights into a model, in one place: whole checkpoints (strict), weights files.

`load_weights` restores a model from its own checkpoint (every tensor must fit);
`load_state_dict_file` reads a deepvision checkpoint or a plain (torchvision-format) state dict for
`models.pretrained.load_pretrained`, which allows a different classifier head. Files are always
read with `weights_only=True`: loading never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.fileio import read_torch_file


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True,
                 source: str = "weights") -> dict[str, list[str]]:
    """Load `state` into `model`.

    Shape mismatches are always an error (naming the first few). With strict=False, keys missing on
    either side are reported (e.g. a new classifier head) instead of failing.
    """
    own = model.state_dict()
    state, missing, unexpected, mismatched = _fit(own, state, strict, source)
    filtered = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(filtered, strict=False)
    return {"missing": missing + [m.split()[0] for m in mismatched], "unexpected": unexpected,
            "mismatched": mismatched}


def check_weights_fit(model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """What `load_weights(model, state, strict=True)` checks (the same names, the same shapes), without
    loading anything: `model` may be planned on the meta device (no memory)."""
    _fit(model.state_dict(), state, True, source)


def _fit(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], strict: bool,
         source: str) -> tuple[dict[str, torch.Tensor], list[str], list[str], list[str]]:
    """(state with DDP/compile prefixes removed, missing, unexpected, mismatched); UserError where strict
    loading would fail, or where nothing at all fits."""
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if mismatched and strict:
        raise UserError(f"{source} do not fit this model: {len(mismatched)} tensors differ in shape "
                        f"(first: {'; '.join(mismatched[:2])}); they come from another architecture or class count")
    if strict and (missing or unexpected):
        raise UserError(f"{source} do not fit this model: {len(missing)} missing keys (e.g. {missing[:2]}), "
                        f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); they come from another architecture")
    check_tensor_kinds(own, state, source)
    if not strict and len(missing) == len(own):
        raise UserError(f"{source} share no parameter names with this model; they come from another architecture")
    return state, missing, unexpected, mismatched


def check_tensor_kinds(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    """UserError when a tensor of `state` is an integer where the model's is a float, or the reverse:
    load_state_dict would cast it without a word (integer weights truncated, float counters rounded)."""
    kinds = [k for k, v in state.items() if k in own and v.is_floating_point() != own[k].is_floating_point()]
    if kinds:
        raise UserError(f"{source} do not fit this model: tensor '{kinds[0]}' holds {state[kinds[0]].dtype} where "
                        f"the model holds {own[kinds[0]].dtype}")


def check_weights_finite(state: dict[str, Any], source: str, fix: str) -> None:
    """UserError naming the first floating-point tensor of `state` that holds NaN or infinity, or a
    BatchNorm `running_var` below 0 (its square root is NaN): every prediction through it would be NaN
    ("nan%"). `fix` says what to do instead."""
    for key, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"{source}: weight '{key}' holds NaN or infinite values; {fix}")
        if isinstance(tensor, torch.Tensor) and key.endswith("running_var") and bool((tensor < 0).any()):
            raise UserError(f"{source}: weight '{key}' holds negative variances; {fix}")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A model state dict from a deepvision checkpoint or a plain (torchvision-format) state dict."""
    path = Path(path)
    obj = read_torch_file(path, "weights file", "copy the weights file again")
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):  # a deepvision checkpoint
        obj = obj["model_state"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no model weights (expected a state dict of tensors)")
    check_weights_finite(obj, f"weights file {path}", "the file is damaged or was saved from a diverged model")
    return obj
