"""CPU inference speed: onnxruntime vs PyTorch eager on the same exported networks.

Each model is wrapped the way `deepvision export` wraps a run (normalisation inside), exported to ONNX
with a dynamic batch, and timed on the CPU at batch 1 and 32: PyTorch eager under
`torch.inference_mode()` (torch's default thread count) and onnxruntime's CPU provider (its default
thread count, idle threads not spinning), alternating round by round; images/s is the median over
rounds. Speed does not depend on the weights: tv:mobilenet_v2 uses torchvision's published
IMAGENET1K_V1 weights when they are in torch's hub cache (`$TORCH_HOME/hub/checkpoints`; nothing is
downloaded), the others (which have no published weights) random ones, as the weights column says.
As a check, the two outputs on the same input are compared relative to the logits' own size:
max |onnxruntime - PyTorch| / max |PyTorch| (a random initialisation can give logits of 1e-9, where an
absolute difference says nothing), with the largest logit beside it.

    python benchmarks/onnx_vs_torch.py                      # lenet, resnet50_ref, tv:mobilenet_v2 (a few minutes)
    python benchmarks/onnx_vs_torch.py --tiny               # smoke run: small inputs, batch 1 and 2, seconds

The table replaces this script's section of BENCHMARKS.md (`--no-append`, and `--tiny`, only print it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepvision.export.export import Deployable
from deepvision.export.onnx_export import to_onnx
from deepvision.models import create_model, get_model_spec
from deepvision.onnxrt import ort_session

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

MODELS = ("lenet", "resnet50_ref", "tv:mobilenet_v2")
TITLE = "ONNX Runtime vs PyTorch eager, CPU inference"
PUBLISHED = {"tv:mobilenet_v2": "IMAGENET1K_V1"}  # weights used when torch's hub cache holds them


def published_weights(name: str) -> str | None:
    """The tag of `name`'s published weights when their file is in torch's hub cache, else None."""
    tag = PUBLISHED.get(name)
    if tag is None:
        return None
    from deepvision.models.torchvision_models import resolve_weights, weights_path

    path = weights_path(resolve_weights(name.removeprefix("tv:"), tag))
    if path.is_file():
        return tag
    print(f"  {name}: {path} is not there; random weights", flush=True)
    return None


def build(name: str, side: int | None, weights: str | None) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    spec = get_model_spec(name)
    c, h, w = spec.input_size
    if side:
        h = w = side
    options = {"input_size": h} if "input_size" in spec.options else {}
    if weights:
        options["weights"] = weights
    torch.manual_seed(0)
    model = create_model(name, **options).eval()
    if weights:  # torchvision's weights take ImageNet-normalised input: (pixels / 255 - mean) / std inside
        mean = torch.tensor([0.485, 0.456, 0.406]).view(c, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(c, 1, 1)
        return Deployable(model, 1 / (255 * std), -mean / std).eval(), (c, h, w)
    return Deployable(model, torch.full((c, 1, 1), 1 / 255), torch.zeros(c, 1, 1)).eval(), (c, h, w)


def rate(fn, batch: int, seconds: float) -> float:
    """Images/s of `fn` run repeatedly for about `seconds` (after warm-up calls: first-call allocations)."""
    t0 = time.perf_counter()
    for _ in range(3):
        fn()
    while time.perf_counter() - t0 < seconds / 4:
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= 3:
            return n * batch / elapsed


def bench(name: str, batches: list[int], side: int | None, seconds: float, rounds: int, tmp: Path,
          threads: int | None = None) -> list[dict]:
    weights = published_weights(name)
    wrapper, shape = build(name, side, weights)
    path = tmp / f"{name.replace(':', '_')}.onnx"
    meta = {"classes": [], "preprocess": {}}
    to_onnx(wrapper, torch.zeros(2, *shape), path, path.name, meta, dynamic_batch=True, opset=None)
    session = ort_session(path, spin=False, threads=threads)  # idle ORT threads must not busy-wait while PyTorch runs
    rows = []
    for batch in batches:
        x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(1)) * 255
        xn = x.numpy()
        with torch.inference_mode():
            expected = wrapper(x).numpy()
        scale = float(np.abs(expected).max())
        diff = float(np.abs(session.run(["logits"], {"pixels": xn})[0] - expected).max()) / max(scale, 1e-30)
        torch_rates, ort_rates = [], []
        def eager(x=x):
            with torch.inference_mode():
                wrapper(x)

        def ort(xn=xn):
            session.run(["logits"], {"pixels": xn})

        for r in range(rounds):
            pair = [("torch", eager), ("ort", ort)]
            for label, fn in pair if r % 2 == 0 else pair[::-1]:
                (torch_rates if label == "torch" else ort_rates).append(rate(fn, batch, seconds))
        t, o = statistics.median(torch_rates), statistics.median(ort_rates)
        rows.append({"model": name, "weights": weights or "random", "input": "x".join(map(str, shape)),
                     "batch": batch, "torch": t, "ort": o, "diff": diff, "scale": scale})
        print(f"  {name} batch {batch}: PyTorch {t:,.1f} img/s, onnxruntime {o:,.1f} img/s", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | weights | input | batch | PyTorch eager (img/s) | onnxruntime (img/s) | speed-up "
             "| largest logit | max diff / largest logit |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['weights']} | {r['input']} | {r['batch']} | {r['torch']:,.1f} | "
                     f"{r['ort']:,.1f} | "
                     f"{r['ort'] / r['torch']:.2f}x | {r['scale']:.2g} | {r['diff']:.1e} |")
    return "\n".join(lines) + "\n"


def section(rows: list[dict], machine: str, ort_version: str, threads: int | None) -> str:
    """This script's BENCHMARKS.md section: the machine, what the columns compare, the table."""
    return (f"Machine: {machine}; onnxruntime {ort_version}, {threads or 'default'} threads. Weights: "
            "torchvision's published ones where the weights column names them, else random (speed does not "
            "depend on them). Parity: both outputs for the same input (uniform 0-255 pixels), max "
            "|onnxruntime - PyTorch| relative to the largest PyTorch logit, which a random initialisation "
            f"can make tiny.\n\n{table(rows)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    p.add_argument("--threads", type=int, help="threads for both (default: each library's own; on a busy machine "
                                                "use 1: spinning thread pools collapse when cores are shared)")
    p.add_argument("--tiny", action="store_true", help="smoke run: 64-pixel inputs, batch 1 and 2, 0.2 s (print only)")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    side = None
    if args.tiny:
        side, args.batches, args.seconds, args.rounds = 64, [1, 2], 0.2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows += bench(name, args.batches, None if name == "lenet" else side, args.seconds, args.rounds, Path(tmp),
                          args.threads)
    import onnxruntime

    text = section(rows, describe(), onnxruntime.__version__, args.threads)
    print(text)
    if not (args.no_append or args.tiny):
        print(f"written to {write_section(TITLE, text)}")


if __name__ == "__main__":
    main()
