"""Record datasets and the high-throughput record loader (the ImageRecordIter replacement).

`RecordDataset` is a map-style PyTorch dataset over a `.rec` (+ `.idx`): labels come from the record
headers without decoding, `dataset[i]` gives (PIL image, label) like torchvision datasets, and
`batch_sampler(...)` shards and reshuffles it for a plain `DataLoader`.

`RecordLoader` is the fast path. Each worker process memory-maps the `.rec`, decodes the JPEGs of a
whole batch with libjpeg-turbo, augments them with OpenCV (the crop, mirror and affine warp are fused
so only output pixels are computed) and writes them straight into a reusable shared-memory batch
buffer, so only the buffer's number crosses the process boundary. Batches stay uint8 and are normalised
on the GPU (or, for float32 output on the CPU, by the workers). Augmentation follows
`transforms.SampleTransform` exactly (same random draws from the same per-sample seed), so the same
epoch of the same run gives the same crops and flips whichever loader or worker count is used.

`ImageRecordIter` takes MXNet's argument names (data_shape, rand_crop, mean_r, ...) for ported code.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import multiprocessing as mp
import os
import random
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, get_worker_info

from deepvision.config.schema import AugmentConfig
from deepvision.data.records.codec import DecodeError, Decoder, forking_cv2
from deepvision.data.records.header import HEADER_SIZE, IRHeader, unpack_header
from deepvision.data.records.recordio import RecordError, RecordFile
from deepvision.data.sampling import LAST_BATCH, EpochPlan
from deepvision.data.transforms import inverse_affine, random_resized_crop_box, sample_seed
from deepvision.errors import UserError

MEMORY_FORMATS = ("channels_last", "contiguous")
_LAST_BATCH_ALIASES = {"discard": "drop", "roll_over": "rollover", "keep": "keep", "drop": "drop", "pad": "pad",
                       "rollover": "rollover"}


# -- dataset ---------------------------------------------------------------------------------------------
class RecordDataset(Dataset):
    """Map-style dataset over an indexed record file (optionally restricted to some positions).

    `dataset[i]` is (PIL image, label) or (transform(image), label); the label is an int, or a float32
    array for multi-label records. `targets` holds the first label of every record as int64.
    """

    def __init__(
        self,
        path: str | Path,
        idx_path: str | Path | None = None,
        *,
        channels: int = 3,
        transform: Any = None,
        skip_corrupt: bool = False,
        decoder: str = "auto",
        cache: bool = True,
    ) -> None:
        self.file = path if isinstance(path, RecordFile) else RecordFile.open(path, idx_path, cache=cache)
        self.channels = channels
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.decoder = decoder
        self.positions: np.ndarray | None = None  # None: every record, in index order
        self._decoder: Decoder | None = None

    # -- views ----------------------------------------------------------------------------------------
    def _view(self, positions: np.ndarray) -> RecordDataset:
        view = object.__new__(RecordDataset)
        view.__dict__.update(self.__dict__)
        view.positions = positions
        view._decoder = None
        return view

    def subset(self, idx: Sequence[int] | np.ndarray) -> RecordDataset:
        """A view holding records `idx` (positions in this dataset), sharing the open file."""
        return self._view(self._positions()[np.asarray(idx, dtype=np.int64)])

    def _positions(self) -> np.ndarray:
        return np.arange(len(self.file), dtype=np.int64) if self.positions is None else self.positions

    def _pos(self, i: int) -> int:
        """The record position of sample i."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for {n} records")
        i = i % n
        return i if self.positions is None else int(self.positions[i])

    # -- metadata -------------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.file.path

    def __len__(self) -> int:
        return len(self.file) if self.positions is None else len(self.positions)

    @property
    def labels(self) -> np.ndarray:
        """float32 N x label_width labels from the record headers."""
        return self.file.labels if self.positions is None else self.file.labels[self.positions]

    @property
    def targets(self) -> np.ndarray:
        return self.labels[:, 0].astype(np.int64)

    @property
    def ids(self) -> np.ndarray:
        return self.file.ids if self.positions is None else self.file.ids[self.positions]

    @property
    def label_width(self) -> int:
        return self.file.label_width

    # -- reading --------------------------------------------------------------------------------------
    def read_raw(self, i: int) -> tuple[IRHeader, bytes]:
        """(header, encoded image bytes) of sample i."""
        pos = self._pos(i)
        try:
            header, body = unpack_header(self.file.read(pos))
        except ValueError as exc:
            raise _corrupt(self.file, pos, str(exc)) from None
        return header, bytes(body)

    def decode(self, i: int) -> np.ndarray:
        """Sample i decoded to a uint8 H x W x C (RGB or gray) array."""
        _, body = self.read_raw(i)
        if self._decoder is None:
            self._decoder = Decoder(self.channels, self.decoder)
        try:
            return np.array(self._decoder(body), copy=True)
        except DecodeError as exc:
            raise _corrupt(self.file, self._pos(i), str(exc)) from None

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        arr = self.decode(i)
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")
        label = self.file.labels[self._pos(i)]
        target: Any = int(label[0]) if len(label) == 1 else label.copy()
        return (self.transform(img) if self.transform is not None else img), target

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}

    # -- loaders --------------------------------------------------------------------------------------
    def batch_sampler(self, batch_size: int, *, seed: int = 0, shuffle: bool = True, training: bool = True,
                      rank: int | None = None, world: int | None = None, last_batch: str = "keep") -> EpochBatchSampler:
        """A batch sampler for `torch.utils.data.DataLoader(dataset, batch_sampler=...)`: reshuffled from
        seed + epoch (call `set_epoch`), sharded across DDP ranks."""
        return EpochBatchSampler(len(self), batch_size, seed=seed, shuffle=shuffle, training=training, rank=rank,
                                 world=world, last_batch=last_batch)

    def loader(self, batch_size: int, **kwargs: Any) -> RecordLoader:
        """A `RecordLoader` over this dataset (keyword arguments as for RecordLoader)."""
        return RecordLoader(self, batch_size, **kwargs)

    def make_loader(self, cfg: Any, pre: Any, *, batch_size: int, device: Any = "cpu", training: bool,
                    shuffle: bool, seed: int, rank: int = 0, world: int = 1, last_batch: str = "keep",
                    max_steps: int | None = None) -> RecordLoader:
        """The engine hook (`loaders.build_loaders`): uint8 N x C x H x W batches, normalised on the device."""
        on_cuda = torch.device(device).type == "cuda"
        opts = cfg.options or {}
        return RecordLoader(
            self, batch_size, size=pre.size, channels=pre.channels, resize=pre.resize,
            crop=bool(getattr(pre, "crop", False)), training=training,
            augment=cfg.augment, shuffle=shuffle, seed=seed, rank=rank, world=world, last_batch=last_batch,
            workers=cfg.workers, max_steps=max_steps, dtype="uint8", pin_memory=on_cuda,
            skip_corrupt=cfg.skip_corrupt, memory_format=opts.get("memory_format", "channels_last"),
            decoder=opts.get("decoder", "auto"), prefetch=int(opts.get("prefetch", 4)),
        )


