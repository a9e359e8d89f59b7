"""In-memory data: a dataset held as one uint8 tensor (on the GPU when there is one), batched by indexing, with no
per-sample Python loop. Augmentation runs on whole batches on the same device."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from deepvision.config.schema import AugmentConfig
from deepvision.data.augment_plan import AugmentPlan, draw_plan, inverse_affine, reseed, sample_seed
from deepvision.data.loader import BatchSource


class BatchAugment:
    """The torch executor of augmentation plans: crop, mirror, rotation, shear and random-resized crops on a uint8
    N x C x H x W batch, on the batch's device.

    `apply(x, plans)` executes one `AugmentPlan` per sample; `plans_for` draws them per sample from (seed, epoch,
    index), like the file and record loaders, so the same sample gets the same augmentation everywhere."""

    def __init__(self, cfg: AugmentConfig, out_size: tuple[int, int]) -> None:
        self.cfg = cfg
        self.out_size = out_size

    def plans_for(self, indices: list[int], sizes: tuple[int, int] | list[tuple[int, int]], seed: int, epoch: int
                  ) -> list[AugmentPlan]:
        """The plans of dataset samples `indices` in epoch `epoch` (per-sample seeds, as every loader), for
        images of (width, height) `sizes` (one size for all, or one per sample)."""
        rng = random.Random()
        sizes = sizes if isinstance(sizes, list) else [sizes] * len(indices)
        return [draw_plan(self.cfg, size, self.out_size, reseed(rng, sample_seed(seed, epoch, i)))
                for i, size in zip(indices, sizes)]

    def apply(self, x: torch.Tensor, plans: list[AugmentPlan]) -> torch.Tensor:
        n = x.shape[0]
        if any(p.box is not None for p in plans):
            x = self._resized_crops(x, plans)
        else:
            if any(p.affine for p in plans):
                x = self._affine(x, plans)
            th, tw = self.out_size
            h, w = x.shape[-2:]
            if (h, w) != (th, tw):
                if any(p.crop is not None for p in plans):
                    centre = ((w - tw) // 2, (h - th) // 2)
                    left, top = zip(*(p.crop if p.crop is not None else centre for p in plans))
                    rows = (torch.tensor(top)[:, None] + torch.arange(th)).to(x.device)  # n x th
                    cols = (torch.tensor(left)[:, None] + torch.arange(tw)).to(x.device)  # n x tw
                    x = x[torch.arange(n, device=x.device)[:, None, None, None],
                          torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                          rows[:, None, :, None], cols[:, None, None, :]]
                else:
                    x = self.center(x)
        if any(p.mirror for p in plans):
            flip = torch.tensor([p.mirror for p in plans], device=x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x

    def center(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluation view: a centre crop to the output size (offsets floor((h - H) / 2))."""
        th, tw = self.out_size
        h, w = x.shape[-2:]
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top : top + th, left : left + tw]

    def _resized_crops(self, x: torch.Tensor, plans: list[AugmentPlan]) -> torch.Tensor:
        th, tw = self.out_size
        out = []
        for img, p in zip(x, plans):
            left, top, cw, ch = p.box
            region = img[None, :, top : top + ch, left : left + cw].float()
            resized = F.interpolate(region, size=(th, tw), mode="bilinear", align_corners=False,
                                    antialias=cw > tw and ch > th)
            out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
        return torch.cat(out)

    def _affine(self, x: torch.Tensor, plans: list[AugmentPlan]) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = torch.zeros(n, 2, 3)
        for i, p in enumerate(plans):
            a, b, d, e = inverse_affine(p.angle, p.shear, p.zoom)
            # pixel-space inverse map conjugated into affine_grid's normalised [-1, 1] coordinates
            theta[i, 0, 0], theta[i, 0, 1] = a, b * h / w
            theta[i, 1, 0], theta[i, 1, 1] = d * w / h, e
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        if self.cfg.fill_mode == "nearest":  # edge pixels repeated
            out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        else:
            fill = float(self.cfg.fill)
            out = F.grid_sample(x.float() - fill, grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False) + fill
        return out.round_().clamp_(0, 255).to(torch.uint8)


class TensorSource(BatchSource):
    """Images and labels held as tensors (on the GPU when there is one), batched by indexing; training
    batches are augmented on the same device by `augment` with per-sample plans."""

    run_in = "inline"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, augment: BatchAugment | None = None,
                 training: bool = False, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images.to(device)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.augment, self.training, self.seed = augment, training, seed

    def __len__(self) -> int:
        return len(self.labels)

    def make(self, epoch: int, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        idx = torch.tensor(indices, dtype=torch.int64, device=self.images.device)
        x = self.images.index_select(0, idx)
        if self.augment is not None:
            if self.training and self.augment.cfg.active:
                size = (self.images.shape[-1], self.images.shape[-2])
                x = self.augment.apply(x, self.augment.plans_for(indices, size, self.seed, epoch))
            else:
                x = self.augment.center(x)
        return x, self.labels.index_select(0, idx), []

