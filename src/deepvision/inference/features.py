"""`deepvision features`: activations of one layer of a network for every image of a data set, in HDF5.

Layers are named as torchvision's feature-extraction utilities name them (`features.18`, `avgpool`,
`flatten`, `classifier.5`, ...; `layer_names` lists them); networks that torch.fx cannot trace fall back
to forward hooks on named modules. The default layer is the input of the classifier head (for VGG16 the
dropout after fc7, as in the reference's network surgery; for ResNets the pooled vector).

The reference's options (docs/transfer.md): the images are shuffled *before* extraction (seeded) so a plain
slice of the file splits train/test; 4-D activations are flattened in channels-last order (H, W, C, as
the reference's Keras features), optionally average-pooled to k x k first; rows are written through
`HDF5DatasetWriter` (buffered, float64 by default) as `features`, `labels`, `label_names`, plus `index`
(each row's position in the data source). The file appears only when complete: the writer builds a
hidden temporary file and renames it at the end, so an interrupted extraction leaves no `features.h5`.
The JSON attribute `deepvision` records the network, weights, layer, pooling, flatten order and
preprocessing, so a classifier fitted on the file can extract matching features later.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.errors import UserError, suggest
from deepvision.inference.backbones import LoadedModel
from deepvision.inference.batching import batches
from deepvision.models.outputs import check_finite_output
from deepvision.safeload import load_json, shell_word

FLATTEN_ORDERS = ("channels_last", "channels_first")


def _graph_names(model: nn.Module) -> list[str] | None:
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        return [n for n in get_graph_node_names(model)[1] if n != "x"]
    except Exception:  # any tracing failure: fall back to module hooks
        return None


def layer_names(model: nn.Module) -> list[str]:
    """The names `--layer` accepts, in execution order."""
    names = _graph_names(model)
    return names if names is not None else [n for n, _ in model.named_modules() if n]


def default_layer(model: nn.Module, names: list[str] | None = None) -> str:
    """The layer feeding the classifier head (the last Linear/Conv2d and auxiliary heads of its width)."""
    from deepvision.models.pretrained import head_modules

    names = names if names is not None else layer_names(model)
    heads = head_modules(model)
    for i, name in enumerate(names):
        if i and any(name == h or name.startswith(f"{h}.") for h in heads):
            return names[i - 1]
    return names[-1]


class _HookExtractor(nn.Module):
    """Captures a named module's output with a forward hook (for networks torch.fx cannot trace)."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        super().__init__()
        self.model = model
        self.layer = layer
        self._out: Any = None
        model.get_submodule(layer).register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        self._out = output

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._out = None
        self.model(x)
        return {"out": self._out}


class FeatureExtractor:
    """uint8 image batches -> (N, D) float32 feature rows from one layer of `loaded.model`."""

    def __init__(self, loaded: LoadedModel, layer: str | None = None, *, pool: int | None = None,
                 flatten: str = "channels_last", flatten_given: bool = False) -> None:
        if flatten not in FLATTEN_ORDERS:
            raise UserError(f"flatten order must be one of {', '.join(FLATTEN_ORDERS)}, got {flatten!r}")
        if pool is not None and pool < 1:
            raise UserError(f"--pool must be a positive grid size, got {pool}")
        model = loaded.model.eval()
        names = _graph_names(model)
        traced = names is not None
        if names is None:
            names = [n for n, _ in model.named_modules() if n]
        layer = layer or default_layer(model, names)
        if layer not in names:
            shown = ", ".join(names[-12:])
            raise UserError(f"unknown layer '{layer}'{suggest(layer, names)}; the last of the {len(names)} valid "
                            f"names: {shown} (all: deepvision features {shell_word(loaded.spec)} --list-layers)")
        if traced:
            from torchvision.models.feature_extraction import create_feature_extractor

            self.net: nn.Module = create_feature_extractor(model, {layer: "out"}).eval()
        else:
            self.net = _HookExtractor(model, layer).eval()
        self.loaded, self.layer, self.pool, self.flatten = loaded, layer, pool, flatten
        self.flatten_given = flatten_given  # --flatten named: refused, as --pool is, where it would be ignored

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            x = self.loaded.pre.normalize(batch.to(self.loaded.device, non_blocking=True))
            out = self.net(x)["out"]
            if isinstance(out, (tuple, list)):
                out = out[0]
            out = check_finite_output(out.float(), "features")
            unread = "--pool" if self.pool else "--flatten" if self.flatten_given else None
            if unread and out.dim() != 4:  # nothing to pool or reorder: the option would be ignored without a word
                raise UserError(f"{unread} applies to a layer giving a feature map; layer {self.layer} gives "
                                f"{tuple(out.shape[1:])} values per image (leave {unread} out, or name a "
                                f"convolutional layer with --layer)")
            if out.dim() == 4:
                if self.pool:
                    side = min(out.shape[2:])
                    if self.pool > side:  # adaptive pooling would upsample (100,000: terabytes)
                        raise UserError(f"--pool {self.pool} is larger than layer {self.layer}'s "
                                        f"{out.shape[2]} x {out.shape[3]} map; give 1 to {side}")
                    out = nn.functional.adaptive_avg_pool2d(out, self.pool)
                if self.flatten == "channels_last":
                    out = out.permute(0, 2, 3, 1)
            return out.flatten(1).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        """What produced the features: enough for `load_model` + FeatureExtractor to do it again."""
        run_id = {"run_id": self.loaded.run_id} if self.loaded.run_id else {}
        return {**self.loaded.describe(), **run_id, "layer": self.layer, "pool": self.pool,
                "flatten": self.flatten, "preprocess": self.loaded.pre.to_dict()}


