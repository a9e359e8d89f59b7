"""Parity of `deepvision import mxnet` with MXNet 1.9.1: imported model vs MXNet's own outputs.

For each network, MXNet's softmax output on a fixed input (written by MXNet when the checkpoint was
made) is compared with the imported run's: max abs difference of the probabilities and of the logits,
and top-1 agreement, for the graph import (`mxnet:graph`) and, where one exists, the mapping onto the
zoo architecture. Without MXNet it uses the committed reduced-width fixtures (tests/fixtures/mxnet);
with `--live` (needs MXNET_PYTHON) MXNet first writes reference-size checkpoints.

    python benchmarks/mxnet_parity.py                                   # committed fixtures, seconds
    MXNET_PYTHON=/path/to/mxnet-venv/bin/python python benchmarks/mxnet_parity.py --live   # a few minutes

The table replaces the mode's section of BENCHMARKS.md (`--no-append` only prints it). Exits 1 when a
difference of the probabilities exceeds 1e-4 or a top-1 class differs.
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

from deepvision.interop.mxnet_import import import_mxnet
from deepvision.runs.loading import load_run

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "mxnet"
SMALL_RESNET = {"stages": [1, 1, 1], "filters": [8, 16, 32, 64]}
FIXTURES = {  # committed checkpoint -> (zoo model, options)
    "lenet": ("lenet", {}), "mlp": ("mlp", {}), "resnet_small": ("resnet_ref", SMALL_RESNET),
    "vgg_small": ("vgg16_ref", {"filters": [4, 8, 8, 16, 16], "units": [1, 1, 2, 1, 1], "fc_units": 16}),
    "inception_bn_block": (None, {}), "operators": (None, {}), "gluon_resnet_v1": (None, {}),
    "gluon_resnet_v2": ("resnet_ref", SMALL_RESNET),
}
LIVE = {  # generator name -> (zoo model, options), reference sizes
    "lenet": ("lenet", {}), "mlp": ("mlp", {}), "resnet_small": ("resnet50_ref", {}),
    "alexnet_fc64": ("alexnet_ref", {"fc_units": 64}), "googlenet": ("googlenet_ref", {}),
    "squeezenet": ("squeezenet_ref", {}), "age_gender": ("age_gender_net", {}), "inception_bn_block": (None, {}),
    "operators": (None, {}), "gluon:resnet18_v1": ("tv:resnet18", {}), "gluon:resnet50_v2": ("resnet_ref", {}),
}
LABELS = {"resnet_small": "resnet (MXNet symbol API)", "gluon:resnet18_v1": "Gluon resnet18_v1",
          "gluon:resnet50_v2": "Gluon resnet50_v2", "alexnet_fc64": "alexnet (fc 64)"}


def measure(folder: Path, stem: str, model: str | None, options: dict, tmp: Path) -> dict:
    io = np.load(folder / f"{stem}-io.npz", allow_pickle=False)
    result = import_mxnet(folder / stem, 7, model=model, options=options, input_size=io["input"].shape[1:],
                          out=tmp / f"{stem}-{(model or 'graph').replace(':', '_')}", quiet=True)
    with torch.inference_mode():
        logits = load_run(result.run_dir).model(torch.from_numpy(io["input"])).numpy()
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    return {"input": "x".join(map(str, io["input"].shape[1:])), "target": model or "mxnet:graph",
            "probs": float(np.abs(probs - io["probs"]).max()), "logits": float(np.abs(logits - io["logits"]).max()),
            "scale": float(np.abs(io["logits"]).max()),
            "top1": float((probs.argmax(1) == io["probs"].argmax(1)).mean())}


TITLES = {True: "MXNet import parity: reference sizes, written by MXNet 1.9.1 now",
          False: "MXNet import parity: committed reduced-width fixtures"}
INTRO = """`deepvision import mxnet` compared with MXNet's own outputs on the same input (graph import
`mxnet:graph`, and the mapping onto the zoo architecture where there is one). The checkpoints have
random weights with randomised BatchNorm statistics, gamma and PReLU slopes (a classifier whose logits
exceed 30 is scaled to 10 so the softmax is not one-hot); the largest logit is listed so that the
differences can be read relative to it. Tolerance in the tests: max abs difference <= 1e-4 and the
same top-1 class."""


def section(rows: list[dict], machine: str) -> str:
    """The BENCHMARKS.md section: one row per network and import target."""
    lines = [INTRO, "", f"Machine: {machine}.", "",
             "| network | input | imported as | max abs diff, probabilities | max abs diff, logits | largest logit "
             "| top-1 agreement |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['input']} | {r['target']} | {r['probs']:.1e} | {r['logits']:.1e} | "
                     f"{r['scale']:.3g} | {r['top1'] * 100:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--live", action="store_true", help="reference sizes written by MXNet now (MXNET_PYTHON)")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.live:
            python = os.environ.get("MXNET_PYTHON")
            if not python:
                raise SystemExit("--live needs MXNET_PYTHON: an interpreter with MXNet 1.9.1")
            folder = tmp_path / "mx"
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            subprocess.run([python, str(FIX / "generate.py"), "--out", str(folder), "--full", "--only", *LIVE],
                           env=env, check=True, capture_output=True)
            nets = LIVE
        else:
            folder, nets = FIX, FIXTURES
        for name, (model, options) in nets.items():
            stem = name.split(":")[-1]
            for target in (None, model) if model else (None,):
                row = measure(folder, stem, target, options, tmp_path)
                rows.append({"net": LABELS.get(name, name), **row})
                print(f"  {name} -> {row['target']}: probs {row['probs']:.1e}, logits {row['logits']:.1e}", flush=True)
    text = section(rows, describe())
    print(text)
    if not args.no_append:
        print(f"written to {write_section(TITLES[args.live], text)}")
    if any(r["probs"] > 1e-4 or r["top1"] < 1 for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
