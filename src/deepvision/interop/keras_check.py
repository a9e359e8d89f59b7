"""Does a deepvision architecture compute what the Keras file's own network computes?

Weights that fit an architecture layer for layer can still sit in a different network: a LeakyReLU
where the architecture has an ELU, BatchNormalization before the activation instead of after, a
stride-2 convolution where it has a max-pool. The file's network is rebuilt from its stored config
(`KerasGraph`) and both run on the same random batch; the output of every weighted layer is
compared in order, so the first layer that differs is named, with the layers in between (where
the difference lies) and what the config says about them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models.keras_graph import KerasGraph

RTOL = 1e-4


class Mismatch(UserError):
    """A mapping refused; `progress` (how many layers agreed) ranks auto mode's candidates."""

    def __init__(self, message: str, progress: int) -> None:
        super().__init__(message)
        self.progress = progress


def _core(module: nn.Module) -> nn.Module:
    """The module whose output is the Keras layer's output before its fused activation."""
    for attr in ("pointwise", "conv", "linear"):
        inner = getattr(module, attr, None)
        if isinstance(inner, nn.Module) and (attr != "conv" or not hasattr(module, "pointwise")):
            return inner
    return module


def _capture(model: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> tuple[list[Any], torch.Tensor]:
    outs: list[Any] = [None] * len(modules)
    index = {id(m): i for i, m in enumerate(modules)}

    def hook(module: nn.Module, _args: tuple, out: Any) -> None:
        i = index[id(module)]
        if outs[i] is None:
            outs[i] = out.detach().clone()  # an in-place activation would change it later

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    return outs, final


def _differs(a: torch.Tensor | None, b: torch.Tensor | None) -> str | None:
    if a is None or b is None:
        return "it is not reached"
    if a.shape != b.shape:
        return f"its output is {tuple(a.shape[1:])} in the file but {tuple(b.shape[1:])} here"
    diff = float((a - b).abs().max())
    scale = float(a.abs().max())
    return f"its output differs by {diff:.3g}" if diff > RTOL * (1 + scale) else None


def _describe(graph: KerasGraph, name: str) -> str:
    entry = graph.entry(name)
    cfg = entry.get("config", {}) or {}
    cls = entry.get("class_name", "?")
    facts = []
    for key in ("activation", "negative_slope", "alpha", "strides", "padding", "pool_size", "max_value"):
        value = cfg.get(key)
        if value is not None and not (key == "activation" and value == "linear"):
            facts.append(f"{key} {value if not isinstance(value, list) else tuple(value)}")
    return f"'{name}' ({cls}{': ' + ', '.join(facts) if facts else ''})"


def check_mapping(graph: KerasGraph, target: nn.Module, pairs: list[tuple[str, nn.Module]], model: str,
                  input_shape: tuple[int, ...]) -> None:
    """Raise Mismatch naming the first Keras layer where `target` (weights already mapped) and the
    file's network (`graph`, weights loaded) part. `pairs`: (Keras layer name, target module) in order."""
    graph.eval()
    was_training = target.training
    target.eval()
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    g_mods = [_core(graph.module_at(name)) for name, _ in pairs]
    t_mods = [module for _, module in pairs]
    try:
        g_out, g_final = _capture(graph, g_mods, x)
        t_out, t_final = _capture(target, t_mods, x)
    except RuntimeError as exc:
        raise Mismatch(f"{model} cannot run the file's input {tuple(input_shape)} ({str(exc).splitlines()[0]})",
                       0) from None
    finally:
        target.train(was_training)
    order = [name for name, *_ in graph.steps]
    previous = -1
    for i, (name, _) in enumerate(pairs):
        why = _differs(g_out[i], t_out[i])
        at = order.index(name.split("/")[0])  # a layer of a nested model: where that model runs
        if why:
            between = [n for n in order[previous + 1 : at] if n in graph.entries and n != name]
            suspects = [_describe(graph, n) for n in between if graph.entries[n].get("class_name") not in
                        ("Dropout", "SpatialDropout2D", "GaussianNoise", "Flatten")]
            here = _describe(graph, name)
            if suspects:
                others = f" (then {', '.join(suspects[1:])})" if len(suspects) > 1 else ""
                detail = f"{suspects[0]}{others}, before {here}, whose {why.removeprefix('its ')}"
            else:
                detail = f"{here}: {why}"
            raise Mismatch(f"the file's network differs from {model} first at Keras layer {detail}", i)
        previous = max(previous, at - 1) if "/" in name else at
    final_why = _differs(torch.softmax(g_final, 1) if g_final.dim() == 2 else g_final,
                         torch.softmax(t_final, 1) if t_final.dim() == 2 else t_final)
    if final_why:
        after = [_describe(graph, n) for n in order[previous + 1 :]]
        raise Mismatch(f"the file's network differs from {model} after its last weighted layer "
                       f"({', '.join(after) or 'the output'}): the output {final_why.split('its output ')[-1]}",
                       len(pairs))
