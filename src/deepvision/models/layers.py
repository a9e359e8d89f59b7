"""Building blocks shared by the reference architectures: profile-aware batch norm and activations.

The reference framework's hidden defaults (table below) differ from PyTorch's. Each architecture
resolves them once through `norm_settings` / `elu_alpha`, from its `reference` switch plus any
explicit override (`bn_eps`, `bn_momentum`, `bn_scale`, `elu_alpha`):

| Family (modern / reference) | BN scale | BN eps | BN momentum | ELU alpha |
|---|---|---|---|---|
| MXNet: AlexNet, VGG, GoogLeNet, SqueezeNet, age/gender | learnable / fixed at 1 | 1e-5 / 1e-3 | 0.1 | 1.0 / 0.25 |
| MXNet ResNet | learnable (input BN: fixed in reference) | 2e-5 | 0.1 | - |
| Keras: EmotionVGG, MiniVGG | learnable | 1e-5 / 1e-3 | 0.1 / 0.01 | 1.0 |

"Fixed at 1" is MXNet's `fix_gamma=True`: the BN weight stays in the state dict with value 1 and
`requires_grad=False`, so it is not trainable and not counted as a trainable parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

Family = Literal["mxnet", "resnet", "keras"]

_BN_DEFAULTS: dict[tuple[str, bool], tuple[float, float, bool]] = {
    # (family, reference) -> (eps, momentum, fixed_scale)
    ("mxnet", False): (1e-5, 0.1, False),
    ("mxnet", True): (1e-3, 0.1, True),
    ("resnet", False): (2e-5, 0.1, False),
    ("resnet", True): (2e-5, 0.1, False),
    ("keras", False): (1e-5, 0.1, False),
    ("keras", True): (1e-3, 0.01, False),
}
_ELU_ALPHA = {("mxnet", False): 1.0, ("mxnet", True): 0.25, ("keras", False): 1.0, ("keras", True): 1.0}
BN_SCALES = ("learnable", "fixed")


@dataclass(frozen=True)
class NormSettings:
    """Batch-norm hyper-parameters: epsilon, PyTorch-style momentum, and whether gamma is frozen at 1."""

    eps: float = 1e-5
    momentum: float = 0.1
    fixed_scale: bool = False

    def bn2d(self, channels: int) -> nn.BatchNorm2d:
        return self._freeze(nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum))

    def bn1d(self, features: int) -> nn.BatchNorm1d:
        return self._freeze(nn.BatchNorm1d(features, eps=self.eps, momentum=self.momentum))

    def _freeze(self, bn: nn.modules.batchnorm._BatchNorm) -> nn.modules.batchnorm._BatchNorm:
        if self.fixed_scale:
            bn.weight.requires_grad_(False)
        return bn


def norm_settings(
    family: Family,
    reference: bool,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
) -> NormSettings:
    """The family's BN settings for the profile, with explicit overrides applied."""
    eps, momentum, fixed = _BN_DEFAULTS[(family, bool(reference))]
    if bn_scale is not None:
        if bn_scale not in BN_SCALES:
            raise ValueError(f"bn_scale must be one of {', '.join(BN_SCALES)}, got {bn_scale!r}")
        fixed = bn_scale == "fixed"
    if bn_eps is not None and not bn_eps > 0:
        raise ValueError(f"bn_eps must be > 0, got {bn_eps}")
    if bn_momentum is not None and not 0 <= bn_momentum <= 1:
        raise ValueError(f"bn_momentum (PyTorch's: 1 - MXNet/Keras momentum) must be in [0, 1], got {bn_momentum}")
    return NormSettings(eps if bn_eps is None else float(bn_eps),
                        momentum if bn_momentum is None else float(bn_momentum), fixed)


def resolve_elu_alpha(family: Family, reference: bool, elu_alpha: float | None) -> float:
    """ELU alpha: 1.0 (PyTorch and Keras) or 0.25 (MXNet's LeakyReLU(act_type='elu') default)."""
    return _ELU_ALPHA[(family, bool(reference))] if elu_alpha is None else float(elu_alpha)


def activation(name: str, channels: int = 1, elu_alpha: float = 1.0) -> nn.Module:
    """'relu', 'elu' (with alpha) or 'prelu' (one slope per channel, initialised to 0.25)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "elu":
        return nn.ELU(alpha=elu_alpha)
    if name == "prelu":
        return nn.PReLU(num_parameters=channels, init=0.25)
    raise ValueError(f"unknown activation {name!r}; valid: relu, elu, prelu")


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def module_key(name: str, taken: set[str], fallback: str, prefix: str) -> str:
    """A unique nn.ModuleDict key for a layer of an imported graph (Keras layer or MXNet node name): other
    characters become "_", and a key that would clash with a ModuleDict attribute or start with a digit gets
    `prefix`; `taken` collects the keys already given."""
    key = re.sub(r"[^0-9A-Za-z_]", "_", name) or fallback
    if hasattr(nn.ModuleDict(), key) or key[0].isdigit():
        key = f"{prefix}{key}"
    base, k = key, 2
    while key in taken:
        key, k = f"{base}_{k}", k + 1
    taken.add(key)
    return key
