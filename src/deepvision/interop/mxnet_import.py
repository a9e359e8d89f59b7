"""`deepvision import mxnet PREFIX EPOCH`: an MXNet checkpoint becomes a deepvision run directory.

Reads `PREFIX-symbol.json` (the graph) and `PREFIX-NNNN.params` (the weights, pure Python) and
builds the network as a PyTorch module straight from the graph (`mxnet:graph`). With `model=NAME`
the weights are moved onto a deepvision architecture instead (the reference nets, `tv:resnet*` for
Gluon ResNet v1, `resnet_ref` for Gluon ResNet v2 bottlenecks) and both networks are run on the same
batch to prove they agree. The run directory holds config.yaml, preprocess.json, labels.txt, the
symbol file (mxnet-symbol.json), import.json and checkpoints/<name>-NNNN.pt (+ best.pt, last.pt), so
`predict`, `evaluate`, `export`, `serve` and fine-tuning (`model.pretrained`) accept it.

Why one module of ~405 lines: both routes (the graph, or a deepvision architecture checked against it
on one batch) read the same files, infer the same input size and write the same run directory.
"""

from __future__ import annotations

import inspect
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepvision.config.schema import MAX_EPOCHS
from deepvision.errors import UserError, suggest
from deepvision.interop.mxnet_params import read_params, split_params
from deepvision.models.mxnet_graph import MXNetGraph, check_operators
from deepvision.models.mxnet_head import OutputShapeError
from deepvision.models.mxnet_symbol import Symbol, read_symbol
from deepvision.safeload import (
    check_class_names,
    check_image_side,
    check_range,
    input_file,
    name_lines,
    read_text_file,
)

SYMBOL_FILE = "mxnet-symbol.json"
_CANDIDATE_SIDES = (224, 227, 299, 32, 28, 256, 192, 112, 96, 64, 48, 16, 8)


@dataclass
class ImportResult:
    run_dir: Path
    model: str
    num_classes: int
    input_size: tuple[int, int, int]
    tensors: int  # weight tensors read from the file
    check_diff: float | None = None  # --model: max |graph - model| on a random batch
    unused: list[str] = field(default_factory=list)


def checkpoint_files(prefix: str | Path, epoch: int) -> tuple[Path, Path]:
    """(symbol file, params file) of an MXNet checkpoint; UserError listing the saved epochs if absent."""
    prefix = Path(prefix)
    symbol = Path(f"{prefix}-symbol.json")
    params = Path(f"{prefix}-{epoch:04d}.params")
    for path, what in ((params, "MXNet parameter file"), (symbol, "MXNet symbol file")):
        if path.exists():  # a FIFO or a folder is named as such, not reported missing
            input_file(path, what)
    if not params.is_file():
        saved = sorted(p.name for p in prefix.parent.glob(f"{prefix.name}-*.params")) if prefix.parent.is_dir() else []
        raise UserError(f"MXNet parameter file not found: {params}"
                        + (f"; found {', '.join(saved[:5])}" if saved else "; check PREFIX and EPOCH"))
    if not symbol.is_file():
        raise UserError(f"MXNet symbol file not found: {symbol}; an MXNet checkpoint is PREFIX-symbol.json "
                        f"plus PREFIX-NNNN.params")
    return symbol, params


def _array_for(args: dict[str, np.ndarray], aux: dict[str, np.ndarray], role: str, var: str,
               source: str) -> np.ndarray:
    array = aux.get(var) if role.startswith("running_") else args.get(var)
    if array is None:
        array = args.get(var, aux.get(var))
    if array is None:
        raise UserError(f"{source} has no '{var}' ({role} of layer '{var.rsplit('_', 1)[0]}'); the "
                        f"parameters belong to another network or epoch")
    return array


