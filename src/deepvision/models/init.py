"""Weight initialisation schemes, including the reference framework's exact formulas.

MXNet's initialisers average fan-in and fan-out ("avg" factor type), unlike PyTorch's Kaiming
functions which use fan-in. `xavier` equals Glorot-uniform; `msra_prelu` is MXNet's MSRAPrelu
(Gaussian, fan average, magnitude 2 / (1 + 0.25^2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as MXNet and PyTorch define them: channels times kernel area."""
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def xavier_uniform_(weight: torch.Tensor, magnitude: float = 3.0) -> torch.Tensor:
    fan_in, fan_out = fans(weight)
    bound = math.sqrt(magnitude / ((fan_in + fan_out) / 2))
    return weight.uniform_(-bound, bound)


@torch.no_grad()
def msra_prelu_(weight: torch.Tensor, slope: float = 0.25) -> torch.Tensor:
    fan_in, fan_out = fans(weight)
    magnitude = 2.0 / (1 + slope**2)
    return weight.normal_(0.0, math.sqrt(magnitude / ((fan_in + fan_out) / 2)))


@torch.no_grad()
def kaiming_normal_(weight: torch.Tensor) -> torch.Tensor:
    return nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


@torch.no_grad()
def he_normal_truncated_(weight: torch.Tensor) -> torch.Tensor:
    """Keras he_normal: truncated normal (2 std), std sqrt(2 / fan_in) corrected for truncation."""
    fan_in, _ = fans(weight)
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


@torch.no_grad()
def uniform_001_(weight: torch.Tensor) -> torch.Tensor:
    """The legacy MXNet FeedForward/Module default: Uniform(-0.01, 0.01)."""
    return weight.uniform_(-0.01, 0.01)


SCHEMES: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "default": None,  # keep PyTorch's own initialisation
    "xavier": xavier_uniform_,
    "glorot": xavier_uniform_,
    "msra": msra_prelu_,
    "kaiming": kaiming_normal_,
    "he_normal": he_normal_truncated_,
    "uniform": uniform_001_,
}


@torch.no_grad()
def initialize(model: nn.Module, scheme: str) -> nn.Module:
    """Apply `scheme` to every conv/linear weight; biases become 0 and norm layers gamma 1, beta 0.

    With scheme 'default' nothing changes (PyTorch's per-layer defaults).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    fn = SCHEMES[scheme]
    if fn is None:
        return model
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            fn(module.weight)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, _NORMS) and getattr(module, "weight", None) is not None:
            module.weight.fill_(1.0)
            module.bias.zero_()
    return model
