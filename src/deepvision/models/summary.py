"""Keras-style model summaries and the input-size check run at every training start.

Both trace shapes without arithmetic (see `shapes.py`: an empty batch, or the meta device), so
they cost milliseconds even for VGG16 and never change the weights. Multiply-adds come from
`torch.utils.flop_counter` (FLOPs / 2): convolutions, matrix products and attention, which is what
papers and Keras-era tables count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from deepvision.errors import UserError
from deepvision.models.shapes import (
    LayerCall,
    TraceFailure,
    UnsupportedTrace,
    describe,
    failure_text,
    layer_name,
    meta_forward,
    shape_text,
    shape_trace,
)

_PROBE_SIDES = (32, 48, 64, 96, 128, 160, 192, 224, 227, 256, 299, 320, 384, 448, 512)


def expected_outputs(model: nn.Module) -> int | None:
    """The number of classes the model should output: its `num_classes`, else its last Linear's width."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    last = None
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            last = m
    return last.out_features if isinstance(last, nn.Linear) else None


def _fits(model: nn.Module, channels: int, side: int, expected: int | None) -> bool:
    try:
        out, _ = shape_trace(model, (channels, side, side))
    except (TraceFailure, UnsupportedTrace):
        return False
    return out is not None and (expected is None or (len(out) == 2 and out[1] == expected))


def _reference_side(model: nn.Module, channels: int, expected: int | None, model_name: str, near: int) -> int | None:
    """A square side the model accepts: its registered input size, else the probe size nearest `near`."""
    candidates: list[int] = []
    try:
        from deepvision.models.registry import get_model_spec

        candidates.append(int(get_model_spec(model_name).input_size[1]))
    except Exception:  # unknown or unbuildable name: probe instead
        pass
    candidates += sorted(_PROBE_SIDES, key=lambda s: abs(s - near))
    for side in candidates:
        if _fits(model, channels, side, expected):
            return side
    return None


def _size_message(model: nn.Module, shape: tuple[int, int, int], model_name: str, detail: str,
                  expected: int | None) -> str:
    c, h, w = shape
    lo_side, hi_side = min(h, w), max(h, w)
    ref = _reference_side(model, c, expected, model_name, lo_side)
    head = f"{model_name}: input {h}x{w}"
    fits = lambda side: _fits(model, c, side, expected)
    if ref is not None and ref > lo_side:
        lo, hi = lo_side, ref  # lo fails, hi fits: find the smallest fitting side
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        if hi == ref and not fits(ref + 1):
            return f"{head} does not fit: {detail}; the network needs exactly {ref}x{ref}"
        return f"{head} is too small: {detail}; the minimum input is {hi}x{hi}"
    if ref is not None and ref < hi_side:
        lo, hi = ref, hi_side  # lo fits, hi fails: find the largest fitting side
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if lo == ref and ref > 1 and not fits(ref - 1):
            return f"{head} does not fit: {detail}; the network needs exactly {ref}x{ref}"
        return f"{head} is too large: {detail}; the maximum input is {lo}x{lo}"
    return f"{head} does not fit: {detail}"


def _input_channels(module: nn.Module | None) -> int | None:
    if isinstance(module, nn.Conv2d):
        return module.in_channels
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    return None


def check_input_size(model: nn.Module, input_shape: Sequence[int], model_name: str = "model") -> None:
    """Raise UserError when `model` cannot take (C, H, W) inputs.

    The message names the layer that collapses or no longer fits and the minimum (or maximum) input,
    e.g. "squeezenet_ref: input 224x224 is too small: classifier.pool10 (13x13 average pool) gets a
    12x12 map; the minimum input is 227x227". Models with ops that have no meta kernel are not checked.
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise UserError(f"{model_name}: input shape must be (C, H, W), got {shape}")
    expected = expected_outputs(model)
    try:
        out, calls = shape_trace(model, shape)
    except UnsupportedTrace:
        return
    except TraceFailure as failure:
        wanted = _input_channels(failure.module)
        if wanted is not None and failure.input_shape and len(failure.input_shape) == 4 \
                and failure.input_shape[1] != wanted:
            raise UserError(f"{model_name}: {layer_name(failure.name)} expects {wanted}-channel input but gets "
                            f"{failure.input_shape[1]} channels (set model.in_channels)") from None
        raise UserError(_size_message(model, shape, model_name, failure_text(failure), expected)) from None
    if out is None or expected is None or len(out) != 2 or out[1] == expected:
        return
    spatial = [c for c in calls if c.output_shape is not None and len(c.output_shape) == 4]
    where = ""
    if spatial:
        last = spatial[-1]
        where = f"{layer_name(last.name)} ({describe(last.module)}) leaves {shape_text(last.output_shape)}, "
    detail = f"{where}so the network gives {out[1]} outputs instead of {expected}"
    raise UserError(_size_message(model, shape, model_name, detail, expected))


@dataclass
class LayerRow:
    """One line of a summary: a module, its output shape (no batch axis), parameters and multiply-adds."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    params: int
    trainable: int
    macs: int


