"""PyTorch modules that compute what Keras layers compute, for `keras_graph.KerasGraph`.

Tensors of rank 3 and more are kept channels-first (Keras (N, H, W, C) is PyTorch (N, C, H, W));
layers that depend on the axis order (Flatten, Reshape, Permute, Dense on a map, Concatenate, softmax)
convert to Keras' order where it matters, so a Dense after a Flatten takes the file's kernel as is.
Every module with weights lists the Keras weights it takes (`keras_shapes`) and loads them
(`set_keras`), converting layouts: conv kernels (kh, kw, in, out) -> (out, in, kh, kw), dense
kernels (in, out) -> (out, in), transposed-conv kernels (kh, kw, out, in) -> (in, out, kh, kw).

Why one module of ~610 lines: a catalogue of about forty small layer equivalents sharing the layout
helpers (`to_keras`, `to_torch`, `same_pads`); one is checked against its neighbours when Keras' rules differ.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvision.errors import UserError


def to_keras(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1) if x.dim() >= 3 else x


def to_torch(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 1) if x.dim() >= 3 else x


def torch_axis(axis: int, rank: int) -> int:
    """The PyTorch dimension of Keras axis `axis` of a rank-`rank` tensor."""
    axis = axis + rank if axis < 0 else axis
    if rank < 3 or axis == 0:
        return axis
    return 1 if axis == rank - 1 else axis + 1


# the yes/no fields of the supported layers, with Keras' defaults (`scale` of Rescaling is a number, not one)
FLAGS = {"use_bias": True, "center": True, "scale": True, "keepdims": False, "rms_scaling": False, "invert": False}


def flag(cfg: dict[str, Any], key: str, where: str = "") -> bool:
    """Yes/no field `key` of a layer config: JSON true or false, Keras' default when absent. Anything else
    (text, a number, null) is refused naming the layer: read by truthiness, "false" was taken as true."""
    value = cfg.get(key, FLAGS[key])
    if not isinstance(value, bool):
        where = where or f"Keras layer {str(cfg.get('name', '?'))[:80]!r}"
        raise UserError(f"{where}: {key} {json.dumps(value)[:80]} must be true or false (a JSON boolean)")
    return value


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_spec(x: torch.Tensor, kernel: tuple[int, ...], strides: tuple[int, ...],
              dilation: tuple[int, ...]) -> list[int]:
    pads: list[int] = []
    for i in reversed(range(len(kernel))):  # F.pad takes the last axis first
        pads.extend(same_pads(int(x.shape[2 + i]), kernel[i], strides[i], dilation[i]))
    return pads


def _scalar_act(name: str, legacy: bool) -> nn.Module:
    simple: dict[str, Any] = {
        "linear": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "elu": nn.ELU, "selu": nn.SELU,
        "gelu": nn.GELU, "swish": nn.SiLU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus, "softsign": nn.Softsign, "mish": nn.Mish, "hard_swish": nn.Hardswish,
        "hard_silu": nn.Hardswish,
    }
    if name in simple:
        return simple[name]()
    if name == "hard_sigmoid":
        return LegacyHardSigmoid() if legacy else nn.Hardsigmoid()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "exponential":
        return Exponential()
    if name in ("softmax", "log_softmax"):
        return Softmax(-1, log=name == "log_softmax")
    raise UserError(f"Keras activation '{name}' is not supported")


ACTIVATIONS = ("linear", "relu", "relu6", "elu", "selu", "gelu", "swish", "silu", "tanh", "sigmoid", "softplus",
               "softsign", "mish", "hard_swish", "hard_silu", "hard_sigmoid", "leaky_relu", "exponential",
               "softmax", "log_softmax")


def activation_name(value: Any) -> str:
    """The name of a Keras activation as stored in a layer config (a string, or Keras 3's dict form)."""
    if value is None:
        return "linear"
    if isinstance(value, dict):
        inner = value.get("config")
        value = inner if isinstance(inner, str) else value.get("class_name", "?")
    return str(value)


def make_activation(value: Any, legacy: bool) -> nn.Module:
    """The module of a stored activation; `legacy` (Keras 2): hard_sigmoid is 0.2 x + 0.5."""
    return _scalar_act(activation_name(value), legacy)


class LegacyHardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


class TwoClassLogits(nn.Module):
    """A one-unit sigmoid output z read as the logits [0, z] of two classes: their softmax is exactly
    [1 - sigmoid(z), sigmoid(z)], Keras' binary classifier as a softmax over classes 0 and 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), x], dim=1)


class Exponential(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Softmax(nn.Module):
    """Keras' softmax over one axis, or over several at once (`axis=[1, 2]`: a spatial softmax, each
    value divided by the sum over all the listed axes)."""

    def __init__(self, axis: int | tuple[int, ...] = -1, log: bool = False) -> None:
        super().__init__()
        self.axis, self.log = axis, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.axis, int):
            dim = torch_axis(self.axis, x.dim())
            return F.log_softmax(x, dim) if self.log else F.softmax(x, dim)
        y = x - torch.logsumexp(x, [torch_axis(a, x.dim()) for a in self.axis], keepdim=True)
        return y if self.log else y.exp()


class KerasReLU(nn.Module):
    """Keras' ReLU layer: max_value, negative_slope and threshold."""

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.negative_slope == 0 and self.threshold == 0:
            y = F.relu(x)
        else:
            y = torch.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        return y if self.max_value is None else torch.clamp(y, max=self.max_value)