def check_graph_weights(graph: MXNetGraph, args: dict[str, np.ndarray], aux: dict[str, np.ndarray],
                        source: str) -> None:
    """UserError for the first array the graph needs that is missing, has another shape than its layer
    (the graph may still be on the meta device: nothing is allocated) or holds NaN/infinity."""
    for key, roles in graph.mx_params.items():
        module = graph.layers[key]
        params = dict(module.named_parameters())
        params.update(module.named_buffers())
        for role, var in roles.items():
            array = _array_for(args, aux, role, var, source)
            if role == "weight" and getattr(module, "fix_gamma", False):
                continue  # fix_gamma: MXNet multiplies by 1 whatever was saved
            shape = tuple(params[role].shape)
            if array.size == 1 and isinstance(module, torch.nn.PReLU):
                pass
            elif tuple(array.shape) != shape:
                raise UserError(f"'{var}' in {source} has shape {tuple(array.shape)} but layer '{key}' needs "
                                f"{shape} for this input size; check --input-size")
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                bad = int(np.size(array) - np.isfinite(array).sum())
                raise UserError(f"'{var}' in {source} holds {bad} NaN/infinite value(s); the checkpoint is "
                                f"damaged (a diverged run?): import another epoch")
            if role == "running_var" and (array < 0).any():
                first = int(np.flatnonzero(array < 0)[0])
                raise UserError(f"'{var}' in {source} holds negative variances (first {array.flat[first]:g} at "
                                f"index {first}); every prediction would be NaN: the checkpoint is damaged")


def load_graph_weights(graph: MXNetGraph, args: dict[str, np.ndarray], aux: dict[str, np.ndarray],
                       source: str) -> list[str]:
    """Put the file's arrays into the graph module (checked first with `check_graph_weights`); returns
    the names of arrays the graph does not use."""
    check_graph_weights(graph, args, aux, source)
    state = graph.state_dict()
    used = set()
    for key, roles in graph.mx_params.items():
        module = graph.layers[key]
        for role, var in roles.items():
            array = _array_for(args, aux, role, var, source)
            target = state[f"layers.{key}.{role}"]
            value = torch.from_numpy(np.asarray(array, dtype=np.float32))
            if role == "weight" and getattr(module, "fix_gamma", False):
                value = torch.ones_like(target)  # fix_gamma: MXNet multiplies by 1 whatever was saved
            elif value.numel() == 1 and target.numel() > 1 and isinstance(module, torch.nn.PReLU):
                value = value.expand_as(target)
            target.copy_(value)
            used.add(var)
    return [k for k in (*args, *aux) if k not in used]


def graph_params(graph: MXNetGraph) -> dict[str, np.ndarray]:
    """The graph module's weights under MXNet checkpoint names (`arg:`/`aux:`), e.g. for `write_params`."""
    state = graph.state_dict()
    out: dict[str, np.ndarray] = {}
    for key, roles in graph.mx_params.items():
        for role, var in roles.items():
            kind = "aux" if role.startswith("running_") else "arg"
            out[f"{kind}:{var}"] = state[f"layers.{key}.{role}"].detach().cpu().numpy().astype(np.float32)
    return out


def infer_input_size(symbol: Symbol, args: dict[str, np.ndarray], aux: dict[str, np.ndarray]
                     ) -> tuple[int, int, int]:
    """(C, H, W) from the data variable's __shape__, else the first standard size the weights fit."""
    data = symbol.input_nodes()
    shape = data[0].get("__shape__", None) if data else None
    if isinstance(shape, tuple) and len(shape) == 4 and all(isinstance(v, int) and v > 0 for v in shape[1:]):
        check_image_side(f"{symbol.path}: input __shape__", shape[2], shape[3])
        if shape[1] not in (1, 3):
            raise UserError(f"{symbol.path}: input __shape__ {shape} has {shape[1]} channels; images have 1 or 3")
        return int(shape[1]), int(shape[2]), int(shape[3])
    check_operators(symbol)
    arrays = {**args, **aux}
    single: OutputShapeError | None = None
    for channels in (3, 1):
        for side in _CANDIDATE_SIDES:
            try:
                graph = MXNetGraph(symbol, channels, side, materialize=False)
            except OutputShapeError as exc:  # said at the end, unless another size gives class scores
                single = single or exc
                continue
            except UserError:
                continue
            fits = all(tuple(arrays[var].shape) == tuple(graph.layers[key].state_dict()[role].shape)
                       for key, roles in graph.mx_params.items() for role, var in roles.items()
                       if var in arrays and not (role == "weight" and getattr(graph.layers[key], "fix_gamma", 0)))
            if fits:
                return channels, side, side
    if single is not None:
        raise single
    raise UserError(f"{symbol.path}: cannot tell the input size from the weights; give --input-size CxHxW")


