"""10-crop oversampling: the 4 corner crops and the centre crop, plus their horizontal mirrors.

Centre offsets are floor((w - W) / 2), floor((h - H) / 2), as the reference cropped; the softmax
probabilities of the 10 crops are averaged.
"""

from __future__ import annotations

import random

import torch

from deepvision.data.preprocess import Preprocess, pil_to_tensor, resize_short_side


def ten_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(..., C, H, W) -> (..., 10, C, h, w): corners TL, TR, BL, BR, centre, then their mirrors."""
    th, tw = size
    h, w = x.shape[-2:]
    if h < th or w < tw:
        raise ValueError(f"image {h}x{w} is smaller than the crop {th}x{tw}")
    offsets = [(0, 0), (0, w - tw), (h - th, 0), (h - th, w - tw), ((h - th) // 2, (w - tw) // 2)]
    crops = [x[..., t : t + th, left : left + tw] for t, left in offsets]
    crops += [c.flip(-1) for c in crops]
    return torch.stack(crops, dim=-4)


class TenCropTransform:
    """PIL image -> uint8 10 x C x H x W tensor (for worker-process loaders)."""

    def __init__(self, pre: Preprocess) -> None:
        self.pre = pre

    def __call__(self, img, rng: random.Random | None = None) -> torch.Tensor:
        if self.pre.resize:
            img = resize_short_side(img, self.pre.resize)
        return ten_crop(pil_to_tensor(img), self.pre.size)