@dataclass
class DataItems:
    """A data source opened for extraction: samples are (PIL image, label); `targets` are labels."""

    dataset: Any
    classes: list[str]
    description: str


class _TensorImages:
    """In-memory images (an HDF5 source) as (PIL image, label) samples, like the file-backed sources."""

    def __init__(self, split: Any) -> None:
        self.split = split
        self.targets = split.labels.numpy()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        pixels = self.split.images[i].permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels[:, :, 0], "L") if pixels.shape[2] == 1 else Image.fromarray(pixels, "RGB")
        return image, int(self.targets[i])


_FORMS = {"folder": "a folder of class sub-folders (named by its folders)", "lst": "a .lst file",
          "rec": "a .rec file", "hdf5": "an HDF5 file"}


def check_data_options(data: str | Path, labels: str | None = None, image_root: str | None = None) -> None:
    """Refuse, before any model loads, a class names file (`labels`) or an image folder (`image_root`) for
    data that does not read it: taken, it would be ignored without a word, even naming nothing."""
    from deepvision.config.names import source_option_keys
    from deepvision.config.schema import DataConfig
    from deepvision.data.sources import data_config_for_path

    source = data_config_for_path(DataConfig(test=None), data).source
    if labels and "labels" not in source_option_keys(source, {}):
        raise UserError(f"--labels applies to .lst, .rec and HDF5 data, and {data} is {_FORMS[source]}; leave "
                        f"it out")
    if image_root and source != "lst":
        raise UserError(f"--image-root applies to .lst data only (the folder its paths are relative to), and {data} "
                        f"is {_FORMS[source]}; leave it out")


def open_data(data: str | Path, *, channels: int = 3, labels: str | None = None,
              image_root: str | None = None) -> DataItems:
    """Every sample of a folder of class sub-folders, a .lst list (images under `image_root`, default its
    folder), a .rec file or an HDF5 image file: the data forms training reads."""
    from deepvision.config.schema import DataConfig
    from deepvision.data.sources import TensorSplit, data_config_for_path, load_data

    check_data_options(data, labels, image_root)
    cfg = data_config_for_path(DataConfig(test=None, channels=channels, options={"labels": labels} if labels else {}),
                               data, image_root)
    bundle = load_data(cfg, roles=("train",))
    dataset = _TensorImages(bundle.train) if isinstance(bundle.train, TensorSplit) else bundle.train
    return DataItems(dataset, list(bundle.classes), f"{cfg.source}:{data}")