def _corrupt(file: RecordFile, pos: int, why: str) -> RecordError:
    offset = int(file.offsets[pos])
    return RecordError(f"{file.path}: record {pos} (id {int(file.ids[pos])}) at byte offset {offset} is corrupt: "
                       f"{why}; set data.skip_corrupt: true (skip_corrupt=True) to skip such records, or re-pack "
                       f"the images", index=pos, offset=offset)


class EpochBatchSampler(EpochPlan):
    """Batches of indices for one epoch (`sampling.epoch_indices`): seeded reshuffle, DDP sharding and the
    last-batch policy. Defaults rank/world to the initialised process group."""

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, training: bool = True,
                 rank: int | None = None, world: int | None = None, last_batch: str = "keep") -> None:
        rank, world = _rank_world(rank, world)
        super().__init__(n, batch_size, seed=seed, shuffle=shuffle, training=training, rank=rank, world=world,
                         last_batch=_last_batch(last_batch))

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches():
            yield b.tolist()


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    if rank is None or world is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world = dist.get_world_size() if world is None else world
    rank, world = int(rank or 0), int(world or 1)
    if not 0 <= rank < world:
        raise UserError(f"rank {rank} is not in 0..{world - 1} (num_parts/world {world})")
    return rank, world


def _last_batch(policy: str) -> str:
    if policy not in _LAST_BATCH_ALIASES:
        raise UserError(f"last_batch must be one of {', '.join(LAST_BATCH)}, got {policy!r}")
    return _LAST_BATCH_ALIASES[policy]


