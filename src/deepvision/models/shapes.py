"""Shape tracing: every layer's output shape without computing anything.

`meta_forward` runs a model on a meta tensor with meta copies of its parameters (via
`torch.func.functional_call`), so it never touches the real weights; `shape_trace` runs a real
model on an empty batch, which is cheaper still. A layer whose output collapses to a size of 0, or
that raises (a kernel bigger than its input, a Linear of the wrong width), is reported by name with
the shape it received. Builders use `feature_shape` to size their flatten layer from `input_size`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from deepvision.errors import UserError
from deepvision.safeload import format_bytes, max_read_bytes


def check_activation(what: str, out: torch.Tensor, shape: Sequence[int] | None = None) -> None:
    """UserError when one sample of a layer's output (planned on the meta device) needs more float32
    memory than one read may take: a tiny model file can declare a padding or an upsampling that asks
    for terabytes at the first prediction. `shape` is the output as the file's framework writes it."""
    need = math.prod(out.shape[1:]) * 4
    ceiling = max_read_bytes()
    if need > ceiling:
        shown = tuple(shape) if shape is not None else tuple(out.shape[1:])
        raise UserError(f"{what}: its output for one sample, {shown}, needs {format_bytes(need)}, above the "
                        f"{format_bytes(ceiling)} one model may take (DEEPVISION_MAX_READ_GB raises it); the "
                        f"layer's settings do not fit the input size")


def layer_output_elements(calls: Sequence[LayerCall]) -> tuple[int, LayerCall] | None:
    """The elements the leaf layers of a trace output for one sample, and the largest layer; None when
    no leaf layer was traced. In-place layers write into their input and are not counted."""
    sized = [(math.prod(c.output_shape[1:]), c) for c in calls
             if c.output_shape and c.module is not None and not any(True for _ in c.module.children())
             and not getattr(c.module, "inplace", False)]
    if not sized:
        return None
    return sum(n for n, _ in sized), max(sized, key=lambda item: item[0])[1]


def check_planned_activations(model: nn.Module, input_shape: Sequence[int], what: str) -> None:
    """Run `model` (planned on the meta device, or real) on one meta sample of `input_shape` and refuse,
    naming `what` (the input's source), when the outputs of its layers for that sample together need
    more float32 memory than one read may take: a globally pooled network's weights do not grow with
    the input, its activations do. A model the meta device cannot run is left to the real build."""
    try:
        _, calls = meta_forward(model, input_shape)
    except (TraceFailure, UnsupportedTrace, RuntimeError, NotImplementedError):
        return
    planned = layer_output_elements(calls)
    if planned is None:
        return
    need, ceiling = planned[0] * 4, max_read_bytes()
    if need > ceiling:
        call = planned[1]
        raise UserError(f"{what}: at input {'x'.join(map(str, input_shape))} the model's layers output "
                        f"{format_bytes(need)} per image (the largest, {call.name}, {tuple(call.output_shape[1:])}), "
                        f"above the {format_bytes(ceiling)} one model may take (DEEPVISION_MAX_READ_GB raises it); "
                        f"the file is damaged or names another input size")


def check_batch_memory(model: nn.Module, input_shape: Sequence[int], batch: int, *, activations: bool,
                       eval_batch: int | None = None) -> None:
    """Refuse in one line, before the first batch is read, a training batch of `batch` float32 samples
    of `input_shape` that needs more memory than one read may take: the batch itself, plus, when
    `activations` (the model computes in this machine's memory, not a GPU's), its layers' outputs,
    which the backward pass keeps. A validation batch of `eval_batch` keeps no graph: its images and the
    largest layer's output. A model that cannot be traced is planned by its input alone."""
    per_input = math.prod(int(v) for v in input_shape)
    layers, largest = 0, None
    if activations:
        try:
            _, calls = shape_trace(model, input_shape)
        except (TraceFailure, UnsupportedTrace, RuntimeError, NotImplementedError):
            calls = []
        planned = layer_output_elements(calls)
        if planned is not None:
            layers, largest = planned
    ceiling, size = max_read_bytes(), "x".join(str(int(v)) for v in input_shape)
    widest = math.prod(largest.output_shape[1:]) if largest is not None else 0
    for role, n, per_image, key in (("training", batch, layers, "data.batch_size"),
                                    ("validation", eval_batch or 0, widest, "data.eval_batch_size")):
        need = n * (per_input + per_image) * 4
        if need <= ceiling:
            continue
        parts = f"the images {format_bytes(n * per_input * 4)}"
        if largest is not None:
            outputs = "the layers' outputs" if role == "training" else "the largest layer's output"
            parts += (f", {outputs} {format_bytes(n * per_image * 4)}; the largest, {largest.name}, "
                      f"{tuple(largest.output_shape[1:])} per image")
        raise UserError(f"a {role} batch of {n:,} images at {size} needs {format_bytes(need)} ({parts}), "
                        f"above the {format_bytes(ceiling)} this machine allows (DEEPVISION_MAX_READ_GB raises "
                        f"it); lower {key} or the input size (data.image_size)")