def check_feature_sizes(out: Path, rows: int, dim: int, buffer_size: int, dtype: str, layer: str) -> None:
    """Refuse features that would not fit: the rows held in memory (float32, as computed; at most
    `buffer_size`) beyond half of what this process may use, or the file (its whole chunks, the index and
    the metadata counted) beyond the free space of its disk (a 300 kB data set of 1,500 small images at
    VGG16's first convolution asked for 25 GB of buffer and a 38 GB file)."""
    import shutil

    from deepvision.datasets.hdf5 import file_bytes
    from deepvision.safeload import format_bytes, max_read_bytes

    fixes = f"give --pool N, another --layer{', --dtype float16' if dtype != 'float16' else ''} or fewer images"
    buffered = min(buffer_size, rows)
    held, ceiling = buffered * dim * 4, max_read_bytes() // 2
    if held > ceiling:
        raise UserError(f"layer {layer} gives {dim:,} values an image: holding {buffered:,} rows (--buffer-size) "
                        f"takes {format_bytes(held)}, more than half the memory this process may use "
                        f"({format_bytes(ceiling)}); give a smaller --buffer-size, --pool N or another --layer")
    folder = next(p for p in (out.absolute().parent, *out.absolute().parents) if p.exists())
    size, free = file_bytes(rows, (dim,), dtype, buffer_size) + rows * 8, shutil.disk_usage(folder).free  # + index
    if size > free:
        raise UserError(f"the features of {rows:,} images ({dim:,} {dtype} values each, layer {layer}) take "
                        f"{format_bytes(size)}, more than the {format_bytes(free)} free in {folder}; {fixes}")


def extract_features(
    extractor: FeatureExtractor,
    data: DataItems,
    out: str | Path,
    *,
    batch_size: int = 32,
    buffer_size: int = 1000,
    shuffle: bool = True,
    seed: int = 42,
    dtype: str = "float64",
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write the features of every sample of `data` to the HDF5 file `out`; returns a summary."""
    from deepvision.datasets.hdf5 import HDF5DatasetWriter

    out = Path(out)
    if out.exists():
        raise UserError(f"{out} already exists; delete it or choose another --out (feature files are never "
                        f"overwritten)")
    if dtype not in ("float64", "float32", "float16"):
        raise UserError(f"--dtype must be float64, float32 or float16, got {dtype!r}")
    if buffer_size <= 0:
        raise UserError(f"--buffer-size must be a positive integer, got {buffer_size}")
    dataset, targets = data.dataset, np.asarray(data.dataset.targets, dtype=np.int64)
    n = len(dataset)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)

    def load(i: int) -> torch.Tensor:
        img, _ = dataset[int(i)]
        return extractor.loaded.pre.load(img)

    writer: HDF5DatasetWriter | None = None
    start, done = time.perf_counter(), 0
    try:
        for chunk, batch in batches(order.tolist(), load, batch_size, threads):
            rows = extractor(batch)
            if writer is None:  # the width is known from the first batch: what it takes is checked before writing
                check_feature_sizes(out, n, rows.shape[1], buffer_size, dtype, extractor.layer)
                writer = HDF5DatasetWriter(out, (n, rows.shape[1]), "features", buffer_size, dtype=dtype)
            writer.add(rows, targets[chunk])
            done += len(chunk)
            if progress is not None:
                progress(done, n)
        if writer is None:
            raise UserError(f"{data.description} holds no images")
        seconds = time.perf_counter() - start
        info = {**extractor.describe(), "data": data.description, "shuffle": shuffle, "seed": seed,
                "rows": n, "dim": int(writer.row_shape[0]), "dtype": dtype}
        writer.store_class_labels(data.classes)
        writer.db.create_dataset("index", data=order.astype(np.int64))
        writer.db.attrs["deepvision"] = json.dumps(info)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return {**info, "path": str(out), "seconds": seconds, "images_per_second": n / max(seconds, 1e-9)}


def read_feature_info(path: str | Path) -> dict[str, Any]:
    """The `deepvision` attribute of a feature file ({} for files written by other tools)."""
    from deepvision.data.hdf5 import _h5py

    try:
        with _h5py().File(path, "r") as db:
            raw = db.attrs.get("deepvision")
    except OSError as exc:
        raise UserError(f"cannot read {path} as HDF5 ({exc})") from None
    if raw is None:
        return {}
    info = load_json(raw if isinstance(raw, (str, bytes)) else str(raw), f"{path} attribute 'deepvision'")
    if not isinstance(info, dict):
        raise UserError(f"{path} attribute 'deepvision' is not a JSON object; re-extract the features")
    return info
