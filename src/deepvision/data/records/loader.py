"""Record datasets and the high-throughput record loader (the ImageRecordIter replacement).

`RecordDataset` is a map-style PyTorch dataset over a `.rec` (+ `.idx`): labels come from the record headers without
decoding, `dataset[i]` gives (PIL image, label) like torchvision datasets, and `batch_sampler(...)` shards and
reshuffles it for a plain `DataLoader`.

`RecordSource` is the fast batch source that `RecordLoader` (a `data.loader.BatchLoader`) runs. Each worker process
memory-maps the `.rec`, decodes the JPEGs of a whole batch with libjpeg-turbo, augments them with OpenCV
(`records.pipeline`) and writes them straight into a reusable shared-memory batch buffer (`records.shared_batches`), so
only the buffer's number crosses the process boundary. Batches stay uint8 and are normalised on the GPU (or, for float32
output on the CPU, by the workers). Augmentation follows the one augmentation plan (`data.augment_plan`), so the same
epoch of the same run gives the same crops and flips whichever source or worker count is used.

`decoder='nvjpeg'` (alias 'gpu'; `data.options.decoder`) skips the workers: the loader's thread decodes whole batches
with nvJPEG and augments them on the GPU (`records.gpu_decode`).

The dataset builds its loader (it is the engine's `LoaderFactory`) and the loader reads the dataset, so both live here;
`ImageRecordIter`, the loader under MXNet's argument names, is `records.mxnet_iter`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deepvision.config.schema import AugmentConfig
from deepvision.data.imageio import DECODERS, DecodeError, Decoder
from deepvision.data.loader import BatchLoader, BatchSource
from deepvision.data.preprocess import Preprocess
from deepvision.data.records.gpu_decode import GPU_DECODERS, BatchJpegDecoder, gpu_decode_device
from deepvision.data.records.header import IRHeader, unpack_header
from deepvision.data.records.pipeline import _BatchMaker, _corrupt, _Spec, forking_cv2
from deepvision.data.records.record_file import RecordFile
from deepvision.data.records.recordio import RecordError
from deepvision.data.records.shared_batches import _SlotPool, _SlotRef
from deepvision.data.sampling import EpochBatchSampler, _last_batch, _rank_world
from deepvision.errors import UserError
from deepvision.safeload import check_range

MEMORY_FORMATS = ("channels_last", "contiguous")


class RecordDataset(Dataset):
    """Map-style dataset over an indexed record file (optionally restricted to some positions).

    `dataset[i]` is (PIL image, label) or (transform(image), label); the label is an int, or a float32
    array for multi-label records. `targets` holds the first label of every record as int64.
    """

    def __init__(self, path: str | Path, idx_path: str | Path | None = None, *, channels: int = 3,
                 transform: Any = None, skip_corrupt: bool = False, decoder: str = "auto", cache: bool = True) -> None:
        self.file = path if isinstance(path, RecordFile) else RecordFile.open(path, idx_path, cache=cache)
        self.channels, self.transform, self.skip_corrupt, self.decoder = channels, transform, skip_corrupt, decoder
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

    def describe(self, i: int) -> str:
        """Sample i as record messages name it: the file, then the record's position, id and byte offset."""
        return f"{self.path}: {self.file.describe(self._pos(i))}"

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
        if self._decoder is None:  # a GPU decoder is for RecordLoader batches; single samples decode here
            self._decoder = Decoder(self.channels, "auto" if self.decoder in GPU_DECODERS else self.decoder)
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

    def make_loader(self, cfg: Any, pre: Any, *, batch_size: int, device: Any = "cpu", training: bool,
                    shuffle: bool, seed: int, rank: int = 0, world: int = 1, last_batch: str = "keep",
                    max_steps: int | None = None) -> RecordLoader:
        """The engine hook (`loaders.build_loaders`): uint8 N x C x H x W batches, normalised on the device."""
        on_cuda = torch.device(device).type == "cuda"
        opts = cfg.options or {}
        decoder = opts.get("decoder", "auto")
        gpu = decoder in GPU_DECODERS
        if gpu and not on_cuda:
            gpu_decode_device(decoder, "cuda")  # the one-line UserError on a machine without CUDA
            raise UserError(f"data.options.decoder: {decoder} decodes on a CUDA GPU, but this run trains on "
                            f"{device}; use decoder: auto")
        return RecordLoader(self, batch_size, size=pre.size, channels=pre.channels, resize=pre.resize,
            crop=bool(getattr(pre, "crop", False)), training=training,
            augment=cfg.augment, shuffle=shuffle, seed=seed, rank=rank, world=world, last_batch=last_batch,
            workers=cfg.workers, max_steps=max_steps, dtype="uint8", pin_memory=on_cuda,
            skip_corrupt=cfg.skip_corrupt, memory_format=opts.get("memory_format", "channels_last"),
            decoder=decoder, prefetch=int(opts.get("prefetch", 4)), device=device if gpu else None)


def check_record_options(options: dict[str, Any]) -> None:
    """The `rec` source's options checked with the data, before a run starts: one line for each bad one."""
    for key, choices in (("decoder", DECODERS + GPU_DECODERS), ("memory_format", MEMORY_FORMATS)):
        if key in options and options[key] not in choices:
            raise UserError(f"data.options.{key} must be one of {', '.join(choices)}, got {options[key]!r}")
    check_range("data.options.prefetch", options.get("prefetch", 4), 1, 64)