# -- per-sample processing (inside workers) ---------------------------------------------------------------
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

    def __getstate__(self) -> dict[str, Any]:  # only a forked worker can share the anonymous slot pool
        return {**self.__dict__, "_decoder": None, "_scratch": None, "slots": None}

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
        aug = spec.augment if spec.training else _NO_AUG
        rng = random.Random()
        kept: list[int] = []
        skipped: list[tuple[int, int, str]] = []
        for index in indices:
            pos = int(self.positions[index])
            try:
                img = self._decode(pos)
            except (RecordError, DecodeError, ValueError) as exc:
                reason = str(exc)
                if not spec.skip_corrupt:
                    error = _corrupt(self.file, pos, reason)
                    if slot >= 0:
                        self.slots.release(slot)
                    return x[:0], b"", [], (str(error), error.index, error.offset)
                skipped.append((pos, int(self.file.offsets[pos]), reason))
                continue
            _reseed(rng, sample_seed(spec.seed, epoch, index))  # = random.Random(seed), without the Python wrapper
            k = len(kept)
            if direct:
                _transform_into(img, rng, view[k], spec, aug)
            else:
                _transform_into(img, rng, self._scratch, spec, aug)
                _store(self._scratch, view[k], spec)
            kept.append(index)
        labels = self.labels[np.asarray(kept, dtype=np.int64)].tobytes()  # bytes: no shared-memory round trip
        if slot >= 0:
            return _SlotRef(self.slots.key, slot, (len(kept), c, th, tw)), labels, skipped, None
        return (x[: len(kept)] if len(kept) < len(indices) else x), labels, skipped, None

    def _decode(self, pos: int) -> np.ndarray:
        payload = self.file.read(pos)
        if len(payload) < HEADER_SIZE:
            raise ValueError(f"payload of {len(payload)} bytes is shorter than the image header")
        flag = int.from_bytes(payload[:4], "little")
        start = HEADER_SIZE + 4 * flag
        if start > len(payload):
            raise ValueError(f"header announces {flag} labels but the payload is too short")
        return self._decoder(payload[start:])


def _store(src: np.ndarray, dst: np.ndarray, spec: _Spec) -> None:
    """Copy an H x W x C uint8 sample into the batch: transposed to C x H x W and/or normalised to float32."""
    if spec.affine is None:
        dst[:] = src.transpose(2, 0, 1)
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
    planes = cv2.split(src)
    for ch, plane in enumerate(planes):  # dst C x H x W float32
        cv2.addWeighted(plane, a[ch], plane, 0.0, b[ch], dst=dst[ch], dtype=cv2.CV_32F)


_NO_AUG = AugmentConfig()
_reseed_c = random.Random.__mro__[1].seed  # the C seeding random.Random(int) ends up calling


def _reseed(rng: random.Random, seed: int) -> None:
    """Put `rng` in the state random.Random(seed) starts in (an int seed goes to the C generator as is)."""
    _reseed_c(rng, seed)
    rng.gauss_next = None


