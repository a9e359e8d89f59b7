"""LeNet on the shared MNIST test set: deepvision engine vs a bare PyTorch loop (vs MXNet 1.9.1).

Setting (issue 2): 8,000 train / 2,000 val (stratified, seed 42) from the 10,000 real MNIST test
digits, batch 100, SGD lr 0.05 momentum 0.9, 5 epochs, CPU. Goals: engine >= 0.95x the bare loop's
training samples/s, validation accuracy >= 98%, and >= 1.5x MXNet when MXNET_PYTHON is set.

    python benchmarks/lenet_mnist.py [--mnist DIR] [--trials 3] [--no-append]
    MXNET_PYTHON=/path/to/mxnet-venv/bin/python python benchmarks/lenet_mnist.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepvision.api import train
from deepvision.config.io import build_config
from deepvision.data.sources import load_data
from deepvision.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from machine import append_section, describe

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parent.parent / "shared" / "datasets" / "mnist"
EPOCHS, BATCH, LR, MOMENTUM = 5, 100, 0.05, 0.9
MEAN, STD = 0.1307, 0.3081  # standard MNIST normalisation, applied by every variant


def config(root: Path) -> dict:
    return {
        "name": "bench-lenet",
        "model": {"name": "lenet"},
        "data": {"source": "mnist", "root": str(root), "train": "test", "test": None, "val_fraction": 0.2,
                 "batch_size": BATCH, "mean": [MEAN], "std": [STD]},
        "optim": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
        "train": {"epochs": EPOCHS, "seed": 0, "device": "cpu", "log_every": 100, "tensorboard": False,
                  "progress": "lines"},
    }


def run_engine(root: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    result = train(config(root), out=out)
    wall = time.perf_counter() - t0
    speeds = [row["samples_per_s"] for row in result.history]
    return {"speeds": speeds, "val_acc": result.history[-1]["val_acc"], "wall": wall}


def run_bare(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor) -> dict:
    """The loop a PyTorch user writes by hand: same model, data in memory, no metrics or logging."""
    torch.manual_seed(0)
    model = create_model("lenet")
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    n = len(train_y)
    speeds = []
    t_start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            x = train_x[idx].float().div_(255).sub_(MEAN).div_(STD)
            loss = F.cross_entropy(model(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        speeds.append(n / (time.perf_counter() - t0))
        model.eval()
        with torch.inference_mode():
            correct = sum((model(val_x[i : i + BATCH].float().div_(255).sub_(MEAN).div_(STD)).argmax(1)
                           == val_y[i : i + BATCH]).sum().item() for i in range(0, len(val_y), BATCH))
    return {"speeds": speeds, "val_acc": correct / len(val_y), "wall": time.perf_counter() - t_start}


def run_mxnet(python: str, npz: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()),
           "MXNET_CPU_WORKER_NTHREADS": str(torch.get_num_threads())}
    t0 = time.perf_counter()
    out = subprocess.run([python, str(HERE / "mxnet_lenet.py"), str(npz), "--epochs", str(EPOCHS), "--batch",
                          str(BATCH), "--lr", str(LR), "--momentum", str(MOMENTUM)],
                         capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"speeds": result["samples_per_s"], "val_acc": result["val_acc"][-1], "wall": time.perf_counter() - t0,
            "version": result["mxnet"]}


def steady(speeds: list[float]) -> float:
    """Mean samples/s over epochs 2..N (epoch 1 includes warm-up)."""
    return statistics.fmean(speeds[1:] if len(speeds) > 1 else speeds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", type=Path, default=Path(os.environ.get("DEEPVISION_MNIST", DEFAULT_MNIST)))
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    a = p.parse_args()
    bundle = load_data(build_config(config(a.mnist)).data)
    tx, ty = bundle.train.images, bundle.train.labels
    vx, vy = bundle.val.images, bundle.val.labels
    mx_python = os.environ.get("MXNET_PYTHON")
    results: dict[str, list[dict]] = {"engine": [], "bare": [], "mxnet": []}
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "split.npz"
        np.savez(npz, x_train=tx.numpy()[:, 0], y_train=ty.numpy(), x_val=vx.numpy()[:, 0], y_val=vy.numpy(),
                 mean=MEAN, std=STD)
        for trial in range(a.trials):  # interleave, so drift in machine load hits all variants alike
            results["bare"].append(run_bare(tx, ty, vx, vy))
            results["engine"].append(run_engine(a.mnist, Path(tmp) / f"runs{trial}"))
            if mx_python:
                results["mxnet"].append(run_mxnet(mx_python, npz))
    summary = {k: {"samples_per_s": statistics.median(steady(r["speeds"]) for r in v),
                   "val_acc": statistics.median(r["val_acc"] for r in v),
                   "wall_s": statistics.median(r["wall"] for r in v)} for k, v in results.items() if v}
    engine, bare = summary["engine"], summary["bare"]
    lines = [
        f"Machine: {describe()}",
        f"Setting: LeNet, MNIST test set split 8,000/2,000 (seed 42), batch {BATCH}, SGD lr {LR} momentum "
        f"{MOMENTUM}, {EPOCHS} epochs, CPU; median of {a.trials} interleaved trials; samples/s = training "
        f"phase, mean of epochs 2-{EPOCHS}; wall = whole run incl. data loading, validation, checkpoints.",
        "",
        "| variant | train samples/s | final val acc | wall s | vs bare loop |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("engine", "deepvision engine"), ("bare", "bare PyTorch loop"),
                        ("mxnet", f"MXNet {results['mxnet'][0]['version']} Module" if results["mxnet"] else "")):
        if name in summary:
            s = summary[name]
            lines.append(f"| {label} | {s['samples_per_s']:,.0f} | {s['val_acc'] * 100:.2f}% | {s['wall_s']:.1f} | "
                         f"{s['samples_per_s'] / bare['samples_per_s']:.2f}x |")
    lines.append("")
    ratio = engine["samples_per_s"] / bare["samples_per_s"]
    lines.append(f"- engine / bare loop: **{ratio:.2f}x** (goal >= 0.95x): {'met' if ratio >= 0.95 else 'NOT met'}")
    lines.append(f"- engine val accuracy: **{engine['val_acc'] * 100:.2f}%** (goal >= 98%): "
                 f"{'met' if engine['val_acc'] >= 0.98 else 'NOT met'}")
    if "mxnet" in summary:
        mr = engine["samples_per_s"] / summary["mxnet"]["samples_per_s"]
        lines.append(f"- engine / MXNet: **{mr:.2f}x** (goal >= 1.5x): {'met' if mr >= 1.5 else 'NOT met'}")
    else:
        lines.append("- MXNet: not measured (set MXNET_PYTHON to an MXNet 1.9.1 interpreter)")
    text = "\n".join(lines)
    print(text)
    if not a.no_append:
        print(f"appended to {append_section('LeNet on MNIST (issue 2): engine vs bare loop vs MXNet', text)}")


if __name__ == "__main__":
    main()
