"""The one evaluation transform of a run: image file -> uint8 tensor -> normalised model input.

Training stores a `Preprocess` in the run directory (config.yaml, `preprocess` block), and evaluate,
predict and deployment all use it, so a given image produces identical tensors on every path.
Images stay uint8 until the last moment; `normalize` runs on the device as one fused multiply-add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from deepvision.data.augment_plan import short_side_size
from deepvision.data.imageio import open_image, to_mode
from deepvision.errors import UserError, suggest
from deepvision.safeload import check_image_side, check_numbers, printable, shown_value

__all__ = ["Preprocess", "center_crop", "normalize_batch", "open_image", "pil_to_tensor", "resize_short_side",
           "to_mode"]
RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
MAX_INPUT_MAGNITUDE = 1e12  # normalised inputs are near +-3; far beyond this, float32 layers overflow
MIN_INPUT_SPAN = 1e-3  # inputs of black and white pixels closer than this look alike to any network


@dataclass
class Preprocess:
    channels: int  # 1 (grayscale) or 3 (RGB)
    size: tuple[int, int]  # model input (H, W)
    resize: int | None = None  # shorter side before the centre crop; None: resize straight to `size`
    scale: float = 1 / 255
    mean: list[float] = field(default_factory=list)  # per channel, in scaled units; empty = none
    std: list[float] = field(default_factory=list)
    crop: bool = False  # without `resize`: centre-crop larger images (training took random crops) instead of resizing
    interpolation: str = "bilinear"  # resampling of the evaluation resize (pretrained weights may document bicubic)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise UserError(f"preprocess channels must be 1 or 3, got {self.channels!r}")
        try:
            size = tuple(self.size)
            if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size):
                raise TypeError
        except TypeError:
            raise UserError(f"preprocess size must be [height, width] in pixels, got {self.size!r}") from None
        self.size = (int(size[0]), int(size[1]))
        check_image_side("preprocess size", *self.size)
        if self.resize is not None:
            if not isinstance(self.resize, (int, np.integer)) or isinstance(self.resize, bool):
                raise UserError(f"preprocess resize must be a whole number of pixels, got {self.resize!r}")
            self.resize = int(self.resize)
            check_image_side("preprocess resize", self.resize)
        check_numbers("preprocess scale", [self.scale])
        for name, values in (("mean", self.mean), ("std", self.std)):
            if not isinstance(values, (list, tuple, np.ndarray)):
                raise UserError(f"preprocess {name} must be a list of numbers, got {shown_value(values)}")
            check_numbers(f"preprocess {name}", values)
        self.scale = float(self.scale)
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]
        if not isinstance(self.crop, (bool, np.bool_)):
            raise UserError(f"preprocess crop must be true or false, got {shown_value(self.crop)}")
        self.crop = bool(self.crop)
        values = [self.scale, *self.mean, *self.std]
        if not all(np.isfinite(values)) or self.scale <= 0 or min(self.std, default=1.0) <= 0:
            raise UserError("preprocess scale, mean and std must be finite, scale and std above 0 (a negative "
                            "one inverts the image)")
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (0, 1, self.channels):
                raise UserError(f"preprocess {name} has {len(v)} values for {self.channels} channels")
        self._check_affine_map()
        if self.interpolation not in RESAMPLE:
            raise UserError(f"preprocess interpolation must be one of {', '.join(RESAMPLE)}, "
                            f"got {self.interpolation!r}")

    def _check_affine_map(self) -> None:
        """Refuse a scale/mean/std whose map of pixel values 0..255 to model inputs, (x * scale - mean) / std,
        leaves +-MAX_INPUT_MAGNITUDE (scale 1e308 or std 1e-308 overflow float32 to inf, then NaN)."""
        a, b = self.affine()
        reach = a.abs() * 255.0 + b.abs()
        if not bool(torch.isfinite(reach).all()) or float(reach.max()) > MAX_INPUT_MAGNITUDE:
            raise UserError(f"scale {self.scale:g}, mean {self.mean or 'none'} and std {self.std or 'none'} "
                            f"(data.scale, data.mean, data.std) map pixel values 0..255 beyond "
                            f"+-{MAX_INPUT_MAGNITUDE:g} (float32 inputs would overflow to inf/NaN)")
        if float((a.abs() * 255.0).min()) < MIN_INPUT_SPAN:  # scale 1e-300 underflows, 1e-20 is as blank
            std = f" with std {self.std}" if self.std else ""
            raise UserError(f"scale {self.scale:g}{std} (data.scale, data.std) maps pixel values 0..255 to inputs "
                            f"less than {MIN_INPUT_SPAN:g} apart (every image would look blank)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """From a stored mapping (preprocess.json, export metadata): every field validated, one-line
        UserError for a value out of range; TypeError/KeyError when it is not such a mapping at all."""
        if not isinstance(d, dict):
            raise TypeError("preprocess must be a mapping")
        if unknown := next((str(k) for k in d if k not in (fields := cls.__dataclass_fields__)), None):
            raise UserError(f"preprocess key {printable(unknown)[:40]!r} is not a preprocessing setting"
                            f"{suggest(unknown, fields)}; valid: {', '.join(fields)}")  # never dropped unread
        return cls(**{**d, "size": d["size"]})

    # -- file -> uint8 tensor -------------------------------------------------------------
    def load(self, source: str | Path | bytes | Image.Image) -> torch.Tensor:
        """Decode an image (path, bytes or PIL image) to the uint8 C x H x W model-input tensor."""
        img = open_image(source, self.channels)
        resample = RESAMPLE[self.interpolation]
        if self.resize:
            try:
                img = resize_short_side(img, self.resize, resample)
            except UserError as exc:
                name = "image" if isinstance(source, (bytes, bytearray, memoryview, Image.Image)) else str(source)
                raise UserError(f"cannot read {name}: {exc}") from None
            img = center_crop(img, self.size)
        elif self.crop:
            img = center_crop(img, self.size)
        elif img.size != (self.size[1], self.size[0]):
            img = img.resize((self.size[1], self.size[0]), resample)
        return pil_to_tensor(img)

    # -- uint8 batch -> float batch ---------------------------------------------------------
    def affine(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) such that normalised = raw * a + b, each shaped (1, C, 1, 1)."""
        c = self.channels
        mean = torch.tensor(self.mean if self.mean else [0.0] * c, dtype=torch.float32)
        std = torch.tensor(self.std if self.std else [1.0] * c, dtype=torch.float32)
        if mean.numel() == 1 and c > 1:
            mean = mean.expand(c)
        if std.numel() == 1 and c > 1:
            std = std.expand(c)
        a, b = (self.scale / std).view(1, c, 1, 1), (-mean / std).view(1, c, 1, 1)
        return a.to(device), b.to(device)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N)CHW -> float normalised tensor, on x's device."""
        a, b = self.affine(x.device)
        return normalize_batch(x.unsqueeze(0), a, b).squeeze(0) if x.dim() == 3 else normalize_batch(x, a, b)


def normalize_batch(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """raw * a + b as float32 in one fused pass; every path (training, evaluation, prediction) uses it,
    so a given image gives bit-identical model inputs everywhere."""
    return torch.addcmul(b, x.float(), a)


def resize_short_side(img: Image.Image, size: int, resample: int = Image.BILINEAR) -> Image.Image:
    """Resize so the shorter side is `size` (bilinear by default), keeping the aspect ratio (im2rec's rule);
    UserError when the result would be above the pixel limit (`augment_plan.short_side_size`)."""
    return img if min(img.size) == size else img.resize(short_side_size(img.size, size), resample)


def center_crop(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre crop to (H, W) with offsets floor((w - W) / 2), floor((h - H) / 2)."""
    w, h = img.size
    th, tw = size
    if w < tw or h < th:
        img = img.resize((max(w, tw), max(h, th)), Image.BILINEAR)
        w, h = img.size
    left, top = (w - tw) // 2, (h - th) // 2
    return img.crop((left, top, left + tw, top + th))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