def _batch_layout(shape: tuple[int, int, int, int], spec: _Spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, order) of the batch in memory: N x H x W x C for channels_last, else N x C x H x W."""
    n, c, h, w = shape
    return ((n, h, w, c), (0, 3, 1, 2)) if spec.channels_last else ((n, c, h, w), (0, 1, 2, 3))


class _SlotPool:
    """Reusable batch buffers in anonymous shared memory, mapped before the workers fork.

    Each worker owns `per_worker` slots. A worker fills a free slot and sends only its number; the
    main process wraps the slot in a tensor and marks it free again when the last tensor or view using
    it is freed. Reusing the buffers saves allocating and page-faulting ~150 KB of fresh shared memory
    per 224 x 224 image. A worker whose slots are all still held (a consumer keeping many batches)
    falls back to a fresh shared-memory batch, so holding batches never blocks the loader.
    """

    def __init__(self, workers: int, per_worker: int, batch_size: int, spec: _Spec) -> None:
        th, tw = spec.size
        nbytes = batch_size * spec.channels * th * tw * spec.dtype.itemsize
        total = workers * per_worker
        self.per_worker, self.spec = per_worker, spec
        self._map = mmap.mmap(-1, total * nbytes + total)  # MAP_SHARED | MAP_ANONYMOUS: inherited by fork
        flat = np.frombuffer(self._map, dtype=np.uint8)
        self.buffers = flat[: total * nbytes].reshape(total, nbytes)
        self.busy = flat[total * nbytes :]
        self.key = next(_POOL_KEYS)
        _POOLS[self.key] = self

    def acquire(self, worker: int) -> int:
        """A free slot of `worker` (now marked busy), or -1 when all of them are in use."""
        start = worker * self.per_worker
        for slot in range(start, start + self.per_worker):
            if not self.busy[slot]:
                self.busy[slot] = 1
                return slot
        return -1

    def release(self, slot: int) -> None:
        self.busy[slot] = 0

    def tensor(self, slot: int, shape: tuple[int, int, int, int], *, release: bool = False) -> torch.Tensor:
        """An N x C x H x W view of the slot in the batch layout. With `release` (main process), the slot
        is marked free when the last tensor or view of it is freed."""
        spec = self.spec
        mem_shape, order = _batch_layout(shape, spec)
        raw = self.buffers[slot][: int(np.prod(shape)) * spec.dtype.itemsize]
        arr = raw.view(spec.dtype).reshape(mem_shape)
        if release:  # torch keeps `arr` itself alive as long as any tensor or view uses its memory
            weakref.finalize(arr, _release_slot, self.busy, slot)
        return torch.from_numpy(arr).permute(*order)


def _new_batch(shape: tuple[int, int, int, int], spec: _Spec) -> torch.Tensor:
    """An uninitialised N x C x H x W batch; in a worker it lives in shared memory already, so handing it
    to the main process copies nothing."""
    mem_shape, order = _batch_layout(shape, spec)
    numel = int(np.prod(shape))
    dtype = torch.from_numpy(np.empty(0, spec.dtype)).dtype
    if get_worker_info() is not None and numel and hasattr(torch.UntypedStorage, "_new_shared"):
        storage = torch.UntypedStorage._new_shared(numel * spec.dtype.itemsize)
        flat = torch.empty(0, dtype=dtype).set_(storage, 0, (numel,), (1,))
        return flat.view(mem_shape).permute(*order)
    return torch.empty(mem_shape, dtype=dtype).permute(*order)


def _release_slot(busy: np.ndarray, slot: int) -> None:
    busy[slot] = 0


_POOLS: weakref.WeakValueDictionary[int, _SlotPool] = weakref.WeakValueDictionary()
_POOL_KEYS = itertools.count()


class _SlotRef:
    """What a worker sends for a batch in a slot; becomes the tensor in the main process (`tensor()`), or
    a pinned copy in the DataLoader's pin-memory thread (`pin_memory()`), which frees the slot at once.
    A reference the main process drops unused (a prefetched batch discarded when an epoch is abandoned)
    frees its slot too."""

    __slots__ = ("pool", "slot", "shape", "origin", "claimed")

    def __init__(self, pool: int, slot: int, shape: tuple[int, int, int, int]) -> None:
        self.pool, self.slot, self.shape = pool, slot, shape
        self.origin = os.getpid()  # the worker; the copy unpickled in the main process keeps this pid
        self.claimed = False

    def tensor(self) -> torch.Tensor:
        self.claimed = True
        return _POOLS[self.pool].tensor(self.slot, self.shape, release=True)

    def pin_memory(self, device: Any = None) -> torch.Tensor:
        return self.tensor().pin_memory()

    def __del__(self) -> None:
        if not self.claimed and os.getpid() != self.origin:
            pool = _POOLS.get(self.pool)
            if pool is not None:
                pool.release(self.slot)


def _interp(src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    return cv2.INTER_AREA if dst_w < src_w and dst_h < src_h else cv2.INTER_LINEAR


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    out = cv2.resize(img, (w, h), interpolation=_interp(img.shape[1], img.shape[0], w, h))
    return out if out.ndim == 3 else out[:, :, None]


def resize_short_side_array(img: np.ndarray, size: int) -> np.ndarray:
    """`preprocess.resize_short_side` for H x W x C arrays (area filter when shrinking)."""
    h, w = img.shape[:2]
    if min(w, h) == size:
        return img
    new = (size, h * size // w) if h > w else (w * size // h, size)
    return _resize(img, *new)


def _transform_into(img: np.ndarray, rng: random.Random, out: np.ndarray, spec: _Spec, aug: AugmentConfig) -> None:
    """Write the augmented (training) or centre-cropped (evaluation) H x W x C sample into `out`."""
    th, tw = spec.size
    if aug.random_resized_crop:
        h, w = img.shape[:2]
        left, top, cw, ch = random_resized_crop_box(w, h, aug, rng)
        mirror = aug.rand_mirror and rng.random() < 0.5
        region = img[top : top + ch, left : left + cw]
        if mirror:
            region = region[:, ::-1]
        cv2.resize(region, (tw, th), dst=out, interpolation=_interp(cw, ch, tw, th))
        return
    if spec.resize:
        img = resize_short_side_array(img, spec.resize)
    elif img.shape[:2] != (th, tw) and not aug.rand_crop and not spec.crop_only:
        img = _resize(img, tw, th)
    h, w = img.shape[:2]
    affine = None
    if aug.rotate or aug.max_shear_ratio:
        angle = aug.rotate if aug.rotation_mode == "fixed" else rng.uniform(-aug.rotate, aug.rotate)
        shear = rng.uniform(-aug.max_shear_ratio, aug.max_shear_ratio) if aug.max_shear_ratio else 0.0
        affine = (angle, shear)
    outside = False
    if aug.rand_crop and (w > tw or h > th):
        left, top = rng.randint(0, max(0, w - tw)), rng.randint(0, max(0, h - th))
        outside = w < tw or h < th  # PIL's crop pads the missing part with zeros
    else:
        if w < tw or h < th:  # preprocess.center_crop: stretch up to the crop size first
            img = _resize(img, max(w, tw), max(h, th))
            h, w = img.shape[:2]
        left, top = (w - tw) // 2, (h - th) // 2
    mirror = aug.rand_mirror and rng.random() < 0.5
    if affine is not None and not outside:
        _warp_into(img, out, affine, left, top, mirror, aug.fill)
        return
    if affine is not None:
        canvas = np.empty_like(img)
        _warp_into(img, canvas, affine, 0, 0, False, aug.fill)
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


def _warp_into(img: np.ndarray, out: np.ndarray, affine: tuple[float, float], left: int, top: int, mirror: bool,
               fill: int) -> None:
    """Rotate/shear about the image centre (SampleTransform._affine), crop at (left, top) and mirror, in one
    OpenCV warp that computes only the output pixels."""
    angle, shear = affine
    h, w = img.shape[:2]
    oh, ow = out.shape[:2]
    a, b, d, e = inverse_affine(angle, shear)
    cx, cy = w / 2, h / 2
    c = cx - a * cx - b * cy
    f = cy - d * cx - e * cy
    # PIL maps pixel centres (x + 0.5); OpenCV maps integer indices
    c += 0.5 * (a + b) - 0.5
    f += 0.5 * (d + e) - 0.5
    sx, qx = (-1.0, left + ow - 1) if mirror else (1.0, left)
    m = np.array([[a * sx, b, a * qx + b * top + c], [d * sx, e, d * qx + e * top + f]], dtype=np.float64)
    border = (fill,) * 4
    cv2.warpAffine(img, m, (ow, oh), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=border)


# -- the loader --------------------------------------------------------------------------------------------
class _Tasks:
    """Sampler of (epoch, indices) tasks: the batches of epoch `loader._stream_start`, then of the following
    epochs, so the workers keep decoding across epoch boundaries instead of idling while the last batches
    of an epoch drain. The loader counts batches per epoch and restarts the stream when the next epoch is
    not the one that follows. The loader is held by weak reference, so a dropped loader is freed at once
    and its workers stop before another loader forks."""

    def __init__(self, loader: RecordLoader) -> None:
        self.loader = weakref.ref(loader)

    def _owner(self) -> RecordLoader:
        loader = self.loader()
        if loader is None:
            raise RuntimeError("the RecordLoader of this sampler was garbage-collected")
        return loader

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        epoch = self._owner()._stream_start
        while True:
            batches = self._owner().batches(epoch)
            if not batches:
                return
            for b in batches:
                yield epoch, b.tolist()
            epoch += 1

    def __len__(self) -> int:
        return len(self._owner().batches())


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # OpenCV is already single-threaded: the workers fork inside `forking_cv2`


def default_workers() -> int:
    """The cores this process may use, shared among torchrun's processes on the node, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, min(8, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


