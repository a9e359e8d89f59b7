"""Parity of `deepvision import keras` with Keras: the rebuilt network vs Keras' own outputs.

For each Keras file, Keras' output on a fixed input (stored when the file was written) is compared
with the graph import's (`keras:graph`): max abs difference of the probabilities, of the logits
(Keras' log-probabilities and deepvision's logits, each centred per sample: softmax is shift-free)
and top-1 agreement. Without Keras it uses the committed fixtures (tests/fixtures/keras/graph,
Keras 3.15 and tf-keras 2.21, narrow widths). With `--live` (needs KERAS_PYTHON, an interpreter with
Keras) Keras first writes keras.applications networks with random weights, networks the tests never
see, and every layer's output is compared too (max abs difference relative to the layer's largest
value).

    python benchmarks/keras_parity.py                                          # committed, seconds
    KERAS_PYTHON=/path/to/keras-venv/bin/python python benchmarks/keras_parity.py --live  # minutes

The table replaces the mode's section of BENCHMARKS.md (`--no-append` only prints it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from deepvision.interop.keras_files import load_graph_weights, open_keras
from deepvision.models.keras_graph import KerasGraph
from deepvision.models.keras_layers import to_keras

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "keras"


def rebuild(path: Path) -> KerasGraph:
    with open_keras(path) as src:
        graph = KerasGraph(src.config, keras_version=src.keras_version)
        load_graph_weights(src, graph)
    return graph.eval()


def to_torch(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.movedim(-1, 1) if t.dim() >= 3 else t


def compare(graph: KerasGraph, ref: dict) -> dict:
    with torch.no_grad():
        out = graph(to_torch(ref["x"])).numpy().astype(np.float64)
    keras_out = ref["out"].astype(np.float64)
    if not graph.softmax_dropped:
        diff = float(np.abs(out - keras_out).max())
        return {"probs": None, "logits": diff, "largest": float(np.abs(keras_out).max()),
                "top1": float((out.argmax(1) == keras_out.argmax(1)).mean())}
    probs = np.exp(out - out.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    logits = out - out.mean(1, keepdims=True)
    keras_logits = np.log(np.clip(keras_out, 1e-30, None))
    keras_logits -= keras_logits.mean(1, keepdims=True)
    return {"probs": float(np.abs(probs - keras_out).max()), "logits": float(np.abs(logits - keras_logits).max()),
            "largest": float(np.abs(logits).max()), "top1": float((out.argmax(1) == keras_out.argmax(1)).mean())}


def layer_worst(graph: KerasGraph, x: np.ndarray, layers: dict) -> tuple[float, str, int]:
    """The largest relative difference over every layer output Keras stored, and how many there were."""
    values = {graph.input_ref: to_torch(x)}
    for name, entry in graph.entries.items():
        if entry.get("class_name") == "InputLayer":
            values[(name, 0, 0)] = values[graph.input_ref]
    worst, where, count = 0.0, "", 0
    with torch.no_grad():
        for name, call, kind, key, refs in graph.steps:
            cfg = graph.entries[name].get("config", {})
            y = graph._step(kind, key, [values[r] for r in refs], cfg, graph.op_args.get((name, call)))
            values[(name, call, 0)] = y
            if name in layers and name != graph.output_ref[0]:
                ref = layers[name]
                rel = float(np.abs(to_keras(y).numpy() - ref).max() / (np.abs(ref).max() + 1e-6))
                count += 1
                if rel > worst:
                    worst, where = rel, name
    return worst, where, count


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1e}"


TITLES = {False: "Keras import parity: committed fixtures (tests/fixtures/keras/graph)",
          True: "Keras import parity: keras.applications networks, unseen by the tests"}
INTRO = """`deepvision import keras` without `--model` (`keras:graph`, the network rebuilt from the file's config)
compared with Keras' own outputs on the same input. The files have random weights and random BatchNorm
statistics; the last Dense is redrawn so the probabilities vary between inputs. Logits: Keras'
log-probabilities and deepvision's logits, each centred per sample. Tolerance in the tests: 1e-5 on the
probabilities."""
COMMITTED = """Written by `tests/fixtures/keras/make_keras_graph_fixtures.py` (ShallowNet, LeNet, MiniVGGNet, the Keras
MNIST CNN, a small ResNet and Inception, every listed layer in zoo_a/zoo_b, nested and shared models,
Conv1D, Keras 3 operations, the three networks a mapping would get wrong). A .h5 is listed where one is
committed."""
LIVE = """Keras writes the networks with random weights, and every layer's output is compared (relative to the
layer's largest value) as well as the final probabilities."""


def section(rows: list[dict], live: bool, machine: str) -> str:
    """The BENCHMARKS.md section: one row per file (committed) or keras.applications network (live)."""
    lines = [INTRO, "", f"Machine: {machine}.", "", LIVE if live else COMMITTED, ""]
    if live:
        lines += ["| network | input | layers compared | worst layer, relative | max abs diff, probabilities "
                  "| max abs diff, logits | largest logit | top-1 agreement |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['input']} | {r['layers']} | {r['worst']:.1e} ({r['where']}) | "
                  f"{fmt(r['probs'])} | {fmt(r['logits'])} | {r['largest']:.3g} | {r['top1']:.0%} |" for r in rows]
    else:
        lines += ["| file | Keras | max abs diff, probabilities | max abs diff, logits | largest logit "
                  "| top-1 agreement |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['keras']} | {fmt(r['probs'])} | {fmt(r['logits'])} | {r['largest']:.3g} | "
                  f"{r['top1']:.0%} |" for r in rows]
    return "\n".join(lines) + "\n"


def live_rows(python: str) -> list[dict]:
    """Keras (`python`) writes keras.applications networks now; each one's comparison, layer by layer."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([python, str(FIX / "make_keras_graph_fixtures.py"), tmp, "--applications"], check=True,
                       capture_output=True)
        for ref_path in sorted(folder.glob("*.npz")):
            if ref_path.stem.endswith("_layers"):
                continue
            ref = np.load(ref_path)
            graph = rebuild(folder / f"{ref_path.stem}.keras")
            worst, where, count = layer_worst(graph, ref["x"], np.load(folder / f"{ref_path.stem}_layers.npz"))
            rows.append({"name": ref_path.stem, "input": "x".join(str(v) for v in graph.input_shape),
                         "layers": count, "worst": worst, "where": where, **compare(graph, ref)})
            print(f"  {ref_path.stem}: worst layer {worst:.1e}", flush=True)
    return rows


def committed_rows() -> list[dict]:
    """The committed fixtures' comparisons, .h5 and .keras of each."""
    rows = []
    for ref_path in sorted((FIX / "graph").glob("*.npz")):
        ref = np.load(ref_path)
        for ext in (".h5", ".keras"):
            path = ref_path.with_suffix(ext)
            if path.is_file():
                keras = "tf-keras 2.21" if path.name.startswith("k2_") else "Keras 3.15"
                rows.append({"name": path.name, "keras": keras, **compare(rebuild(path), ref)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--live", action="store_true", help="keras.applications networks written now (KERAS_PYTHON)")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    python = os.environ.get("KERAS_PYTHON")
    if args.live and not python:
        sys.exit("--live needs KERAS_PYTHON=/path/to/python-with-keras")
    rows = live_rows(python) if args.live else committed_rows()
    machine = describe()
    if args.live:
        code = "import keras, tensorflow as tf; print(keras.__version__, tf.__version__)"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        version = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True,
                                 env=env).stdout.strip().splitlines()[-1].split()
        machine += f"; Keras {version[0]} on TensorFlow {version[1]}"
    text = section(rows, args.live, machine)
    print(text)
    if not args.no_append:
        print(f"written to {write_section(TITLES[args.live], text)}")


if __name__ == "__main__":
    main()