class RecordSource(BatchSource):
    """The batches of a record file: decoded and augmented in worker processes by `pipeline._BatchMaker`
    (OpenCV, written into reusable shared-memory slots), or in a thread by nvJPEG when `gpu` is given
    (`gpu_decode.BatchJpegDecoder`). Workers send labels as bytes and, from a slot, only its number."""

    def __init__(self, dataset: RecordDataset, spec: _Spec, *, label_width: int = 1, prefetch: int = 4,
                 gpu: torch.device | None = None) -> None:
        self.dataset, self.spec, self.label_width, self.prefetch = dataset, spec, int(label_width), prefetch
        self.name = str(dataset.path)
        self.maker = _BatchMaker(dataset, spec)
        self.gpu = BatchJpegDecoder(dataset, spec, gpu) if gpu is not None else None
        self.device = gpu
        self.run_in = "thread" if gpu is not None else "workers"
        self.slots: _SlotPool | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def make(self, epoch: int, indices: list[int]) -> tuple[Any, bytes, list[str]]:
        if self.gpu is not None:
            x, kept, skipped = self.gpu(epoch, self.gpu.read(indices), indices)
            labels = self.dataset.labels[np.asarray(kept, dtype=np.int64)].tobytes()
        else:
            x, labels, skipped, error = self.maker[(epoch, indices)]
            if error:
                raise RecordError(error[0], index=int(error[1]), offset=int(error[2]))
        return x, labels, [f"{self.dataset.file.describe(int(p))}: {why}" for p, _, why in skipped]

    def finish(self, x: torch.Tensor | _SlotRef, raw_labels: bytes) -> tuple[torch.Tensor, torch.Tensor]:
        width = self.dataset.label_width
        labels = torch.from_numpy(np.frombuffer(raw_labels, dtype=np.float32).reshape(-1, width).copy())
        if isinstance(x, _SlotRef):  # not pinned (pinning turns it into a tensor in the pin-memory thread)
            x = x.tensor()
        y = labels[:, 0].to(torch.int64) if self.label_width == 1 else labels[:, : self.label_width].float()
        return x, y

    def start_workers(self, workers: int, largest_batch: int) -> None:
        with contextlib.suppress(OSError, ValueError):  # without the pool, workers send fresh shared memory
            self.slots = self.maker.slots = _SlotPool(workers, self.prefetch + 1, largest_batch, self.spec)

    def fork_context(self) -> contextlib.AbstractContextManager[None]:
        return forking_cv2()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "slots": None}


class RecordLoader(BatchLoader):
    """Batches of (images, labels) from a record file, decoded and augmented in worker processes.

    images: N x C x H x W, uint8 (`dtype='uint8'`; stored channels-last unless memory_format='contiguous')
    or float32 normalised as (x * scale - mean) / std (`dtype='float32'`, on `device` when given).
    labels: int64 N, or float32 N x label_width when label_width > 1.

    Samples follow `SampleTransform(Preprocess(channels, size, resize, crop=crop), augment, training)`:
    `resize` scales the shorter side first; without it, images are centre-cropped (`crop=True`, MXNet's
    behaviour) or resized to `size` unless random crops are taken. `decoder='nvjpeg'` (alias 'gpu')
    decodes and augments whole batches on `device` in a thread instead of worker processes.
    """

    def __init__(self, dataset: RecordDataset | str | Path, batch_size: int, *, size: int | tuple[int, int] = 224,
        channels: int | None = None, resize: int | None = None, crop: bool = False, training: bool = False,
        augment: AugmentConfig | None = None, shuffle: bool | None = None, seed: int = 0, rank: int | None = None,
        world: int | None = None, last_batch: str = "keep", workers: int | None = None, max_steps: int | None = None,
        dtype: str = "uint8", mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
        scale: float = 1.0, device: torch.device | str | None = None, pin_memory: bool | None = None,
        memory_format: str = "channels_last", skip_corrupt: bool | None = None, label_width: int = 1,
        prefetch: int = 4, decoder: str = "auto", max_skipped_fraction: float | None = None) -> None:
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
        rank, world = _rank_world(rank, world)
        gpu = gpu_decode_device(decoder, device) if decoder in GPU_DECODERS else None
        dev = gpu if gpu is not None else (torch.device(device) if device is not None else None)
        skip = dataset.skip_corrupt if skip_corrupt is None else skip_corrupt
        self.spec = _Spec(size, channels, resize, training, augment or AugmentConfig(),
                          memory_format == "channels_last", int(seed), bool(skip), decoder, crop_only=bool(crop))
        normalize = None  # on `device` (a GPU): uint8 crosses the bus, floats are made there
        if dtype == "float32":
            a, b = Preprocess(channels, size, scale=scale, mean=_values(mean), std=_values(std)).affine()
            if dev is not None and (dev.type != "cpu" or gpu is not None):
                normalize = (a, b)
            else:  # on the CPU the workers write float32 straight into the batch
                self.spec.affine = (tuple(a.flatten().tolist()), tuple(b.flatten().tolist()))
        source = RecordSource(dataset, self.spec, label_width=label_width, prefetch=max(1, int(prefetch)), gpu=gpu)
        super().__init__(source, batch_size, training=training, shuffle=training if shuffle is None else shuffle,
                         seed=seed, rank=rank, world=world, last_batch=_last_batch(last_batch), max_steps=max_steps,
                         workers=workers, pin_memory=(dev is not None and dev.type == "cuda") if pin_memory is None
                         else pin_memory, device=dev, normalize=normalize, prefetch=prefetch,
                         max_skipped_fraction=max_skipped_fraction)
        self.dataset, self.dtype, self.label_width = dataset, dtype, int(label_width)


def _values(v: Sequence[float] | float | None) -> list[float]:
    """mean/std as given (one number, one per channel, or None) as a list for `Preprocess`."""
    return [] if v is None else [float(v)] if isinstance(v, (int, float)) else [float(t) for t in v]