def infer_options(model: str, symbol: Symbol, given: dict[str, Any], input_size: tuple[int, int, int]
                  ) -> dict[str, Any]:
    """Builder options the graph determines (BN eps, ELU alpha, activations, input size) unless given."""
    from deepvision.models.registry import get_model_spec

    params = inspect.signature(get_model_spec(model).builder).parameters
    found: dict[str, Any] = {}
    bn = [float(n.get("eps")) for n in symbol.nodes if n.op == "BatchNorm"]
    if bn:
        found["bn_eps"] = max(set(bn), key=bn.count)
    acts = [n for n in symbol.nodes if n.op == "Activation" or (n.op == "LeakyReLU" and n.get("act_type") != "prelu")]
    if acts:
        first = acts[0]
        found["activation"] = first.get("act_type")
        if first.op == "LeakyReLU" and first.get("act_type") == "elu":
            found["elu_alpha"] = float(first.get("slope"))
    fcs = [n for n in symbol.nodes if n.op == "FullyConnected"]
    if fcs:
        after = [symbol.nodes[c] for c in symbol.consumers.get(fcs[0].index, [])]
        if after and after[0].op == "Activation":
            found["fc_activation"] = after[0].get("act_type")
    if "input_size" in params:
        found["input_size"] = input_size[1] if input_size[1] == input_size[2] else list(input_size[1:])
    opts = {k: v for k, v in found.items() if k in params and k not in given}
    return {**opts, **given}


def read_labels(path: str | Path | None, count: int) -> list[str]:
    """Class names from a file (one per line; `n01440764 tench, Tinca tinca` synset lines keep the words)."""
    if path is None:
        return [str(i) for i in range(count)]
    p = input_file(path, "labels file")  # a FIFO is named, never opened
    names, wnids = [], []
    text = read_text_file(p, "labels file")  # UTF-8 only: a name is never changed on import
    for line in name_lines(text):
        head, _, rest = line.partition(" ")
        synset = bool(rest) and len(head) == 9 and head[0] == "n" and head[1:].isdigit()
        names.append(rest.strip() if synset else line)
        wnids.append(head if synset else None)
    if len(names) != count:
        raise UserError(f"{p} names {len(names)} classes but the network has {count} outputs")
    # ImageNet names two classes "crane" (the bird, the machine): their WordNet ids tell them apart
    repeated = {n for n in names if names.count(n) > 1}
    names = [f"{n} ({w})" if n in repeated and w else n for n, w in zip(names, wnids, strict=True)]
    check_class_names(names, str(p))
    return names


def _check_input_options(scale: float, std: list[float] | None, resize: int | None) -> None:
    """--scale and --std finite and positive, --resize within the image-side ceiling."""
    if not math.isfinite(scale) or scale <= 0:
        raise UserError(f"--scale must be a finite positive number, got {scale:g}")
    if std and not all(math.isfinite(s) and s > 0 for s in std):
        raise UserError(f"--std values must be finite positive numbers, got {', '.join(f'{s:g}' for s in std)}")
    if resize is not None:
        check_image_side("--resize", resize)