class InputSizeError(ValueError):
    """An input size the network cannot take (the message names the layer and the valid size)."""


class UnsupportedTrace(RuntimeError):
    """The model uses an operation that cannot run on the meta device."""


@dataclass
class LayerCall:
    """One module's first call during a trace."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None = None
    calls: int = 0


class TraceFailure(Exception):
    """The forward pass failed inside `name` (the innermost module that was running)."""

    def __init__(self, name: str, module: nn.Module | None, input_shape: tuple[int, ...] | None, reason: str) -> None:
        super().__init__(reason)
        self.name, self.module, self.input_shape, self.reason = name, module, input_shape, reason


def hw(input_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from a square side or an (H, W) / (C, H, W) sequence."""
    if isinstance(input_size, int):
        return input_size, input_size
    size = [int(v) for v in input_size]
    if len(size) == 1:
        return size[0], size[0]
    if len(size) not in (2, 3):
        raise ValueError(f"input_size must be a side, (H, W) or (C, H, W), got {input_size!r}")
    return size[-2], size[-1]


@contextlib.contextmanager
def meta_init() -> Iterator[None]:
    """Build modules whose parameters and buffers live on the meta device (no memory, no init cost).

    Unlike `with torch.device("meta")`, other tensors created while building stay real, so builders
    that compute layer widths with tensor ops (torchvision's RegNets) still work.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def meta_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register_parameter(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    def meta_buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(module, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter = meta_parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = meta_buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {n: torch.empty_like(t, device="meta") for n, t in model.named_parameters(remove_duplicate=False)}
    state.update({n: torch.empty_like(t, device="meta") for n, t in model.named_buffers(remove_duplicate=False)})
    return state


def _on_meta(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.device.type == "meta" for t in tensors)


def _traced(model: nn.Module, x: torch.Tensor, use_meta_state: bool) -> tuple[tuple[int, ...] | None, list[LayerCall]]:
    calls: dict[nn.Module, LayerCall] = {}
    stack: list[LayerCall] = []
    handles = []

    def pre(module: nn.Module, args: tuple) -> None:
        t = _first_tensor(args)
        shape = tuple(t.shape) if t is not None else None
        if module not in calls:
            calls[module] = LayerCall(names[module], module, shape)
        stack.append(LayerCall(names[module], module, shape))

    def post(module: nn.Module, args: tuple, output: Any) -> None:
        current = stack.pop()
        call = calls[module]
        call.calls += 1
        t = _first_tensor(output)
        if call.output_shape is None and t is not None:
            call.output_shape = tuple(t.shape)
        if t is not None and any(d == 0 for d in t.shape[1:]):
            raise TraceFailure(current.name, module, current.input_shape, f"its output {tuple(t.shape)} is empty")

    names = {m: n for n, m in model.named_modules() if n}
    for module in names:
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = functional_call(model, _meta_state(model), (x,), strict=False) if use_meta_state else model(x)
    except TraceFailure:
        raise
    except NotImplementedError as exc:
        raise UnsupportedTrace(str(exc)) from None
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if x.device.type == "meta" and "meta" in reason.lower() and "tensor" in reason.lower():
            raise UnsupportedTrace(reason) from None
        if stack:
            raise TraceFailure(stack[-1].name, stack[-1].module, stack[-1].input_shape, reason) from None
        raise TraceFailure("", None, tuple(x.shape), reason) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    t = _first_tensor(out)
    return (tuple(t.shape) if t is not None else None), list(calls.values())


def meta_forward(model: nn.Module, input_shape: Sequence[int], batch: int = 1
                 ) -> tuple[tuple[int, ...] | None, list[LayerCall]]:
    """Run `model` in eval mode on a meta tensor of shape (batch, *input_shape).

    Real parameters are swapped for meta copies during the call. Returns the output shape and one
    `LayerCall` per submodule in order of first call. Raises TraceFailure naming the layer that
    failed or whose output collapsed to a size of 0, or UnsupportedTrace when an op has no meta kernel.
    """
    x = torch.empty((batch, *[int(v) for v in input_shape]), device="meta")
    return _traced(model, x, not _on_meta(model))


def shape_trace(model: nn.Module, input_shape: Sequence[int]) -> tuple[tuple[int, ...] | None, list[LayerCall]]:
    """Like `meta_forward` with batch 1, but cheaper for real models: they run on an empty batch.

    With zero samples no arithmetic happens and no meta kernels are needed (the first meta
    elementwise op imports a second of compiler machinery). Shapes are reported with batch 1. A
    failure on the empty batch is confirmed on the meta device, since a few ops dislike empty
    batches (e.g. `reshape(0, -1)`).
    """
    if _on_meta(model):
        return meta_forward(model, input_shape)
    first = next(iter([*model.parameters(), *model.buffers()]), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    x = torch.empty((0, *[int(v) for v in input_shape]), device=device, dtype=dtype)
    try:
        out, calls = _traced(model, x, False)
    except (TraceFailure, UnsupportedTrace):
        return meta_forward(model, input_shape)

    def one(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return (1, *shape[1:]) if shape else shape

    for call in calls:
        call.input_shape, call.output_shape = one(call.input_shape), one(call.output_shape)
    return one(out), calls


def describe(module: nn.Module | None) -> str:
    """A short human description: '3x3/2 max pool', '7x7/2 conv, 96 filters', 'fully-connected, 1024 inputs'."""
    if module is None:
        return "input"

    def pair(v: Any) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))

    if isinstance(module, nn.Conv2d):
        k, s = pair(module.kernel_size), pair(module.stride)
        stride = f"/{s[0]}" if s != (1, 1) else ""
        return f"{k[0]}x{k[1]}{stride} conv, {module.out_channels} filters"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s = pair(module.kernel_size), pair(module.stride or module.kernel_size)
        kind = "max" if isinstance(module, nn.MaxPool2d) else "average"
        stride = f"/{s[0]}" if s != (1, 1) else ""
        return f"{k[0]}x{k[1]}{stride} {kind} pool"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "adaptive pool"
    if isinstance(module, nn.Linear):
        return f"fully-connected, {module.in_features} inputs"
    return type(module).__name__


def shape_text(shape: tuple[int, ...] | None) -> str:
    """'a 12x12 map' for N x C x H x W, '4096 features' for N x F, else the shape."""
    if shape is None:
        return "no tensor"
    if len(shape) == 4:
        return f"a {shape[2]}x{shape[3]} map"
    if len(shape) == 2:
        return f"{shape[1]} features"
    return f"shape {tuple(shape[1:])}"


def failure_text(failure: TraceFailure) -> str:
    """'pool10 (13x13 average pool) gets a 12x12 map'."""
    if not failure.name:
        return f"the model rejects it ({failure.reason})"
    return f"{layer_name(failure.name)} ({describe(failure.module)}) gets {shape_text(failure.input_shape)}"


def layer_name(name: str) -> str:
    """A qualified module name for messages: 'classifier.pool10', or 'layer 1' for bare Sequential indices."""
    return f"layer {name}" if name[:1].isdigit() else name


def smallest(passes: Callable[[int], bool], start: int, limit: int = 4096) -> int | None:
    """The smallest side >= start for which `passes` holds (assumed monotone), or None up to `limit`."""
    hi = max(start, 1)
    while not passes(hi):
        if hi >= limit:
            return None
        hi = min(limit, hi * 2)
    lo = start - 1  # known (or assumed) failing
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def feature_shape(features: nn.Module, in_channels: int, input_size: int | Sequence[int],
                  prefix: str = "features") -> tuple[int, ...]:
    """Per-sample output shape of a feature extractor; InputSizeError names the collapsing layer.

    `prefix` is the extractor's attribute name in its model, so messages use the model's layer names.
    """
    h, w = hw(input_size)
    try:
        out, _ = shape_trace(features, (in_channels, h, w))
    except TraceFailure as failure:
        if failure.name and prefix:
            failure.name = f"{prefix}.{failure.name}"

        def passes(side: int) -> bool:
            try:
                shape_trace(features, (in_channels, side, side))
            except TraceFailure:
                return False
            return True

        minimum = smallest(passes, min(h, w) + 1)  # a min(h, w) square fails as the input did
        hint = f"; the minimum input is {minimum}x{minimum}" if minimum else ""
        raise InputSizeError(f"input {h}x{w} is too small: {failure_text(failure)}{hint}") from None
    assert out is not None
    return out[1:]


def flat_features(features: nn.Module, in_channels: int, input_size: int | Sequence[int],
                  prefix: str = "features") -> int:
    """Width of the flattened feature map for `input_size` (what the first fully-connected layer sees)."""
    return math.prod(feature_shape(features, in_channels, input_size, prefix))
