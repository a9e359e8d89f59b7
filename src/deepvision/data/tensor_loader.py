"""In-memory loader: a dataset held as one uint8 tensor (on the GPU when there is one), batched by
indexing, with no per-sample Python loop. Augmentation runs on whole batches on the same device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from deepvision.config.schema import AugmentConfig
from deepvision.data.sampling import EpochPlan, _mix
from deepvision.data.transforms import inverse_affine


class BatchAugment:
    """Random crop, mirror, rotation and shear on a uint8 N x C x H x W batch.

    Random numbers come from a generator seeded by (seed, epoch, batch), so the result does not
    depend on what ran before: resumed runs see the same augmented batches.
    """

    def __init__(self, cfg: AugmentConfig, out_size: tuple[int, int]) -> None:
        self.cfg = cfg
        self.out_size = out_size

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        n = x.shape[0]
        if cfg.rotate or cfg.max_shear_ratio:
            x = self._affine(x, g)
        th, tw = self.out_size
        h, w = x.shape[-2:]
        if (h, w) != (th, tw):
            if cfg.rand_crop and (h > th or w > tw):
                top = torch.randint(0, h - th + 1, (n,), generator=g)
                left = torch.randint(0, w - tw + 1, (n,), generator=g)
                rows = (top[:, None] + torch.arange(th)).to(x.device)  # n x th
                cols = (left[:, None] + torch.arange(tw)).to(x.device)  # n x tw
                x = x[torch.arange(n, device=x.device)[:, None, None, None],
                      torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]
            else:
                x = self.center(x)
        if cfg.rand_mirror:
            flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x

    def center(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluation view: a centre crop to the output size (offsets floor((h - H) / 2))."""
        th, tw = self.out_size
        h, w = x.shape[-2:]
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top : top + th, left : left + tw]

    def _affine(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        n, _, h, w = x.shape
        if cfg.rotation_mode == "fixed":
            angles = [float(cfg.rotate)] * n
        else:
            angles = ((torch.rand(n, generator=g) * 2 - 1) * cfg.rotate).tolist()
        shears = ((torch.rand(n, generator=g) * 2 - 1) * cfg.max_shear_ratio).tolist()
        theta = torch.zeros(n, 2, 3)
        for i, (angle, shear) in enumerate(zip(angles, shears)):
            a, b, d, e = inverse_affine(angle, shear)
            # pixel-space inverse map conjugated into affine_grid's normalised [-1, 1] coordinates
            theta[i, 0, 0], theta[i, 0, 1] = a, b * h / w
            theta[i, 1, 0], theta[i, 1, 1] = d * w / h, e
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        fill = float(cfg.fill)
        out = F.grid_sample(x.float() - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
        return out.round_().clamp_(0, 255).to(torch.uint8)


class TensorLoader(EpochPlan):
    """Batches (uint8 images, int64 labels) from tensors by indexing.

    Implements the loader protocol used by the engine: `set_epoch`, `__iter__`, `__len__`,
    `num_samples` (samples this rank scores per epoch).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        training: bool,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        last_batch: str = "keep",
        augment: BatchAugment | None = None,
        max_steps: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images.to(device)
        self.labels = labels.to(device=device, dtype=torch.int64)
        super().__init__(len(labels), batch_size, seed=seed, shuffle=shuffle and training, training=training,
                         rank=rank, world=world, last_batch=last_batch, max_steps=max_steps)
        self.augment = augment

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.images.device
        g = torch.Generator().manual_seed(_mix(self.seed + 1 + 7919 * self.rank, self.epoch))  # own crops per rank
        for idx in self.batches():
            idx = idx.to(device)
            x = self.images.index_select(0, idx)
            if self.augment is not None:
                x = self.augment(x, g) if self.training else self.augment.center(x)
            yield x, self.labels.index_select(0, idx)
