"""Whole Keras files for the graph route: `.h5` (Keras 2 and 3), `.keras` zips and weights-only files.

`open_keras` opens any of them as a `KerasSource` (the stored model config, when there is one, and the
weight datasets by layer path, for the legacy `.h5` layout and Keras 3's `layers/.../vars`);
`graph_weights` pairs the datasets with the layers of a rebuilt `KerasGraph`, checking every declared
shape against the config before anything is read; `load_graph_weights` reads them into it. The per-layer
mapping onto zoo architectures (the `--model` route) is `keras_mapping`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.data.hdf5 import open_object
from deepvision.errors import UserError
from deepvision.interop.keras_h5 import (
    KerasFile,
    KerasLayer,
    attr_text,
    h5py_module,
    layer_weights,
    listed_names,
    open_member,
    read_keras_h5,
    read_weights,
    refuse_unused,
    stored_datasets,
    weight_dataset,
    weights_group,
)
from deepvision.safeload import check_zip_directory, regular_file

MAX_WEIGHTS_BYTES = 8 << 30


@dataclass
class KerasSource:
    """An open Keras file: its model config (None for weights-only files) and its weight datasets.

    `groups` maps a layer (a top-level layer name for the legacy .h5 layout, or the 'outer/inner'
    path of the Keras 3 layout) to its datasets: (weight name, dataset) pairs for the legacy layout,
    ("", dataset) in variable order for the Keras 3 layout (names come from the layer's class).
    """

    path: Path
    config: dict[str, Any] | None
    keras_version: str
    legacy: bool  # the .h5 layout of Keras 2 (and Keras 3's model.save("m.h5"))
    groups: dict[str, list[tuple[str, Any]]]
    # every weight dataset the file stores (object id -> path): one that no layer takes is refused
    stored: dict[Any, str] = field(default_factory=dict)


def _legacy_groups(path: Path, group: Any) -> dict[str, list[tuple[str, Any]]]:
    return {name: layer_weights(path, group, name) for name in listed_names(path, group, "layer_names")}


def _v3_groups(path: Path, root: Any) -> dict[str, list[tuple[str, Any]]]:
    """Keras 3 layout: layers/<x>/vars/<i> (nested: layers/<x>/layers/<y>/vars/<i>), named by vars' 'name'."""
    out: dict[str, list[tuple[str, Any]]] = {}

    def walk(g: Any, prefix: str) -> None:
        layers = open_object(path, g, "layers", f"group '{prefix}layers'")
        if layers is None:
            return
        if not isinstance(layers, h5py_module().Group):
            raise UserError(f"{path}: '{prefix}layers' is an HDF5 dataset, not a group of layers; the file is damaged")
        for key in layers:
            sub = open_member(path, layers, key, f"layer group '{prefix}{key}'")
            vars_ = open_object(path, sub, "vars", f"group '{prefix}{key}/vars'") if hasattr(sub, "keys") else None
            name = attr_text(vars_.attrs.get("name", key), path, f"the name of group '{prefix}{key}/vars'") \
                if vars_ is not None else key
            if vars_ is not None and len(vars_):
                if prefix + name in out:  # the later would replace the earlier's weights without a word
                    raise UserError(f"{path}: two layer groups name their variables '{prefix}{name}'; Keras writes "
                                    f"each layer's once, so the file is damaged")
                items = []
                for i in range(len(vars_)):
                    what = f"variable {i} of layer '{prefix}{name}'"
                    items.append(("", weight_dataset(path, open_member(path, vars_, str(i), what), what)))
                out[prefix + name] = items
            walk(sub, f"{prefix}{name}/")

    walk(root, "")
    return out


def _open_zip(path: Path) -> tuple[dict[str, Any], str, bytes]:
    import zipfile

    from deepvision.models.keras_graph import MAX_JSON_BYTES, parse_json

    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path} is not a Keras .keras file ({exc})") from None
    with z:
        try:
            check_zip_directory(path, z)  # a member that inflates hugely is refused before it is read
        except OSError as exc:
            raise UserError(f"{path} is not a readable Keras .keras file ({exc.strerror or exc})") from None
        names = set(z.namelist())
        if "config.json" not in names or "model.weights.h5" not in names:
            raise UserError(f"{path} is not a Keras .keras file (no config.json and model.weights.h5 inside)")
        for member, limit in (("config.json", MAX_JSON_BYTES), ("model.weights.h5", MAX_WEIGHTS_BYTES)):
            if z.getinfo(member).file_size > limit:
                raise UserError(f"{path}: {member} is larger than {limit >> 20} MB")
        config = parse_json(_member(path, z, "config.json"), f"{path}:config.json")
        version = ""
        if "metadata.json" in names and z.getinfo("metadata.json").file_size < 1 << 20:
            meta = parse_json(_member(path, z, "metadata.json"), f"{path}:metadata.json")
            version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
        return config, version or "3", _member(path, z, "model.weights.h5")


