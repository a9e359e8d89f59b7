"""A built detection dataset as training data: per-role splits, the dataset, and the loader.

Batches are `(images, targets)`: a list of uint8 3 x H x W tensors (sizes differ; the detector resizes them) and a list
of dicts with `boxes` (N, 4) float32 xyxy pixels, `labels` (N,) int64 class ids from 1, `difficult` (N,) bool and
`image_id` (the index in the split). Training targets leave out difficult boxes unless `data.options.train_difficult` is
set. The epoch order and the augmentation depend only on (seed, epoch), as for every deepvision loader.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from deepvision.config.schema import DataConfig
from deepvision.data.augment_plan import sample_seed
from deepvision.data.detection.index import IndexImage, load_index
from deepvision.data.detection.transforms import BoxTransform, DetectionAugment
from deepvision.data.loader import BatchLoader, BatchSource
from deepvision.data.preprocess import Preprocess, open_image, pil_to_tensor
from deepvision.data.source_registry import register_task_source
from deepvision.errors import UserError

Target = dict[str, torch.Tensor]
register_task_source("detection", "detection")  # `data.source: detection` with `task: detection`


class DetectionDataset(Dataset):
    """Images of one split, addressed by (index, epoch) so augmentation is seeded per sample and epoch."""

    def __init__(self, images: list[IndexImage], *, training: bool = False, augment: DetectionAugment | None = None,
                 seed: int = 0, train_difficult: bool = False) -> None:
        self.images, self.training, self.seed = images, training, seed
        self.keep_difficult = train_difficult or not training
        self.transform = BoxTransform(augment) if (training and augment is not None and augment.active) else None

    def __len__(self) -> int:
        return len(self.images)

    def target(self, index: int) -> Target:
        """The ground truth of image `index` in its index-time pixel size (for evaluation)."""
        im = self.images[index]
        return {"boxes": torch.from_numpy(im.pixel_boxes()), "labels": torch.from_numpy(im.labels),
                "difficult": torch.from_numpy(im.difficult), "image_id": torch.tensor(index)}

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        im = self.images[index]
        image = pil_to_tensor(open_image(im.file, 3))
        h, w = image.shape[-2:]
        scale = np.array([w, h, w, h], np.float32)  # boxes are normalised: fit them to the decoded size
        boxes = torch.from_numpy(im.boxes * scale)
        labels, difficult = torch.from_numpy(im.labels), torch.from_numpy(im.difficult)
        if not self.keep_difficult:
            keep = ~difficult
            boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        if self.transform is not None:
            image, boxes, labels, difficult = self.transform(image, boxes, labels, difficult,
                                                             sample_seed(self.seed, epoch, index))
        return image, {"boxes": boxes.reshape(-1, 4), "labels": labels, "difficult": difficult,
                       "image_id": torch.tensor(index)}


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Lists of images and targets. In a worker process, each field of the batch becomes views of one
    tensor: every tensor storage crossing to the main process costs a file-descriptor hand-over (~5 per
    batch instead of ~5 per image)."""
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    if get_worker_info() is None or not batch:
        return images, targets
    fields = {key: _views_of_one(t[key] for t in targets) for key in targets[0]}
    return _views_of_one(images), [{key: fields[key][i] for key in fields} for i in range(len(targets))]


