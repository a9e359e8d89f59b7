"""The engine's CPU training step in float32 against bf16 autocast (and, with --compile, torch.compile).

For the reference's networks (LeNet, MiniVGGNet, EmotionVGGNet at their batch and optimizer, as in
`reference_nets.py`), one process builds one trainer per variant on the same random data and runs
their epochs interleaved, round by round, after a warm-up epoch each; so load from other processes
falls on every variant alike. Reported per variant: the median samples/s (wall clock) and the median
samples per CPU-second of this process and its children (with one thread, the figure that survives a
shared machine), with the spread; for compiled variants also the first epoch's extra CPU-seconds (the
compile, from an empty inductor cache: what a run pays on a new machine or after an upgrade) and the
epochs it takes to earn them back.

    python benchmarks/cpu_precision.py [--rounds 3] [--samples 2000] [--nets lenet,minivgg,emotion_vgg]
    DEEPVISION_CPU_THREADS=1 python benchmarks/cpu_precision.py --compile --nets lenet --no-append
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section
from reference_nets import NETS, engine_config

# variant -> (train.amp, train.compile)
VARIANTS = {"float32": ("off", False), "bf16": ("bf16", False), "bf16+compile": ("bf16", True)}


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def trainer_for(net: str, samples: int, amp: str, compiled: bool):
    from deepvision.config import build_config
    from deepvision.engine.distributed import DistInfo
    from deepvision.engine.resolve import resolve_run
    from deepvision.engine.trainer import Trainer
    from deepvision.runs.rundir import RunDir

    cfg = engine_config(net, 10_000)
    cfg["data"]["options"]["samples"] = samples
    cfg["train"].update(amp=amp, compile=compiled)
    with contextlib.redirect_stdout(io.StringIO()):
        return Trainer(resolve_run(build_config(cfg)), RunDir.create(tempfile.mkdtemp(), "bench"),
                       dist=DistInfo(), device=torch.device("cpu"))


def measure(net: str, variants: list[str], rounds: int, samples: int) -> list[str]:
    trainers = {v: trainer_for(net, samples, *VARIANTS[v]) for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    first: dict[str, float] = {}
    try:
        for r in range(rounds + 1):  # round 0: the warm-up (and the compile)
            for v in (variants if r % 2 else variants[::-1]):
                c, w = cpu_seconds(), time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    trainers[v].train_epoch(r)
                dc, dw = cpu_seconds() - c, time.perf_counter() - w
                if r == 0:
                    first[v] = dc
                else:
                    wall[v].append(samples / dw)
                    cpu[v].append(samples / dc)
    finally:
        for t in trainers.values():
            t.close()
    base = statistics.median(cpu[variants[0]])
    rows = []
    for v in variants:
        med = statistics.median(cpu[v])
        payback = "-"
        if VARIANTS[v][1]:
            eager = "bf16" if "bf16" in variants else variants[0]
            extra = first[v] - first[eager]
            saved = samples / statistics.median(cpu[eager]) - samples / med  # CPU-s saved per epoch
            payback = f"{extra:.0f} CPU-s, " + (f"{extra / saved:.1f} epochs" if saved > 0 else "never")
        rows.append(f"| {net} | {NETS[net][4]} | {v} | {statistics.median(wall[v]):,.0f} "
                    f"({min(wall[v]):,.0f}-{max(wall[v]):,.0f}) | {med:,.0f} ({min(cpu[v]):,.0f}-{max(cpu[v]):,.0f})"
                    f" | {med / base:.2f}x | {payback} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=2000, help="random training samples per epoch")
    p.add_argument("--compile", action="store_true", help="also time bf16 with train.compile=true")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args()
    variants = ["float32", "bf16"] + (["bf16+compile"] if a.compile else [])
    if a.compile:  # a cold compile: an earlier run's cached kernels would hide its cost
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    rows = []
    for net in a.nets.split(","):
        rows += measure(net, variants, a.rounds, a.samples)
        print(rows[-1], flush=True)
    table = ("| network | batch | variant | samples/s (range) | samples per CPU-s (range) | vs float32 | "
             "compile cost, paid back after |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    body = (f"Machine: {describe()}. "
            f"The engine's training epoch per variant, interleaved in one process after a warm-up epoch; "
            f"random data, no augmentation; median over rounds.\n\n{table}\n")
    print(body)
    if not a.no_append:
        write_section("The engine's CPU training step: float32 vs bf16 autocast", body)


if __name__ == "__main__":
    main()