def _member(path: Path, z: Any, name: str) -> bytes:
    """The bytes of member `name` of the open zip `z`; UserError when they do not inflate or match their CRC."""
    import zipfile
    import zlib

    try:
        return z.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{path}: member {name} is damaged ({' '.join(str(exc).split())[:100]}); the file is "
                        f"damaged or was not written by Keras") from None


def _checked(config: Any, path: Path) -> dict[str, Any] | None:
    from deepvision.models.keras_graph import MODEL_CLASSES, check_layer_configs

    if config is not None and (not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES):
        raise UserError(f"{path}: the stored model config is not a Keras model (class_name Sequential, "
                        f"Functional or Model)")
    if config is not None:
        try:
            check_layer_configs(config)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    return config


class open_keras:
    """`with open_keras(path) as src:` (named like open()): a KerasSource of an .h5, .weights.h5 or .keras file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: Any = None

    def __enter__(self) -> KerasSource:
        from deepvision.models.keras_graph import parse_json

        h5py = h5py_module()
        path = self.path
        if not path.exists():
            raise UserError(f"Keras file not found: {path}")
        regular_file(path, "Keras file")  # a FIFO or device is refused, never waited on
        config, version, payload = None, "", None
        import zipfile

        if zipfile.is_zipfile(path):
            config, version, payload = _open_zip(path)
        try:
            if payload is not None:
                import io

                self._file = h5py.File(io.BytesIO(payload), "r")
            else:
                self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UserError(f"{path} is not an HDF5 file or a .keras zip ({exc})") from None
        f = self._file
        group = weights_group(path, f)
        if "layer_names" in group.attrs:
            raw = f.attrs.get("model_config")
            if raw is not None:
                config = parse_json(attr_text(raw, path, "attribute model_config"), str(path))
            version = attr_text(f.attrs.get("keras_version", group.attrs.get("keras_version", "")), path,
                                "attribute keras_version")
            return KerasSource(path, _checked(config, path), version or "2", True, _legacy_groups(path, group),
                               stored_datasets(group))
        if "layers" in f or "vars" in f:
            groups = _v3_groups(path, f)
            stored = {ds.id: ds.name for items in groups.values() for _, ds in items}
            return KerasSource(path, _checked(config, path), version or "3", False, groups, stored)
        self._file.close()
        raise UserError(f"{path} holds no Keras weights (neither the .h5 layout nor Keras 3's layers/ groups)")

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()


# the weights a layer's config decides on (use_bias, center, scale): one in the file that the layer lacks
# would be dropped, so the import would compute another function than the file's
LAYER_WEIGHTS = {"kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma", "beta", "moving_mean",
                 "moving_variance", "alpha"}


def graph_weights(src: KerasSource, layers: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """{layer path: {Keras weight name: dataset}} for the graph's weighted `layers` ((path, module));
    UserError naming the first layer whose weights are missing or whose declared shapes differ."""
    found: dict[str, dict[str, Any]] = {}
    layers = list(layers)
    wanted = {path: module.keras_shapes() for path, module in layers}
    if src.legacy:
        for group, items in src.groups.items():
            for wname, ds in items:
                parts = wname.split(":")[0].split("/")
                target = group if group in wanted else _nested_target(group, parts, wanted)
                if target is None:
                    raise UserError(f"{src.path}: weight '{wname}' belongs to no layer of the model config")
                found.setdefault(target, {})[_alias(parts[-1], wanted[target])] = ds
    else:
        for path, shapes in wanted.items():
            items = src.groups.get(path)
            if items is None:
                continue
            names = list(shapes)
            if len(items) < len(names):
                raise UserError(f"{src.path}: layer '{path}' stores {len(items)} weights but its config needs "
                                f"{len(names)} ({', '.join(names)})")
            if len(items) > len(names) and names and set(names) <= LAYER_WEIGHTS:
                raise UserError(f"{src.path}: layer '{path}' stores {len(items)} weights but its config has "
                                f"{len(names)} ({', '.join(names)}); the file holds weights the layer would "
                                f"drop (check use_bias, center and scale)")
            found[path] = {n: ds for n, (_, ds) in zip(names, items)}
    for path, shapes in wanted.items():
        have = found.get(path, {})
        unused = [n for n in have if n not in shapes and n in LAYER_WEIGHTS]
        if unused:
            raise UserError(f"{src.path}: layer '{path}' has a '{unused[0]}' weight in the file that its config "
                            f"does not use (check use_bias, center and scale); it would be dropped")
        for name, shape in shapes.items():
            if name not in have:
                raise UserError(f"{src.path}: layer '{path}' has no '{name}' weight in the file")
            declared = tuple(int(v) for v in have[name].shape)
            if shape != (-1,) and declared != tuple(shape):
                raise UserError(f"{src.path}: layer '{path}' weight '{name}' is {declared} in the file but the "
                                f"config makes it {tuple(shape)}")
    extra = [p for p in src.groups if src.groups[p] and p not in wanted
             and not any(w.startswith(p + "/") for w in wanted)]
    if extra:
        raise UserError(f"{src.path}: the file has weights for layer '{extra[0]}' that the config does not have")
    modules = dict(layers)

    def spare(path: str) -> tuple[str, ...]:  # variables the layer stores but does not compute with
        return tuple(getattr(modules.get(path), "keras_bookkeeping", ()))

    used = {ds.id for p, have in found.items() for n, ds in have.items() if n in wanted.get(p, ()) or n in spare(p)}
    if not src.legacy:  # Keras 3 variables are positional: the layer's own, then its bookkeeping ones
        used.update(ds.id for p in wanted for _, ds in (src.groups.get(p) or [])[:len(wanted[p]) + len(spare(p))])
    refuse_unused(src.path, src.stored, used)
    return found


def _nested_target(group: str, parts: list[str], wanted: dict[str, Any]) -> str | None:
    """The layer path of weight `parts` stored in the group of nested model `group`."""
    if len(parts) < 2:
        return None
    inner = parts[1:-1] if parts[0] == group else parts[:-1]
    exact = "/".join([group, *inner])
    if exact in wanted:
        return exact
    options = [p for p in wanted if p.startswith(group + "/") and p.rsplit("/", 1)[-1] == parts[-2]]
    return options[0] if len(options) == 1 else None


def _alias(short: str, wanted: dict[str, Any]) -> str:
    short = short.split(":")[0]
    if short == "kernel" and "depthwise_kernel" in wanted and "kernel" not in wanted:
        return "depthwise_kernel"
    if short == "depthwise_kernel" and "kernel" in wanted and "depthwise_kernel" not in wanted:
        return "kernel"
    return short


def load_graph_weights(src: KerasSource, graph: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """Read the file's weights into a `KerasGraph` (shapes checked before reading); returns them by
    layer path."""
    read = load_graph_weights_arrays(src, graph)
    with torch.no_grad():
        for path, module in graph.weighted_layers():
            module.set_keras(read[path])
    return read


def read_keras_file(path: str | Path, config: str | Path | None = None) -> KerasFile:
    """Every weighted layer of any Keras file, in the order its network runs them.

    Files with a model config (stored, or `config`: a model.to_json() file) are read through the
    rebuilt network; Keras 2 files without one in their stored layer order (`read_keras_h5`). A
    Keras 3 weights-only file names its variables by position only, so it needs the config.
    """
    from deepvision.models.keras_graph import KerasGraph, input_shape, model_layers, read_config

    with open_keras(path) as src:
        model_cfg = read_config(config) if config else src.config
        if model_cfg is None:
            if src.legacy:
                return read_keras_h5(path)
            raise UserError(f"{path} is a Keras 3 weights-only file: its weights are told apart by position, "
                            f"so give the model config too (--config model.json, from model.to_json())")
        graph = KerasGraph(model_cfg, keras_version=src.keras_version, materialize=False, head=False)  # weights only
        arrays = load_graph_weights_arrays(src, graph)
        version = src.keras_version
    layers = [KerasLayer(p, str(graph.entry(p).get("class_name")), graph.entry(p).get("config", {}) or {},
                         arrays[p]) for p, _ in graph.weighted_layers()]
    shape = input_shape(model_cfg)
    return KerasFile(Path(path), layers, version, tuple(int(v) for v in shape if v is not None) if shape else None,
                     model_layers(model_cfg))


def load_graph_weights_arrays(src: KerasSource, graph: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """The file's weights by layer path, checked against `graph` but not loaded into it."""
    found = graph_weights(src, graph.weighted_layers())
    return {p: read_weights(src.path, p, w) for p, w in found.items()}