def _views_of_one(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Equal-dtype tensors of any shapes, copied into one storage and returned as views of it (tensors of
    mixed dtypes are returned as they are)."""
    tensors = list(tensors)
    if len({t.dtype for t in tensors}) != 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    return [part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]

class DetectionSource(BatchSource):
    """Batches (list of images, list of targets) of a `DetectionDataset`. With `skip_errors`
    (data.skip_corrupt) an unreadable image is left out of its batch and described by its file."""

    def __init__(self, dataset: DetectionDataset, skip_errors: bool = False) -> None:
        self.dataset, self.skip_errors = dataset, skip_errors

    def __len__(self) -> int:
        return len(self.dataset)

    def make(self, epoch: int, indices: list[int]) -> tuple[list[torch.Tensor], list[Target], list[str]]:
        samples, skipped = [], []
        for index in indices:
            try:
                samples.append(self.dataset[(index, epoch)])
            except UserError:
                if not self.skip_errors:
                    raise
                skipped.append(str(self.dataset.images[index].file))
        images, targets = collate(samples)
        return images, targets, skipped


@dataclass
class DetectionData:
    """The TaskData of detection: classes, the splits by role, and their loaders."""

    cfg: DataConfig
    classes: list[str]
    preprocess: Preprocess
    splits: dict[str, list[IndexImage]]  # role -> images
    augment: DetectionAugment
    train_difficult: bool = False
    min_batch: int = 1
    channels: int = 3
    description: str = ""
    datasets: dict[str, DetectionDataset] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {role: len(self.splits[role]) for role in ("train", "val", "test") if role in self.splits}

    def dataset(self, role: str, seed: int = 0) -> DetectionDataset:
        training = role == "train"
        return DetectionDataset(self.splits[role], training=training, augment=self.augment if training else None,
                                seed=seed, train_difficult=self.train_difficult)

    def loaders(self, roles: tuple[str, ...] = ("train", "val"), *, seed: int = 0, rank: int = 0, world: int = 1,
                device: torch.device | str = "cpu", max_steps: int | None = None) -> dict[str, BatchLoader]:
        d = self.cfg
        out: dict[str, BatchLoader] = {}
        for role in roles:
            if role not in self.splits:
                continue
            training = role == "train"
            ds = self.datasets[role] = self.dataset(role, seed)
            out[role] = BatchLoader(
                DetectionSource(ds, d.skip_corrupt), d.batch_size if training else (d.eval_batch_size or d.batch_size),
                training=training, shuffle=d.shuffle is not False, seed=seed, rank=rank, world=world,
                last_batch=d.last_batch if training else "keep", workers=d.workers, max_steps=max_steps,
                pin_memory=torch.device(device).type == "cuda", min_batch=self.min_batch if training else 1)
        return out


def load_detection_data(cfg: DataConfig, roles: tuple[str, ...], preprocess: Preprocess, *, min_batch: int = 1
                        ) -> DetectionData:
    """The built dataset at `data.root` with its splits mapped to roles (data.train/val/test name the
    split files); `data.val_fraction`/`test_fraction` carve seeded per-image parts out of train."""
    if cfg.source != "detection":
        raise UserError(f"the detection task reads built detection datasets: set data.source: detection (got "
                        f"'{cfg.source}'); build one with `deepvision detection build`")
    if not cfg.root:
        raise UserError("data.root must name a built detection dataset (`deepvision detection build ... --out DIR`)")
    wanted = {role: getattr(cfg, role) for role in ("train", "val", "test") if role == "train" or role in roles}
    wanted = {role: name for role, name in wanted.items() if name}
    index = load_index(cfg.root, [])
    available = index.info.get("splits", [])
    for role, name in list(wanted.items()):
        if name not in available:
            if role == "test" and name == "test":
                del wanted[role]  # the default test split is optional
                continue
            raise UserError(f"data.{role}: split '{name}' not found in {cfg.root}; available: "
                            f"{', '.join(available) or 'none'}")
    if "train" not in wanted:
        raise UserError("data.train must name the training split")
    index = load_index(cfg.root, sorted(set(wanted.values())))
    splits = {role: list(index.splits[name]) for role, name in wanted.items()}
    n = len(splits["train"])
    for role, fraction, offset in (("test", cfg.test_fraction, 0), ("val", cfg.val_fraction, 1)):
        if fraction > 0:
            if role in splits or (role == "test" and cfg.test in available):  # the data's own, read or not
                cfg.refuse_carving_over(role)
            count = int(round(fraction * n))
            order = np.random.RandomState(cfg.split_seed + offset).permutation(len(splits["train"]))
            splits[role] = [splits["train"][i] for i in sorted(order[:count])]
            splits["train"] = [splits["train"][i] for i in sorted(order[count:])]
    splits = {role: images for role, images in splits.items() if role == "train" or role in roles}
    if cfg.max_samples:
        splits = {role: images[: cfg.max_samples] for role, images in splits.items()}
    if not splits["train"]:
        raise UserError(f"the training split '{cfg.train}' of {cfg.root} is empty")
    aug = DetectionAugment.from_options(cfg.options, cfg.augment.rand_mirror)
    counts = "/".join(str(len(splits[r])) for r in ("train", "val", "test") if r in splits)
    return DetectionData(cfg, index.classes, preprocess, splits, aug,
                         train_difficult=bool(cfg.options.get("train_difficult", False)), min_batch=min_batch,
                         description=f"detection:{cfg.root} ({counts})")
