"""Per-batch work inside record-loader workers: decode, augment with OpenCV, store into the batch.

`_BatchMaker` turns one (epoch, indices) task into one uint8 (or normalised float32) batch. Each sample
is augmented by executing its augmentation plan (`data.augment_plan.draw_plan`) with OpenCV: the crop,
mirror and affine warp are fused so only output pixels are computed.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from deepvision.config.schema import AugmentConfig
from deepvision.data.augment_plan import AugmentPlan, draw_plan, inverse_affine, prepared_size, reseed, sample_seed
from deepvision.data.imageio import DecodeError, Decoder
from deepvision.data.records.header import image_bytes
from deepvision.data.records.record_file import RecordFile
from deepvision.data.records.recordio import RecordError
from deepvision.data.records.shared_batches import _new_batch, _SlotPool, _SlotRef
from deepvision.errors import UserError

if TYPE_CHECKING:
    from deepvision.data.records.loader import RecordDataset


@contextlib.contextmanager
def forking_cv2() -> Iterator[None]:
    """Make OpenCV single-threaded while worker processes are forked, then restore it.

    A process forked while OpenCV's thread pool is running inherits the pool's locks but not its
    threads, and hangs at its first parallel OpenCV call; with one thread, the children run OpenCV
    inline. The parent gets its thread count back once the workers exist.
    """
    n = cv2.getNumThreads()
    if n != 1:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if n != 1:
            cv2.setNumThreads(n)


def _corrupt(file: RecordFile, pos: int, why: str) -> RecordError:
    return RecordError(f"{file.path}: {file.describe(pos)} is corrupt: {why}; set data.skip_corrupt: true (evaluate "
                       f"--skip-corrupt, skip_corrupt=True) to skip such records, or re-pack the images", index=pos,
                       offset=int(file.offsets[pos]))


@dataclass
class _Spec:
    """What every sample goes through, mirroring SampleTransform(preprocess, augment, training)."""

    size: tuple[int, int]
    channels: int
    resize: int | None
    training: bool
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    channels_last: bool = True
    seed: int = 0
    skip_corrupt: bool = False
    decoder: str = "auto"
    crop_only: bool = False  # Preprocess.crop: without `resize`, centre-crop (MXNet) instead of resizing
    affine: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # float32 output x * a + b, made in workers

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.affine is not None else np.uint8)


class _BatchMaker(Dataset):
    """Keyed by (epoch, indices): decodes and augments one whole batch into one tensor."""

    def __init__(self, dataset: RecordDataset, spec: _Spec) -> None:
        self.file = dataset.file
        self.positions = dataset._positions()
        self.labels = dataset.labels
        self.spec = spec
        self.slots: _SlotPool | None = None  # set before the workers fork
        self._decoder: Decoder | None = None
        self._scratch: np.ndarray | None = None
        self._planes: list[np.ndarray] = []  # C x (H x W) uint8: the sample split into planes, reused

    def __getstate__(self) -> dict[str, Any]:  # only a forked worker can share the anonymous slot pool
        return {**self.__dict__, "_decoder": None, "_scratch": None, "_planes": [], "slots": None}

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, task: tuple[int, list[int]]) -> tuple[torch.Tensor | _SlotRef, bytes, list, tuple | None]:
        """(images, float32 label bytes, skipped, error); images is a reference to the slot holding them
        when the slot pool is in use (nothing but the slot's number crosses the process boundary)."""
        epoch, indices = task
        spec = self.spec
        if self._decoder is None:
            self._decoder = Decoder(spec.channels, spec.decoder)
        th, tw = spec.size
        c = spec.channels
        shape = (len(indices), c, th, tw)
        info = get_worker_info()
        slot = self.slots.acquire(info.id) if (self.slots is not None and info is not None) else -1
        x = self.slots.tensor(slot, shape) if slot >= 0 else _new_batch(shape, spec)
        arr = x.numpy()
        view = arr.transpose(0, 2, 3, 1) if spec.channels_last else arr  # per sample: H x W x C or C x H x W
        direct = spec.channels_last and spec.affine is None  # write straight into the batch
        if not direct and self._scratch is None:
            self._scratch = np.empty((th, tw, c), np.uint8)
            self._planes = [np.empty((th, tw), np.uint8) for _ in range(c)]
        aug = spec.augment if spec.training else _NO_AUG
        rng = random.Random()
        kept: list[int] = []
        skipped: list[tuple[int, int, str]] = []
        for index in indices:
            pos = int(self.positions[index])
            try:
                img = _prepare(self._decode(pos), spec, aug)  # the resize refuses a result above the pixel limit
            except (RecordError, DecodeError, ValueError, UserError) as exc:
                reason = str(exc)
                if not spec.skip_corrupt:
                    error = _corrupt(self.file, pos, reason)
                    if slot >= 0:
                        self.slots.release(slot)
                    return x[:0], b"", [], (str(error), error.index, error.offset)
                skipped.append((pos, int(self.file.offsets[pos]), reason))
                continue
            reseed(rng, sample_seed(spec.seed, epoch, index))  # = random.Random(seed), without the Python wrapper
            k = len(kept)
            if direct:
                _transform_into(img, rng, view[k], spec, aug)
            else:
                _transform_into(img, rng, self._scratch, spec, aug)
                _store(self._scratch, view[k], spec, self._planes)
            kept.append(index)
        labels = self.labels[np.asarray(kept, dtype=np.int64)].tobytes()  # bytes: no shared-memory round trip
        if slot >= 0:
            return _SlotRef(self.slots.key, slot, (len(kept), c, th, tw)), labels, skipped, None
        return (x[: len(kept)] if len(kept) < len(indices) else x), labels, skipped, None

    def _decode(self, pos: int) -> np.ndarray:
        return self._decoder(image_bytes(self.file.read(pos)))


def _store(src: np.ndarray, dst: np.ndarray, spec: _Spec, planes: list[np.ndarray]) -> None:
    """Copy an H x W x C uint8 sample into the batch: transposed to C x H x W and/or normalised to float32.

    `planes`: C reusable H x W uint8 buffers for the channel split (allocating them per sample costs as
    much as the split itself). The float conversion is one `addWeighted` per plane, the fastest of
    OpenCV's, numpy's and torch's u8 -> f32 affine conversions when they were compared (docs/performance.md).
    """
    if spec.affine is None:  # C x H x W uint8 (channels-last uint8 samples are written in place)
        if src.shape[2] == 1:
            dst[0] = src[:, :, 0]
        else:
            cv2.split(src, list(dst))  # straight into the C x H x W sample's planes
        return
    a, b = spec.affine
    if spec.channels_last:  # dst H x W x C float32: (x - m) * a with m = -b / a, per channel
        if len(set(a)) == 1:
            cv2.subtract(src, tuple(-bb / a[0] for bb in b) + (0.0,) * (4 - len(b)), dst=dst, dtype=cv2.CV_32F)
            if a[0] != 1.0:
                cv2.multiply(dst, a[0], dst=dst)
        else:
            cv2.multiply(src, tuple(a) + (0.0,) * (4 - len(a)), dst=dst, dtype=cv2.CV_32F)
            cv2.add(dst, tuple(b) + (0.0,) * (4 - len(b)), dst=dst)
        return
    split = [src[:, :, 0]] if src.shape[2] == 1 else cv2.split(src, planes)
    for ch, plane in enumerate(split):  # dst C x H x W float32
        cv2.addWeighted(plane, a[ch], plane, 0.0, b[ch], dst=dst[ch], dtype=cv2.CV_32F)


_NO_AUG = AugmentConfig()


def _interp(src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    return cv2.INTER_AREA if dst_w < src_w and dst_h < src_h else cv2.INTER_LINEAR


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    out = cv2.resize(img, (w, h), interpolation=_interp(img.shape[1], img.shape[0], w, h))
    return out if out.ndim == 3 else out[:, :, None]


def _transform_into(img: np.ndarray, rng: random.Random, out: np.ndarray, spec: _Spec, aug: AugmentConfig) -> None:
    """Write the augmented (training) or centre-cropped (evaluation) H x W x C sample, prepared by
    `_prepare`, into `out`."""
    apply_plan(img, draw_plan(aug, (img.shape[1], img.shape[0]), spec.size, rng), out, aug.fill, aug.fill_mode)


def _prepare(img: np.ndarray, spec: _Spec, aug: AugmentConfig) -> np.ndarray:
    """The deterministic resize before the random steps (`augment_plan.prepared_size`; area filter when shrinking)."""
    target = prepared_size((img.shape[1], img.shape[0]), spec.size, spec.resize, aug, spec.crop_only)
    return img if target is None else _resize(img, *target)


def apply_plan(img: np.ndarray, plan: AugmentPlan, out: np.ndarray, fill: int = 255, fill_mode: str = "constant"
               ) -> None:
    """Execute `plan` on a prepared H x W x C image with OpenCV, writing the output-size sample into `out`
    (pixels the affine uncovers: `fill`, or the nearest edge pixel with fill_mode "nearest")."""
    th, tw = out.shape[:2]
    if plan.box is not None:
        left, top, cw, ch = plan.box
        region = img[top : top + ch, left : left + cw]
        if plan.mirror:
            region = region[:, ::-1]
        cv2.resize(region, (tw, th), dst=out, interpolation=_interp(cw, ch, tw, th))
        return
    h, w = img.shape[:2]
    affine = (plan.angle, plan.shear, plan.zoom) if plan.affine else None
    outside = False
    if plan.crop is not None:
        left, top = plan.crop
        outside = w < tw or h < th  # PIL's crop pads the missing part with zeros
    else:
        if w < tw or h < th:  # preprocess.center_crop: stretch up to the crop size first
            img = _resize(img, max(w, tw), max(h, th))
            h, w = img.shape[:2]
        left, top = (w - tw) // 2, (h - th) // 2
    mirror = plan.mirror
    if affine is not None and not outside:
        _warp_into(img, out, affine, left, top, mirror, fill, fill_mode)
        return
    if affine is not None:
        canvas = np.empty_like(img)
        _warp_into(img, canvas, affine, 0, 0, False, fill, fill_mode)
        img = canvas
    if outside:
        out[:] = 0
        region = img[top : top + th, left : left + tw]
        rh, rw = region.shape[:2]
        dst = out[:rh, :rw]
        if mirror:  # mirror the whole padded crop: the image part lands on the right
            dst = out[:rh, tw - rw :]
            cv2.flip(region, 1, dst=dst)
        else:
            dst[:] = region
        return
    region = img[top : top + th, left : left + tw]
    if mirror:
        cv2.flip(region, 1, dst=out)
    else:
        out[:] = region


def _warp_into(img: np.ndarray, out: np.ndarray, affine: tuple[float, float, tuple[float, float]], left: int,
               top: int, mirror: bool, fill: int, fill_mode: str = "constant") -> None:
    """Zoom/rotate/shear about the image centre (SampleTransform._affine), crop at (left, top) and mirror, in
    one OpenCV warp that computes only the output pixels."""
    angle, shear, zoom = affine
    h, w = img.shape[:2]
    oh, ow = out.shape[:2]
    a, b, d, e = inverse_affine(angle, shear, zoom)
    cx, cy = w / 2, h / 2
    c, f = cx - a * cx - b * cy, cy - d * cx - e * cy
    # PIL maps pixel centres (x + 0.5); OpenCV maps integer indices
    c += 0.5 * (a + b) - 0.5
    f += 0.5 * (d + e) - 0.5
    sx, qx = (-1.0, left + ow - 1) if mirror else (1.0, left)
    m = np.array([[a * sx, b, a * qx + b * top + c], [d * sx, e, d * qx + e * top + f]], dtype=np.float64)
    border = (fill,) * 4
    border_mode = cv2.BORDER_REPLICATE if fill_mode == "nearest" else cv2.BORDER_CONSTANT
    cv2.warpAffine(img, m, (ow, oh), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=border_mode, borderValue=border)