class PReLU(nn.Module):
    """Keras' PReLU: one alpha per element of the input (shared along `shared_axes`)."""

    def __init__(self, alpha_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.alpha_shape = alpha_shape  # Keras order, without the batch axis
        torch_shape = alpha_shape[-1:] + alpha_shape[:-1] if len(alpha_shape) >= 2 else alpha_shape
        self.weight = nn.Parameter(torch.zeros(torch_shape))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"alpha": self.alpha_shape}

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        a = torch.from_numpy(w["alpha"])
        self.weight.data.copy_(a.movedim(-1, 0) if a.dim() >= 2 else a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) - self.weight * F.relu(-x)


class Conv(nn.Module):
    """Conv1D/Conv2D, SeparableConv2D, DepthwiseConv2D and Conv2DTranspose with TensorFlow padding."""

    def __init__(self, kind: str, nd: int, in_ch: int, cfg: dict[str, Any], legacy: bool) -> None:
        super().__init__()
        k = _tuple(cfg.get("kernel_size", 1), nd)
        self.kind, self.kernel = kind, k
        self.strides = _tuple(cfg.get("strides", 1), nd)
        self.dilation = _tuple(cfg.get("dilation_rate", 1), nd)
        self.padding = str(cfg.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same", "causal"):
            raise UserError(f"padding '{self.padding}' is not supported")
        bias = flag(cfg, "use_bias")
        conv_cls = nn.Conv1d if nd == 1 else nn.Conv2d
        static = self._static_padding()
        if kind == "conv":
            self.filters, self.groups = int(cfg["filters"]), int(cfg.get("groups", 1) or 1)
            self.conv = conv_cls(in_ch, self.filters, k, self.strides, static, self.dilation, self.groups, bias)
        elif kind == "depthwise":
            mult = int(cfg.get("depth_multiplier", 1))
            self.conv = conv_cls(in_ch, in_ch * mult, k, self.strides, static, self.dilation, in_ch, bias)
        elif kind == "separable":
            mult = int(cfg.get("depth_multiplier", 1))
            self.conv = conv_cls(in_ch, in_ch * mult, k, self.strides, static, self.dilation, in_ch, False)
            self.pointwise = conv_cls(in_ch * mult, int(cfg["filters"]), 1, bias=bias)
        else:  # transpose
            if cfg.get("output_padding") is not None or any(d != 1 for d in self.dilation):
                raise UserError("Conv2DTranspose with output_padding or dilation is not supported")
            self.conv = nn.ConvTranspose2d(in_ch, int(cfg["filters"]), k, self.strides, bias=bias)
        self.act = make_activation(cfg.get("activation"), legacy)
        self.in_ch = in_ch

    def _static_padding(self) -> int | tuple[int, ...]:
        """A symmetric "same" padding the convolution can apply itself; 0 when F.pad is needed."""
        if self.padding == "same" and all(s == 1 for s in self.strides) and \
                all((k - 1) * d % 2 == 0 for k, d in zip(self.kernel, self.dilation)):
            self._pad_in_forward = False
            return tuple((k - 1) * d // 2 for k, d in zip(self.kernel, self.dilation))
        self._pad_in_forward = self.padding in ("same", "causal")
        return 0

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        w = self.conv.weight.shape
        k = tuple(self.kernel)
        if self.kind == "conv":
            shapes = {"kernel": (*k, int(w[1]), int(w[0]))}
        elif self.kind == "depthwise":
            shapes = {"depthwise_kernel": (*k, self.in_ch, int(w[0]) // self.in_ch)}
        elif self.kind == "separable":
            shapes = {"depthwise_kernel": (*k, self.in_ch, int(w[0]) // self.in_ch),
                      "pointwise_kernel": (*(1,) * len(k), int(w[0]), int(self.pointwise.weight.shape[0]))}
        else:
            shapes = {"kernel": (*k, int(w[1]), int(w[0]))}
        last = self.pointwise if self.kind == "separable" else self.conv
        if last.bias is not None:
            shapes["bias"] = (int(last.bias.shape[0]),)
        return shapes

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        nd = len(self.kernel)
        to_oi = (nd + 1, nd, *range(nd))  # (k..., in, out) -> (out, in, k...)
        if self.kind in ("conv", "transpose"):
            self.conv.weight.data.copy_(torch.from_numpy(w["kernel"].transpose(to_oi).copy()))
        else:
            dw = w["depthwise_kernel"]  # (k..., in, mult) -> (in * mult, 1, k...)
            dw = dw.transpose(nd, nd + 1, *range(nd)).reshape(-1, 1, *self.kernel)
            self.conv.weight.data.copy_(torch.from_numpy(dw.copy()))
            if self.kind == "separable":
                self.pointwise.weight.data.copy_(torch.from_numpy(w["pointwise_kernel"].transpose(to_oi).copy()))
        last = self.pointwise if self.kind == "separable" else self.conv
        if last.bias is not None:
            last.bias.data.copy_(torch.from_numpy(w["bias"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "transpose":
            return self.act(self._transpose(x))
        if self._pad_in_forward:
            if self.padding == "causal":
                x = F.pad(x, ((self.kernel[0] - 1) * self.dilation[0], 0))
            else:
                x = F.pad(x, _pad_spec(x, self.kernel, self.strides, self.dilation))
        y = self.conv(x)
        if self.kind == "separable":
            y = self.pointwise(y)
        return self.act(y)

    def _transpose(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.padding != "same":
            return y
        for i, (k, s) in enumerate(zip(self.kernel, self.strides)):
            size = int(x.shape[2 + i]) * s
            before = max(k - s, 0) // 2
            y = y.narrow(2 + i, before, min(size, int(y.shape[2 + i]) - before))
            short = size - int(y.shape[2 + i])
            if short > 0:
                pad = [0, 0] * (1 - i) + [0, short] + [0, 0] * i
                y = F.pad(y, pad)
        return y


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),) * n


class Dense(nn.Module):
    def __init__(self, in_features: int, cfg: dict[str, Any], legacy: bool, units: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, units or int(cfg["units"]), flag(cfg, "use_bias"))
        self.act = make_activation(cfg.get("activation"), legacy)

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        out, inp = self.linear.weight.shape
        shapes = {"kernel": (int(inp), int(out))}
        if self.linear.bias is not None:
            shapes["bias"] = (int(out),)
        return shapes

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        self.linear.weight.data.copy_(torch.from_numpy(w["kernel"].T.copy()))
        if self.linear.bias is not None:
            self.linear.bias.data.copy_(torch.from_numpy(w["bias"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() >= 3:
            return self.act(to_torch(self.linear(to_keras(x))))
        return self.act(self.linear(x))


class _AnyBatchNorm(nn.modules.batchnorm._BatchNorm):
    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")


class BatchNorm2d(nn.BatchNorm2d):
    """Keras BatchNormalization of a map: loads gamma/beta/moving statistics."""

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        return _bn_shapes(self)

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        _bn_set(self, w)


class BatchNorm1d(_AnyBatchNorm):
    """Keras BatchNormalization of a vector or a 1D sequence."""

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        return _bn_shapes(self)

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        _bn_set(self, w)


def _bn_shapes(bn: nn.modules.batchnorm._BatchNorm) -> dict[str, tuple[int, ...]]:
    n = (bn.num_features,)
    shapes = {}
    if getattr(bn, "keras_scale", True):
        shapes["gamma"] = n
    if getattr(bn, "keras_center", True):
        shapes["beta"] = n
    return {**shapes, "moving_mean": n, "moving_variance": n}


def _bn_set(bn: nn.modules.batchnorm._BatchNorm, w: dict[str, np.ndarray]) -> None:
    bn.weight.data.copy_(torch.from_numpy(w["gamma"]) if "gamma" in w else torch.ones(bn.num_features))
    bn.bias.data.copy_(torch.from_numpy(w["beta"]) if "beta" in w else torch.zeros(bn.num_features))
    bn.running_mean.copy_(torch.from_numpy(w["moving_mean"]))
    bn.running_var.copy_(torch.from_numpy(w["moving_variance"]))


def batch_norm(rank: int, channels: int, cfg: dict[str, Any]) -> nn.Module:
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int) or axis not in (-1, rank - 1):
        raise UserError(f"BatchNormalization over axis {axis} is not supported (only the channel axis, -1)")
    cls = BatchNorm2d if rank == 4 else BatchNorm1d
    bn = cls(channels, eps=float(cfg.get("epsilon", 1e-3)), momentum=1 - float(cfg.get("momentum", 0.99)))
    bn.keras_scale, bn.keras_center = flag(cfg, "scale"), flag(cfg, "center")
    return bn


class LayerNorm(nn.Module):
    """Keras LayerNormalization over trailing Keras axes (the channel axis by default)."""

    def __init__(self, keras_shape: tuple[int, ...], cfg: dict[str, Any]) -> None:
        super().__init__()
        rank = len(keras_shape) + 1
        axes = cfg.get("axis", -1)
        axes = sorted({(a + rank if a < 0 else a) for a in (axes if isinstance(axes, list) else [axes])})
        if axes != list(range(rank - len(axes), rank)) or flag(cfg, "rms_scaling"):
            raise UserError(f"LayerNormalization over axes {cfg.get('axis')} is not supported (trailing axes only)")
        self.shape = tuple(keras_shape[a - 1] for a in axes)
        self.eps = float(cfg.get("epsilon", 1e-3))
        self.scale, self.center = flag(cfg, "scale"), flag(cfg, "center")
        self.weight = nn.Parameter(torch.ones(self.shape))
        self.bias = nn.Parameter(torch.zeros(self.shape))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**({"gamma": self.shape} if self.scale else {}), **({"beta": self.shape} if self.center else {})}

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        if "gamma" in w:
            self.weight.data.copy_(torch.from_numpy(w["gamma"]))
        if "beta" in w:
            self.bias.data.copy_(torch.from_numpy(w["beta"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch(F.layer_norm(to_keras(x), self.shape, self.weight, self.bias, self.eps))


class Pool(nn.Module):
    """Max/average pooling with TensorFlow's valid/same conventions (same: padding not counted)."""

    def __init__(self, kind: str, nd: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.kind, self.nd = kind, nd
        self.kernel = _tuple(cfg.get("pool_size", 2), nd)
        strides = cfg.get("strides")
        self.strides = _tuple(strides, nd) if strides is not None else self.kernel
        self.padding = str(cfg.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same"):
            raise UserError(f"padding '{self.padding}' is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d,
                ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d}[(self.kind, self.nd)]
        if self.padding != "same":
            return pool(x, self.kernel, self.strides)
        pads = _pad_spec(x, self.kernel, self.strides, (1,) * self.nd)
        if not any(pads):
            return pool(x, self.kernel, self.strides)
        if self.kind == "max":
            return pool(F.pad(x, pads, value=float("-inf")), self.kernel, self.strides)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        valid = pool(F.pad(ones, pads), self.kernel, self.strides)
        return pool(F.pad(x, pads), self.kernel, self.strides) / valid


class GlobalPool(nn.Module):
    def __init__(self, kind: str, keepdims: bool) -> None:
        super().__init__()
        self.kind, self.keepdims = kind, keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        if self.kind == "max":
            return torch.amax(x, dim=dims, keepdim=self.keepdims)
        return torch.mean(x, dim=dims, keepdim=self.keepdims)


def _pairs(value: Any, nd: int) -> list[tuple[int, int]]:
    """Keras padding/cropping: int, (a, b) per axis pair or ((before, after), ...)."""
    if isinstance(value, int):
        return [(value, value)] * nd
    value = list(value)
    if nd == 1:
        return [(int(value[0]), int(value[1]))] if len(value) == 2 else [(int(value[0]),) * 2]
    out = []
    for v in value:
        out.append((int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1])))
    return out


class ZeroPad(nn.Module):
    def __init__(self, nd: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        pairs = _pairs(cfg.get("padding", 1), nd)
        self.pads = [p for pair in reversed(pairs) for p in pair]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


class Crop(nn.Module):
    def __init__(self, nd: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.pairs = _pairs(cfg.get("cropping", 0), nd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (a, b) in enumerate(self.pairs):
            x = x.narrow(2 + i, a, int(x.shape[2 + i]) - a - b)
        return x


class UpSample(nn.Module):
    def __init__(self, nd: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.size = _tuple(cfg.get("size", 2), nd)
        self.mode = str(cfg.get("interpolation", "nearest"))
        if self.mode not in ("nearest", "bilinear"):
            raise UserError(f"UpSampling2D interpolation '{self.mode}' is not supported (nearest, bilinear)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            for i, s in enumerate(self.size):
                x = x.repeat_interleave(s, dim=2 + i)
            return x
        out = [int(x.shape[2 + i]) * s for i, s in enumerate(self.size)]
        return F.interpolate(x, size=out, mode="bilinear", align_corners=False)


class Flatten(nn.Module):
    """Flattens in Keras' channels-last order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_keras(x).flatten(1)


class Reshape(nn.Module):
    def __init__(self, target: tuple[int, ...]) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch(to_keras(x).reshape(x.shape[0], *self.target))


class Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch(to_keras(x).permute(0, *self.dims))


class GaussianNoise(nn.Module):
    """Additive (or, for GaussianDropout, multiplicative) noise while training; identity otherwise."""

    def __init__(self, stddev: float, multiplicative: bool = False) -> None:
        super().__init__()
        self.stddev, self.multiplicative = stddev, multiplicative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.stddev == 0:
            return x
        noise = torch.randn_like(x) * self.stddev
        return x * (1 + noise) if self.multiplicative else x + noise


class Rescaling(nn.Module):
    def __init__(self, scale: Any, offset: Any) -> None:
        super().__init__()
        self.scale = [float(v) for v in np.ravel(scale)]
        self.offset = [float(v) for v in np.ravel(offset)]

    @staticmethod
    def _values(x: torch.Tensor, values: list[float]) -> torch.Tensor:
        if len(values) == 1:
            return torch.tensor(values[0], dtype=x.dtype, device=x.device)
        shape = (1, len(values)) + (1,) * (x.dim() - 2)
        return torch.tensor(values, dtype=x.dtype, device=x.device).reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._values(x, self.scale) + self._values(x, self.offset)


def leaves(value: Any) -> list[Any]:
    """The values of a number or a nested list of them, in order (a padding of ((1, 1), (2, 2)): [1, 1, 2, 2])."""
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in leaves(item)]
    return [value]


class Normalization(nn.Module):
    """Keras Normalization over the channel axis: (x - mean) / max(sqrt(variance), 1e-7)."""

    def __init__(self, channels: int, cfg: dict[str, Any], rank: int) -> None:
        super().__init__()
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, rank - 1) or flag(cfg, "invert"):
            raise UserError("Normalization is supported over the last axis (axis=-1, invert=False) only")
        self.channels = channels
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.ones(channels))
        self.from_config = cfg.get("mean") is not None and cfg.get("variance") is not None
        self.stated = (self._stated(cfg, "mean"), self._stated(cfg, "variance")) if self.from_config else None

    def _stated(self, cfg: dict[str, Any], key: str) -> np.ndarray:
        """The config's `mean` or `variance`: one number, or one for each channel (nested lists allowed, as
        Keras broadcasts them); text, yes/no values and other counts are refused as Keras cannot use them."""
        value = cfg[key]
        values = leaves(value)
        if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise UserError(f"{key} {repr(value)[:80]} must be a number or a list of numbers, one per channel")
        if len(values) not in (1, self.channels):
            raise UserError(f"{key} holds {len(values)} values for {self.channels} channels")
        return np.asarray(values, np.float32)

    def _fill(self, mean: np.ndarray, var: np.ndarray) -> None:
        self.mean.copy_(torch.from_numpy(np.broadcast_to(mean.reshape(-1), (self.channels,)).copy()))
        self.variance.copy_(torch.from_numpy(np.broadcast_to(var.reshape(-1), (self.channels,)).copy()))

    def reset_parameters(self) -> None:
        if self.stated is not None:
            self._fill(*self.stated)
        else:
            self.mean.zero_()
            self.variance.fill_(1.0)

    def keras_shapes(self) -> dict[str, tuple[int, ...]]:
        return {} if self.from_config else {"mean": (-1,), "variance": (-1,)}

    @property
    def keras_bookkeeping(self) -> tuple[str, ...]:
        """Variables Keras stores for this layer that the computation does not use: `adapt()`'s sample
        count, and the statistics themselves when the config states them."""
        return ("mean", "variance", "count") if self.from_config else ("count",)

    def set_keras(self, w: dict[str, np.ndarray]) -> None:
        if "mean" in w:
            self._fill(w["mean"], w["variance"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, self.channels) + (1,) * (x.dim() - 2)
        return (x - self.mean.reshape(shape)) / torch.clamp(torch.sqrt(self.variance.reshape(shape)), min=1e-7)