def _preprocess(channels: int, size: tuple[int, int], resize: int | None, scale: float,
                mean: list[float] | str | None, std: list[float] | None):
    from deepvision.data.preprocess import Preprocess

    if isinstance(mean, (str, Path)):
        from deepvision.data.mean_file import read_mean_rgb

        values = read_mean_rgb(mean)
    else:
        values = list(mean or [])
    if channels == 1 and len(values) == 3:
        values = [sum(values) / 3]
    for label, v in (("--mean", values), ("--std", std or [])):
        if v and len(v) not in (1, channels):
            raise UserError(f"{label} has {len(v)} values but the network takes {channels} channels")
    if resize is not None and resize < min(size):  # scale, std and resize alone: `_check_input_options`
        raise UserError(f"--resize {resize} is smaller than the input size {size}")
    return Preprocess(channels=channels, size=size, resize=resize, scale=scale, mean=[m * scale for m in values],
                      std=[s * scale for s in (std or [])])


def check_options(model: str | None, options: dict[str, Any]) -> None:
    """UserError for `--option` keys that would be dropped: any without `--model` (the symbol graph takes no
    builder options), and, with it, a key its builder does not take (`reference` included), naming the
    valid ones. Builders that pass options on (tv:, timm:) check them themselves."""
    if not options:
        return
    if model is None:
        raise UserError(f"--option {next(iter(options))}: builder options need --model (the graph built from "
                        f"the symbol file takes none); give --model NAME or leave --option out")
    from deepvision.models.registry import get_model_spec

    spec = get_model_spec(model)
    params = inspect.signature(spec.builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    bad = [k for k in options if k not in spec.options]
    if bad:
        raise UserError(f"--option {bad[0]}: model '{model}' has no option '{bad[0]}'"
                        f"{suggest(bad[0], spec.options)}; valid options: {', '.join(spec.options) or 'none'}")


def import_mxnet(
    prefix: str | Path,
    epoch: int,
    *,
    model: str | None = None,
    out: str | Path | None = None,
    options: dict[str, Any] | None = None,
    input_size: tuple[int, int, int] | None = None,
    labels: str | Path | None = None,
    scale: float = 1.0,
    mean: list[float] | str | None = None,
    std: list[float] | None = None,
    resize: int | None = None,
    quiet: bool = False,
) -> ImportResult:
    """Import an MXNet checkpoint into a new run directory (`out`, default runs/mxnet-PREFIX-EPOCH).

    `scale`, `mean` (R, G, B values or a mean JSON file, in 0..255 units) and `std` describe the input
    the MXNet network was trained on: MXNet reference networks take raw pixels minus the dataset mean
    (scale 1), Gluon model-zoo networks 0..1 pixels with ImageNet mean/std.
    """
    say = (lambda *_: None) if quiet else print
    check_range("epoch", epoch, 0, MAX_EPOCHS)
    check_options(model, options or {})
    _check_input_options(scale, std, resize)  # before any file is read: a refusal is the only line
    run_dir = _target(out, f"mxnet-{Path(prefix).name}-{epoch:04d}")
    if labels is not None:
        input_file(labels, "labels file")  # a FIFO or a missing file, before the checkpoint is read
    symbol_path, params_path = checkpoint_files(prefix, epoch)
    symbol = read_symbol(symbol_path)
    args, aux = split_params(read_params(params_path), params_path)
    if input_size is None and model:
        from deepvision.models.registry import get_model_spec

        input_size = get_model_spec(model).input_size
    input_size = input_size or infer_input_size(symbol, args, aux)
    channels, height, width = input_size
    check_image_side("input size", height, width)
    graph = MXNetGraph(symbol, channels, (height, width), materialize=False)
    check_graph_weights(graph, args, aux, str(params_path))  # before any weight tensor exists
    graph.materialize()
    unused = load_graph_weights(graph, args, aux, str(params_path))
    classes = read_labels(labels, graph.num_classes)
    say(f"[INFO] {params_path.name}: {len(args) + len(aux)} tensors; graph input {channels}x{height}x{width}, "
        f"{graph.num_classes} outputs")
    pre = _preprocess(channels, (height, width), resize, scale, mean, std)
    if model:
        from deepvision.interop.mxnet_mapping import align, compare, transfer
        from deepvision.models.registry import create_model
        from deepvision.models.summary import check_input_size

        opts = infer_options(model, symbol, dict(options or {}), input_size)
        target = create_model(model, graph.num_classes, channels, **opts)
        check_input_size(target, input_size, model)
        pairs = align(graph, target, model)
        transfer(graph, target, pairs)
        x = torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(0))
        diff = compare(graph, target, pairs, x)
        say(f"[INFO] {len(pairs)} layers mapped onto {model}; max |MXNet graph - {model}| on a random batch: "
            f"{diff:.2e}")
        state, name, model_args = target.state_dict(), model, opts
    else:
        diff, state, name = None, graph.state_dict(), "mxnet:graph"
        model_args = {"symbol": str(run_dir / SYMBOL_FILE)}
    from deepvision.runs.imported import check_finite_prediction

    check_finite_prediction(graph, pre, str(params_path))
    cfg = _config(name, model_args, graph.num_classes, channels, pre, run_dir, epoch, Path(prefix).name)
    source = {"prefix": str(Path(prefix).resolve()), "epoch": epoch, "symbol": str(symbol_path.resolve()),
              "params": str(params_path.resolve()), "mxnet_version": symbol.version}
    report = {"source": source, "model": name, "model_args": model_args, "num_classes": graph.num_classes,
              "input_size": list(input_size), "tensors": len(args) + len(aux), "unused": unused,
              "check_max_abs_diff": diff}
    _write_run(run_dir, cfg, pre, classes, state, symbol_path, epoch, report)
    if unused:
        say(f"[WARN] {len(unused)} arrays in {params_path.name} are not used by the graph (e.g. {unused[0]})")
    say(f"imported {params_path.name} into {run_dir} (model {name})")
    return ImportResult(run_dir, name, graph.num_classes, tuple(input_size), len(args) + len(aux), diff, unused)