class RecordLoader(EpochPlan):
    """Batches of (images, labels) from a record file, decoded and augmented in worker processes.

    images: N x C x H x W, uint8 (`dtype='uint8'`; stored channels-last unless memory_format='contiguous')
    or float32 normalised as (x * scale - mean) / std (`dtype='float32'`, on `device` when given).
    labels: int64 N, or float32 N x label_width when label_width > 1.

    Samples follow `SampleTransform(Preprocess(channels, size, resize, crop=crop), augment, training)`:
    `resize` scales the shorter side first; without it, images are centre-cropped (`crop=True`, MXNet's
    behaviour) or resized to `size` unless random crops are taken.

    The engine's protocol: `set_epoch(e)`, iteration, `len()` (batches), `num_samples`. Epoch e's order
    depends only on (seed, e) (`sampling.epoch_indices`); training shards across DDP ranks and applies the
    last-batch policy (keep, drop, pad, rollover); evaluation never pads or drops.
    """

    def __init__(
        self,
        dataset: RecordDataset | str | Path,
        batch_size: int,
        *,
        size: int | tuple[int, int] = 224,
        channels: int | None = None,
        resize: int | None = None,
        crop: bool = False,
        training: bool = False,
        augment: AugmentConfig | None = None,
        shuffle: bool | None = None,
        seed: int = 0,
        rank: int | None = None,
        world: int | None = None,
        last_batch: str = "keep",
        workers: int | None = None,
        max_steps: int | None = None,
        dtype: str = "uint8",
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        scale: float = 1.0,
        device: torch.device | str | None = None,
        pin_memory: bool | None = None,
        memory_format: str = "channels_last",
        skip_corrupt: bool | None = None,
        label_width: int = 1,
        prefetch: int = 4,
        decoder: str = "auto",
    ) -> None:
        if not isinstance(dataset, RecordDataset):
            dataset = RecordDataset(dataset, channels=channels or 3)
        if batch_size <= 0:
            raise UserError(f"batch_size must be a positive integer, got {batch_size}")
        if dtype not in ("uint8", "float32"):
            raise UserError(f"dtype must be 'uint8' or 'float32', got {dtype!r}")
        if memory_format not in MEMORY_FORMATS:
            raise UserError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
        size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        channels = channels or dataset.channels
        if channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {channels}")
        if label_width > dataset.label_width and label_width > 1:
            raise UserError(f"label_width={label_width} but the records of {dataset.path} hold "
                            f"{dataset.label_width} label(s)")
        if augment is not None:
            augment.validate("augment")
        self.dataset = dataset
        rank, world = _rank_world(rank, world)
        super().__init__(len(dataset), batch_size, seed=seed, training=training, rank=rank, world=world,
                         shuffle=training if shuffle is None else (shuffle and training),
                         last_batch=_last_batch(last_batch), max_steps=max_steps)
        self.dtype = dtype
        self.label_width = int(label_width)
        self.device = torch.device(device) if device is not None else None
        self.workers = default_workers() if workers is None else int(workers)
        on_cuda = self.device is not None and self.device.type == "cuda"
        self.pin_memory = on_cuda if pin_memory is None else pin_memory
        self.prefetch = max(1, int(prefetch))
        self.skipped: list[tuple[int, int, str]] = []  # (position, byte offset, reason) of skipped records
        skip = dataset.skip_corrupt if skip_corrupt is None else skip_corrupt
        self.spec = _Spec(size, channels, resize, training, augment or AugmentConfig(),
                          memory_format == "channels_last", self.seed, bool(skip), decoder, crop_only=bool(crop))
        self._affine = None  # normalisation on `device` (a GPU): uint8 crosses the bus, floats are made there
        if dtype == "float32":
            a, b = _affine(mean, std, scale, channels)
            if self.device is not None and self.device.type != "cpu":
                self._affine = (a, b)
            else:  # on the CPU the workers write float32 straight into the batch
                self.spec.affine = (tuple(a.flatten().tolist()), tuple(b.flatten().tolist()))
        self._loader: DataLoader | None = None
        self._stream: Iterator[Any] | None = None  # the DataLoader iterator over `_Tasks`
        self._stream_start = 0
        self._stream_next: int | None = None  # the epoch the stream is positioned at, None: mid-epoch
        self._slots: _SlotPool | None = None
        self._finalizer: weakref.finalize | None = None

    # -- protocol -------------------------------------------------------------------------------------
    def _data_loader(self) -> DataLoader:
        if self._loader is None:
            workers = self.workers
            maker = _BatchMaker(self.dataset, self.spec)
            context = None
            if workers > 0 and "fork" in mp.get_all_start_methods():
                context = "fork"
                with contextlib.suppress(OSError, ValueError):
                    self._slots = maker.slots = _SlotPool(workers, self.prefetch + 1, self.batch_size, self.spec)
            self._loader = DataLoader(
                maker, batch_size=None, sampler=_Tasks(self), num_workers=workers, multiprocessing_context=context,
                pin_memory=self.pin_memory, persistent_workers=workers > 0, worker_init_fn=_worker_init,
                prefetch_factor=self.prefetch if workers > 0 else None,
                # a private generator: starting the workers must not draw from the global RNG, or a
                # resumed run's dropout masks would differ from an uninterrupted run's
                generator=torch.Generator().manual_seed(self.seed),
            )
            if workers > 0:
                # Stop the persistent workers when this loader dies, even inside a garbage cycle: the
                # finalizer runs before the collector tears the loader's queues apart.
                self._finalizer = weakref.finalize(self, _stop_workers, self._loader)
        return self._loader

    def _stream_at(self, epoch: int) -> Iterator[Any]:
        """The task stream positioned at the first batch of `epoch` (restarted unless it is already there)."""
        if self._stream is None or self._stream_next != epoch:
            self._stream_start = epoch
            with forking_cv2():
                self._stream = iter(self._data_loader())  # forks the workers the first time (they persist)
        self._stream_next = None  # in progress until this epoch's batches are all consumed
        return self._stream

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, count = self.epoch, len(self.batches())
        skipped_before = len(self.skipped)
        stream = self._stream_at(epoch)
        for done in range(1, count + 1):
            x, labels, skipped, error = next(stream)
            if error:
                self._stream = None
                raise RecordError(error[0], index=int(error[1]), offset=int(error[2]))
            if skipped:
                self.skipped.extend((int(p), int(o), str(r)) for p, o, r in skipped)
            if done == count:
                self._stream_next = epoch + 1  # the workers are already decoding the next epoch
            yield self._finish(x, labels)
        count = len(self.skipped) - skipped_before
        if count:
            warnings.warn(f"{self.dataset.path}: skipped {count} corrupt record(s) in epoch {self.epoch} "
                          f"(first: record {self.skipped[skipped_before][0]}, {self.skipped[skipped_before][2]})",
                          stacklevel=2)

    def _finish(self, x: torch.Tensor | _SlotRef, raw_labels: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        width = self.dataset.label_width
        labels = torch.from_numpy(np.frombuffer(raw_labels, dtype=np.float32).reshape(-1, width).copy())
        if isinstance(x, _SlotRef):  # not pinned (pinning turns it into a tensor in the pin-memory thread)
            x = x.tensor()
        y = labels[:, 0].to(torch.int64) if self.label_width == 1 else labels[:, : self.label_width].float()
        if self.device is not None:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
        if self._affine is not None:
            a, b = (t.to(x.device) for t in self._affine)
            x = x.to(torch.float32).mul_(a).add_(b)
        return x, y

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the loader is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._loader = self._stream = None
        self._slots = None  # the memory goes when the last batch using it is freed

    def __enter__(self) -> RecordLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loader": None, "_finalizer": None, "_slots": None, "_stream": None,
                "_stream_next": None}


