"""Putting a model into channels_last memory format without meeting a known crashing CPU kernel.

channels_last (NHWC) makes oneDNN's CPU convolutions markedly faster (docs/performance.md), but one
of its kernels corrupts memory: the weight gradient of a 1x1 convolution with stride > 1 and fewer
than 16 input channels per group (oneDNN's `jit_1x1:avx512_core` backward_weights, through its
"reduce to unit stride" path), with an odd batch of 3 or more on 2 or more threads. The process dies
with a segmentation fault or "double free or corruption". mini-Xception's first shortcut (8 -> 16,
stride 2) is such a layer; any dataset whose size leaves an odd last batch reaches it every epoch.

`to_channels_last` converts the model and, on the CPU, gives each such convolution the equivalent
form "subsample, then a stride-1 1x1 convolution": the same numbers and parameters (the state dict is
unchanged), through a different kernel; `benchmarks/cpu_memory_format.py` prices it (its last column).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# channels per group below which oneDNN picks the faulty kernel (16 = one AVX-512 register of float32)
UNSAFE_BELOW_CHANNELS = 16


class SubsampledPointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution with stride s computed as `x[..., ::s, ::s]` then a stride-1 convolution."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        sh, sw = self.stride
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        # a dense copy of the subsampled input: measured faster than handing the strided view to the kernel
        return F.conv2d(x[:, :, ::sh, ::sw].contiguous(memory_format=fmt), weight, bias, 1, 0, 1, self.groups)


def is_unsafe_on_cpu(module: nn.Module) -> bool:
    """A convolution that would run the faulty strided-1x1 weight-gradient kernel in channels_last."""
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride != (1, 1)
            and module.padding in ((0, 0), "valid") and module.dilation == (1, 1)
            and module.in_channels // module.groups < UNSAFE_BELOW_CHANNELS)


def guard_cpu_kernels(model: nn.Module) -> list[str]:
    """Switch every unsafe convolution of `model` to the subsampled form in place; returns their names."""
    names = []
    for name, module in model.named_modules():
        if is_unsafe_on_cpu(module):
            module.__class__ = SubsampledPointwiseConv2d
            names.append(name)
    return names


def to_channels_last(model: nn.Module, device: torch.device | str) -> nn.Module:
    """`model` in channels_last memory format, with the CPU kernel guard applied when it runs on the CPU."""
    model = model.to(memory_format=torch.channels_last)
    if torch.device(device).type == "cpu":
        guard_cpu_kernels(model)
    return model