def _target(out: str | Path | None, default_name: str) -> Path:
    from deepvision.runs.imported import check_run_folder_name

    if out is not None:
        path = check_run_folder_name(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"{path} already exists; choose another --out")
        return path
    base = Path("runs").resolve() / default_name
    path, k = base, 2
    while path.exists():
        path, k = base.with_name(f"{base.name}-{k}"), k + 1
    return check_run_folder_name(path, "the run folder's name (made from the prefix; give --out)")


def _config(name: str, model_args: dict[str, Any], num_classes: int, channels: int, pre, run_dir: Path, epoch: int,
            prefix: str):
    from deepvision.config.io import build_config

    data = {"source": "folder", "root": None, "channels": channels,
            "image_size": pre.size[0] if pre.size[0] == pre.size[1] else None, "resize": pre.resize,
            "scale": pre.scale, "mean": pre.mean or None, "std": pre.std or None}
    if data["image_size"] is None:
        raise UserError(f"input {pre.size[0]}x{pre.size[1]} is not square; deepvision runs take square inputs")
    return build_config({
        "description": f"imported from MXNet {prefix} epoch {epoch}",
        "model": {"name": name, "num_classes": num_classes, "in_channels": channels, "args": model_args,
                  "pretrained": str(run_dir / "checkpoints" / "best.pt")},
        "data": data,
        "checkpoint": {"prefix": prefix.replace(":", "_")},
    })


def _write_run(run_dir: Path, cfg, pre, classes: list[str], state: dict[str, torch.Tensor], symbol_path: Path,
               epoch: int, report: dict[str, Any]) -> None:
    """The run (atomically, see `runs.imported`), with the symbol the graph model is rebuilt from and
    the import report."""
    from deepvision.runs.imported import write_imported_run

    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "import.json"
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        write_imported_run(run_dir, cfg, pre, classes, state, epoch=epoch, source=report["source"],
                           files={SYMBOL_FILE: symbol_path, "import.json": report_path})