def _stop_workers(loader: DataLoader) -> None:
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
    loader._iterator = None


def _affine(mean: Sequence[float] | float | None, std: Sequence[float] | float | None, scale: float,
            channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    def per_channel(v: Sequence[float] | float | None, default: float, name: str) -> torch.Tensor:
        if v is None:
            v = [default]
        vals = [float(v)] if isinstance(v, (int, float)) else [float(t) for t in v]
        if len(vals) == 1:
            vals = vals * channels
        if len(vals) != channels:
            raise UserError(f"{name} has {len(vals)} values but the images have {channels} channel(s)")
        return torch.tensor(vals, dtype=torch.float32).view(1, channels, 1, 1)

    m = per_channel(mean, 0.0, "mean")
    s = per_channel(std, 1.0, "std")
    if torch.any(s <= 0):
        raise UserError("std values must be positive")
    return scale / s, -m / s


# -- MXNet-style constructor --------------------------------------------------------------------------------
class ImageRecordIter(RecordLoader):
    """`mx.io.ImageRecordIter` arguments on a RecordLoader; iterating yields (data, label) tensors.

    Output: float32 N x C x H x W = (x - mean) * scale / std (dtype='uint8' keeps raw pixels), labels
    int64 (float32 N x label_width for multi-label records). Each pass over the iterator is one epoch;
    with shuffle=True every epoch is reshuffled from seed + epoch. `max_rotate_angle` (alias `rotate`)
    draws a uniform angle in [-a, a] per image; MXNet's `rotate=a`, which turned every image by exactly
    +a degrees, is available as rotation_mode='fixed'. `round_batch=True` (MXNet's default) pads the
    last training batch by wrapping; `last_batch` ('keep', 'drop'/'discard', 'pad', 'rollover'/'roll_over')
    overrides it. `num_parts`/`part_index` shard the records as DDP ranks do.
    """

    def __init__(
        self,
        path_imgrec: str | Path,
        data_shape: Sequence[int],
        batch_size: int,
        *,
        path_imgidx: str | Path | None = None,
        shuffle: bool = False,
        rand_crop: bool = False,
        rand_mirror: bool = False,
        max_rotate_angle: float = 0.0,
        rotate: float | None = None,
        rotation_mode: str = "uniform",
        max_shear_ratio: float = 0.0,
        fill_value: int = 255,
        random_resized_crop: bool = False,
        min_random_area: float = 0.08,
        max_random_area: float = 1.0,
        min_aspect_ratio: float = 3 / 4,
        max_aspect_ratio: float = 4 / 3,
        resize: int = -1,
        mean_r: float = 0.0,
        mean_g: float = 0.0,
        mean_b: float = 0.0,
        std_r: float = 1.0,
        std_g: float = 1.0,
        std_b: float = 1.0,
        scale: float = 1.0,
        mean_json: str | Path | None = None,
        round_batch: bool = True,
        last_batch: str | None = None,
        training: bool | None = None,
        preprocess_threads: int | None = None,
        seed: int = 0,
        num_parts: int = 1,
        part_index: int = 0,
        label_width: int = 1,
        dtype: str = "float32",
        device: torch.device | str | None = None,
        skip_corrupt: bool = False,
        memory_format: str = "contiguous",
        decoder: str = "auto",
    ) -> None:
        if len(data_shape) != 3:
            raise UserError(f"data_shape must be (channels, height, width), got {tuple(data_shape)}")
        c, h, w = (int(v) for v in data_shape)
        angle = rotate if rotate is not None and rotate > 0 else max_rotate_angle
        augment = AugmentConfig(rand_crop=rand_crop, rand_mirror=rand_mirror, rotate=float(angle),
                                rotation_mode=rotation_mode, max_shear_ratio=float(max_shear_ratio), fill=fill_value,
                                random_resized_crop=random_resized_crop, scale=[min_random_area, max_random_area],
                                ratio=[min_aspect_ratio, max_aspect_ratio])
        if training is None:  # MXNet has no such switch: augmentation settings imply training
            training = bool(augment.active or shuffle)
        means = [mean_r, mean_g, mean_b]
        if mean_json is not None:
            from deepvision.data.loaders import read_mean_json

            means = read_mean_json(mean_json)
        stds = [std_r, std_g, std_b]
        if c == 1:
            means, stds = [sum(means) / 3], [stds[0]]
        dataset = RecordDataset(path_imgrec, path_imgidx, channels=c, skip_corrupt=skip_corrupt, decoder=decoder)
        policy = last_batch or ("pad" if round_batch else "keep")
        super().__init__(
            dataset, batch_size, size=(h, w), channels=c, resize=resize if resize and resize > 0 else None,
            crop=True, training=training, augment=augment, shuffle=shuffle, seed=seed, rank=part_index, world=num_parts,
            last_batch=policy, workers=preprocess_threads, dtype=dtype, mean=[m * scale for m in means],
            std=stds, scale=scale, device=device, memory_format=memory_format, label_width=label_width,
            decoder=decoder,
        )
        self._passes = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.set_epoch(self._passes)
        self._passes += 1
        yield from super().__iter__()

    def reset(self) -> None:
        """MXNet compatibility: iteration already starts a new epoch each time."""
