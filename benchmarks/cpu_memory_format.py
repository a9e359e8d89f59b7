"""Training-step time on the CPU: NCHW against channels_last (the engine's default), model by model.

Each model takes SGD steps (forward, backward, update) on random data of its reference input size in
three layouts: NCHW; channels_last as the trainer prepares it (`models.memory_format.to_channels_last`,
with the guard that computes strided 1x1 convolutions with few input channels as subsample + stride 1);
and, for models the guard changes, channels_last without the guard at an even batch size, where the
faulty oneDNN kernel does not crash, to price the guard. Layouts are interleaved round by round after
a warm-up; the median step time of each is reported with its spread.

    python benchmarks/cpu_memory_format.py [--rounds 5] [--steps 10] [--models lenet,mini_xception] [--no-append]
    python benchmarks/cpu_memory_format.py --rounds 1 --steps 2 --models lenet --no-append     # smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from deepvision.models import create_model, get_model_spec
from deepvision.models.memory_format import guard_cpu_kernels

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

# model -> (input side, batch): the reference settings where a recipe has them, smaller for ImageNet nets
MODELS = {"lenet": (28, 128), "minivgg": (32, 64), "mini_xception": (48, 64), "emotion_vgg": (48, 128),
          "resnet_ref": (64, 32), "tv:resnet18": (112, 32), "squeezenet_ref": (227, 16), "alexnet_ref": (227, 16)}
LAYOUTS = ("nchw", "channels_last", "channels_last_unguarded")


def build(name: str, side: int, layout: str) -> nn.Module | None:
    torch.manual_seed(0)
    spec = get_model_spec(name)
    sized = {"input_size": side} if "input_size" in spec.options else {}
    model = create_model(name, num_classes=10, in_channels=spec.input_size[0], **sized).train()
    if layout == "nchw":
        return model
    model = model.to(memory_format=torch.channels_last)
    if layout == "channels_last":
        guard_cpu_kernels(model)
        return model
    # unguarded: only for models the guard changes (else it is the channels_last column again)
    return model if guard_cpu_kernels(copy.deepcopy(model)) else None


def step_time(model: nn.Module, name: str, side: int, batch: int, layout: str, steps: int) -> float:
    channels = get_model_spec(name).input_size[0]
    fmt = torch.contiguous_format if layout == "nchw" else torch.channels_last
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=fmt)
    y = torch.arange(batch) % 10
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=True)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="timed steps per model, layout and round")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    a = p.parse_args()
    names = [n for n in a.models.split(",") if n]
    rows = []
    for name in names:
        side, batch = MODELS.get(name, (32, 32))
        models = {layout: build(name, side, layout) for layout in LAYOUTS}
        models = {k: m for k, m in models.items() if m is not None}
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(a.rounds):
            for layout, model in models.items():
                times[layout].append(step_time(model, name, side, batch, layout, a.steps))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        cell = {k: f"{med[k]:.1f} ({min(v) * 1e3:.1f}-{max(v) * 1e3:.1f})" for k, v in times.items()}

        raw = med.get("channels_last_unguarded")
        unguarded = f"{raw:.1f} ({med['channels_last'] / raw:.2f}x)" if raw else "-"
        rows.append(f"| {name} | {side} | {batch} | {cell['nchw']} | {cell['channels_last']} "
                    f"| {med['nchw'] / med['channels_last']:.2f}x | {unguarded} |")
        print(rows[-1], flush=True)
    table = ("| model | input | batch | NCHW ms/step (range) | channels_last ms/step (range) | NCHW / channels_last "
             "| unguarded channels_last ms (guarded / unguarded) |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    body = (f"Machine: {describe()}. Median of {a.rounds} interleaved rounds of {a.steps} SGD steps after a "
            f"warm-up step.\n\n{table}\n")
    print(body)
    if not a.no_append:
        write_section("CPU training step: NCHW vs channels_last", body)


if __name__ == "__main__":
    main()
