"""`ImageRecordIter`: the record loader under `mx.io.ImageRecordIter`'s argument names, for code being
ported from MXNet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from deepvision.config.schema import AugmentConfig
from deepvision.data.records.loader import RecordDataset, RecordLoader
from deepvision.errors import UserError


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

    def __init__(self, path_imgrec: str | Path, data_shape: Sequence[int], batch_size: int, *,
        path_imgidx: str | Path | None = None, shuffle: bool = False, rand_crop: bool = False,
        rand_mirror: bool = False, max_rotate_angle: float = 0.0, rotate: float | None = None,
        rotation_mode: str = "uniform", max_shear_ratio: float = 0.0, fill_value: int = 255,
        random_resized_crop: bool = False, min_random_area: float = 0.08, max_random_area: float = 1.0,
        min_aspect_ratio: float = 3 / 4, max_aspect_ratio: float = 4 / 3, resize: int = -1,
        mean_r: float = 0.0, mean_g: float = 0.0, mean_b: float = 0.0,
        std_r: float = 1.0, std_g: float = 1.0, std_b: float = 1.0, scale: float = 1.0,
        mean_json: str | Path | None = None, round_batch: bool = True, last_batch: str | None = None,
        training: bool | None = None, preprocess_threads: int | None = None, seed: int = 0,
        num_parts: int = 1, part_index: int = 0, label_width: int = 1, dtype: str = "float32",
        device: torch.device | str | None = None, skip_corrupt: bool = False,
        memory_format: str = "contiguous", decoder: str = "auto") -> None:
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
            from deepvision.data.mean_file import read_mean_rgb

            means = read_mean_rgb(mean_json)
        stds = [std_r, std_g, std_b]
        if c == 1:
            means, stds = [sum(means) / 3], [stds[0]]
        dataset = RecordDataset(path_imgrec, path_imgidx, channels=c, skip_corrupt=skip_corrupt, decoder=decoder)
        policy = last_batch or ("pad" if round_batch else "keep")
        super().__init__(dataset, batch_size, size=(h, w), channels=c, resize=resize if resize and resize > 0 else None,
            crop=True, training=training, augment=augment, shuffle=shuffle, seed=seed, rank=part_index, world=num_parts,
            last_batch=policy, workers=preprocess_threads, dtype=dtype, mean=[m * scale for m in means],
            std=stds, scale=scale, device=device, memory_format=memory_format, label_width=label_width, decoder=decoder)
        self._passes = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.set_epoch(self._passes)
        self._passes += 1
        yield from super().__iter__()

    def reset(self) -> None:
        """MXNet compatibility: iteration already starts a new epoch each time."""
