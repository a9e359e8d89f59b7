"""Transfer learning (docs/transfer.md): pretrained inference, feature extraction to HDF5, logistic regression.

Python twins of `deepvision classify`, `deepvision features` and `deepvision logreg`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepvision.apps.transfer.linear_model import LinearModel
from deepvision.apps.transfer.logreg import fit_logreg
from deepvision.config.schema import MAX_BATCH
from deepvision.errors import UserError
from deepvision.safeload import check_range

__all__ = ["LinearModel", "classify", "features", "fit_logreg", "logreg"]


def classify(inputs: Sequence[str | Path], model: str | None = "tv:mobilenet_v2", *, weights: str | None = None,
             run: str | Path | None = None, top: int = 5, batch_size: int = 32, device: str = "auto",
             progress: Callable[[int, int], None] | None = None) -> list:
    """Top-k ImageNet synsets (or a run's classes) for image files and folders; see `deepvision classify`."""
    from deepvision.inference.backbones import load_model
    from deepvision.inference.classify import classify_images

    loaded = load_model(None if run else model, weights, run=run, device=device)
    return classify_images(loaded, inputs, top=top, batch_size=batch_size, progress=progress)


def features(model: str, data: str | Path, out: str | Path, *, layer: str | None = None,
             weights: str | None = None, pool: int | None = None, flatten: str | None = None,
             batch_size: int = 32, buffer_size: int = 1000, shuffle: bool = True, seed: int | None = None,
             dtype: str = "float64", labels: str | None = None, image_root: str | None = None,
             crop: bool = True, device: str = "auto",
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Extract one layer's activations for every image of `data` into an HDF5 file; see `deepvision features`.

    `crop=False` resizes whole images to the input size, ignoring the aspect ratio (the reference's feature-extraction
    preprocessing), instead of the model's resize + centre crop. `flatten` (default channels_last) applies to a
    layer giving a feature map and `seed` (default 42) to the shuffle: given where they would be ignored, refused.
    """
    from deepvision.inference.backbones import load_model
    from deepvision.inference.features import FeatureExtractor, check_data_options, extract_features, open_data

    if Path(out).exists():  # before loading anything
        raise UserError(f"{out} already exists; delete it or choose another --out (feature files are never "
                        f"overwritten)")
    check_range("--batch-size", batch_size, 1, MAX_BATCH)  # one batch of a large folder must not hold every image
    if not Path(data).exists():
        raise UserError(f"data not found: {data} (give a folder of class sub-folders, a .lst, a .rec or an HDF5 "
                        f"file)")
    check_data_options(data, labels, image_root)  # before the model loads
    if seed is not None and not shuffle:
        raise UserError("--seed applies to the shuffle, and --no-shuffle keeps the data's own order; leave --seed "
                        "out")
    loaded = load_model(model, weights, device=device)
    if not crop:
        loaded.pre = dataclasses.replace(loaded.pre, resize=None, crop=False)
    extractor = FeatureExtractor(loaded, layer, pool=pool, flatten=flatten or "channels_last",
                                 flatten_given=flatten is not None)
    items = open_data(data, channels=loaded.pre.channels, labels=labels, image_root=image_root)
    return extract_features(extractor, items, out, batch_size=batch_size, buffer_size=buffer_size, shuffle=shuffle,
                            seed=42 if seed is None else seed, dtype=dtype, progress=progress)


logreg = fit_logreg