@dataclass
class ModelSummary:
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    buffer_values: int = 0  # floating-point buffers (BN running statistics)
    size_bytes: int = 0  # parameters + buffers
    macs: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared parameters count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _param_counts(module: nn.Module, recurse: bool) -> tuple[int, int]:
    params = list(module.parameters(recurse=recurse))
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def summarize(model: nn.Module, input_shape: Sequence[int], name: str = "model", depth: int | None = None
              ) -> ModelSummary:
    """Layer-by-layer table (like Keras' `summary()`) for one (C, H, W) input.

    depth None lists the leaf layers; depth d lists the modules d levels deep (their rows aggregate
    everything below). Rows follow the order of the forward pass; modules the forward pass never
    calls (e.g. auxiliary heads in eval mode) come last with no output shape.
    """
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise UserError(f"--depth must be a whole number from 1 (the model's top-level modules), got {depth}")
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(v) for v in input_shape)
    try:
        with FlopCounterMode(display=False, depth=None) as counter:
            out, calls = meta_forward(model, shape)
    except UnsupportedTrace:  # e.g. detectors: NMS and box sampling depend on the values
        raise UserError(f"{name}: no layer table: its forward pass depends on the data (e.g. NMS), which the "
                        f"meta-device trace cannot follow; `deepvision models` lists its parameter count") from None
    flops = counter.get_flop_counts()
    root = type(model).__name__
    by_module: dict[nn.Module, LayerCall] = {c.module: c for c in calls}
    named = [(n, m) for n, m in model.named_modules() if n]
    order = {c.module: i for i, c in enumerate(calls)}

    def level(n: str) -> int:
        return n.count(".") + 1

    if depth is None:
        selected = [(n, m) for n, m in named if not any(True for _ in m.children())]
    else:
        selected = [(n, m) for n, m in named
                    if level(n) == depth or (level(n) < depth and not any(True for _ in m.children()))]
    chosen = {n for n, _ in selected}

    def covered(n: str) -> bool:
        parts = n.split(".")
        return any(".".join(parts[:i]) in chosen for i in range(1, len(parts) + 1))

    rows: list[tuple[int, LayerRow]] = []
    for n, m in selected:
        total, trainable = _param_counts(m, recurse=True)
        call = by_module.get(m)
        out_shape = call.output_shape[1:] if call is not None and call.output_shape is not None else None
        macs = int(sum(flops.get(f"{root}.{n}", {}).values()) // 2)
        rows.append((order.get(m, len(order) + len(rows)), LayerRow(n, type(m).__name__, out_shape, total, trainable,
                                                                    macs)))
    # parameters held directly by containers (e.g. a ViT's class token) get their own row
    for n, m in [("", model), *named]:
        if (n and covered(n)) or not list(m.parameters(recurse=False)):
            continue
        total, trainable = _param_counts(m, recurse=False)
        rows.append((order.get(m, -1), LayerRow(n or "(model)", f"{type(m).__name__} (own parameters)", None, total,
                                                trainable, 0)))
    rows.sort(key=lambda r: r[0])
    total, trainable = count_parameters(model)
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    size = sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    return ModelSummary(name, shape, out[1:] if out is not None else None, [r for _, r in rows], total, trainable,
                        sum(b.numel() for b in buffers), size, int(counter.get_total_flops() // 2))


def format_shape(shape: tuple[int, ...] | None) -> str:
    """'96 x 55 x 55'; '-' when unknown."""
    return " x ".join(str(v) for v in shape) if shape else "-"


def format_macs(macs: int) -> str:
    """Multiply-adds with a unit: '1.58 G', '431.1 K'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= scale:
            return f"{macs / scale:,.2f} {unit}"
    return str(macs)
