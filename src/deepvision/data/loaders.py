"""Turn a config + loaded data into the run's preprocessing and per-role loaders."""

from __future__ import annotations

from typing import Any

import torch

from deepvision.config.schema import DataConfig
from deepvision.data.dataset_loader import DatasetSource
from deepvision.data.loader import BatchLoader, BatchSource
from deepvision.data.mean_file import read_mean_rgb
from deepvision.data.preprocess import Preprocess
from deepvision.data.protocols import Loader, LoaderFactory
from deepvision.data.source_registry import resolve_path
from deepvision.data.sources import DataBundle
from deepvision.data.tensor_loader import BatchAugment, TensorSource
from deepvision.data.tensors import TensorSplit, adapt_tensor_split
from deepvision.data.transforms import SampleTransform
from deepvision.errors import UserError


def resolve_preprocess(cfg: DataConfig, bundle: DataBundle, model_input: tuple[int, int, int] | None,
                       model_preprocess: dict[str, Any] | None = None) -> Preprocess:
    """The run's evaluation transform: channels, input size, resize, scale, mean and std.

    Mean and std left unset in the config come from the model's own metadata when it has some (torchvision/timm weights:
    ImageNet statistics), as timm's data config does. So does the shorter-side resize before the crop (256 for a 224
    input) when the config sets neither data.resize nor data.image_size and the images have mixed sizes: photos are
    resized and cropped the weights' way, never cropped small from a large photo.
    """
    channels = cfg.channels or bundle.channels
    meta = model_preprocess or {}
    resize = cfg.resize
    if cfg.image_size:
        size = (cfg.image_size, cfg.image_size)
    elif bundle.size is not None and not cfg.resize:
        size = tuple(bundle.size)
    elif model_input is not None:
        size = tuple(model_input[1:])
        if resize is None and meta.get("resize") and list(meta.get("size", [])) == list(size):
            resize = int(meta["resize"])
    else:
        raise UserError("set data.image_size: the images have mixed sizes and the model has no default input size")
    if cfg.resize and cfg.resize < min(size):
        raise UserError(f"data.resize ({cfg.resize}) is smaller than data.image_size ({size[0]}); "
                        f"the crop would not fit")
    mean: list[float] = []
    if isinstance(cfg.mean, str):
        mean = [v * cfg.scale for v in read_mean_rgb(resolve_path(cfg.root, cfg.mean))]
        if channels == 1:
            mean = [sum(mean) / 3]
    elif cfg.mean:
        mean = list(cfg.mean)
    std = list(cfg.std or [])
    if (cfg.mean is None and cfg.std is None and channels == 3 and meta.get("mean") and meta.get("std")
            and abs(cfg.scale - meta.get("scale", 1 / 255)) < 1e-12):
        mean, std = list(meta["mean"]), list(meta["std"])
    for key, values in (("mean", mean), ("std", std)):
        if values and len(values) not in (1, channels):
            raise UserError(f"data.{key} has {len(values)} values but the images have {channels} channels")
    crop = bool(cfg.augment.rand_crop and not resize and not cfg.augment.random_resized_crop)
    return Preprocess(channels=channels, size=size, resize=resize, scale=cfg.scale, mean=mean, std=std, crop=crop)


def build_loaders(cfg: DataConfig, bundle: DataBundle, pre: Preprocess, *, seed: int, rank: int = 0, world: int = 1,
                  device: torch.device | str = "cpu", max_steps: int | None = None,
                  roles: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Loader]:
    """One loader per role present in `bundle` (train shuffles and augments; val/test never pad): the
    split's source run by one `BatchLoader`."""
    loaders: dict[str, Loader] = {}
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    on_cuda = torch.device(device).type == "cuda"
    for role in roles:
        split = bundle.role(role)
        if split is None:
            continue
        training = role == "train"
        bs = cfg.batch_size if training else eval_bs
        common: dict[str, Any] = dict(training=training, shuffle=cfg.shuffle is not False, seed=seed, rank=rank,
                                      world=world, last_batch=cfg.last_batch if training else "keep",
                                      max_steps=max_steps)
        if isinstance(split, LoaderFactory):  # sources with options of their own (records)
            loaders[role] = split.make_loader(cfg, pre, batch_size=bs, device=device, **common)
            continue
        source: BatchSource
        if isinstance(split, TensorSplit):
            split = adapt_tensor_split(split, pre.channels, pre.size, pre.resize, pre.crop)
            source = TensorSource(split.images, split.labels, augment=BatchAugment(cfg.augment, pre.size),
                                  training=training, seed=seed, device=device)
        else:
            source = DatasetSource(split, SampleTransform(pre, cfg.augment, training), seed=seed,
                                   skip_errors=cfg.skip_corrupt)
        loaders[role] = BatchLoader(source, bs, workers=cfg.workers, pin_memory=on_cuda and source.run_in == "workers",
                                    **common)
    return loaders
