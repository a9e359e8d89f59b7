"""Training speed on the reference's own networks: deepvision's engine against Keras 3 / TensorFlow-CPU.

    KERAS_PYTHON=/path/to/keras-venv/bin/python python benchmarks/reference_nets.py [--rounds 3] [--no-append]
    python benchmarks/reference_nets.py --nets lenet --rounds 1 --epochs 2 --no-append     # deepvision only
    python benchmarks/reference_nets.py --amp off ...     # the engine in float32 (default: train.amp auto)

For LeNet (28x28x1, batch 100, SGD momentum), MiniVGGNet (32x32x3, batch 64, SGD Nesterov) and
EmotionVGGNet (48x48x1, batch 128, Adam, ELU + BN, the emotion case study's E4 network), each side
trains on random images of that shape with random labels, no augmentation, in a fresh process:
deepvision through its trainer (`Trainer.train_epoch`, the loop `deepvision train` runs: loader,
device-side normalisation, channels_last, metrics) and Keras through one `model.fit` for all epochs
(`keras_peer.py`, the way Keras users train). The first epoch of each is the warm-up; the figure is
the median samples/s of the others. Sides alternate order round by round; the table gives the median
over rounds and the range. deepvision trains with its default `train.amp: auto` (bf16 autocast on CPUs
with AMX-BF16, float32 elsewhere; docs/performance.md) unless `--amp` says otherwise; Keras in float32.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

HERE = Path(__file__).resolve().parent
# net -> (deepvision model options, channels, side, classes, batch, optimizer, samples per epoch)
NETS = {
    "lenet": ({"name": "lenet"}, 1, 28, 10, 100, {"name": "sgd", "lr": 0.05, "momentum": 0.9}, 12000),
    "minivgg": ({"name": "minivgg"}, 3, 32, 10, 64, {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True},
                4096),
    "emotion_vgg": ({"name": "emotion_vgg", "num_classes": 6, "args": {"activation": "elu", "init": "he_normal"}},
                    1, 48, 6, 128, {"name": "adam", "lr": 1e-3, "eps": 1e-7}, 2560),
}


def engine_config(net: str, epochs: int, amp: str = "auto") -> dict:
    model, channels, side, classes, batch, optim, samples = NETS[net]
    return {"name": f"bench-{net}", "profile": "reference", "model": dict(model),
            "data": {"source": "synthetic", "train": "train", "val": None, "test": None, "val_fraction": 0.0,
                     "batch_size": batch, "channels": channels, "image_size": side, "scale": 1 / 255,
                     "options": {"samples": samples, "classes": classes, "size": side, "channels": channels}},
            "optim": dict(optim), "train": {"epochs": epochs, "seed": 0, "device": "cpu", "log_every": 10_000,
                                            "tensorboard": False, "progress": "lines", "test": "off", "amp": amp}}


def run_engine(net: str, epochs: int, amp: str = "auto") -> tuple[list[float], str, int]:
    """samples/s of every epoch of deepvision's trainer (this process), its training dtype and torch threads."""
    import torch

    from deepvision.config import build_config
    from deepvision.engine.distributed import DistInfo
    from deepvision.engine.resolve import resolve_run
    from deepvision.engine.trainer import Trainer
    from deepvision.runs.rundir import RunDir

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(resolve_run(build_config(engine_config(net, epochs, amp))), RunDir.create(tmp, "bench"),
                          dist=DistInfo(), device=torch.device("cpu"))
        try:
            speeds = [trainer.train_epoch(e)["samples_per_s"] for e in range(epochs)]
            return speeds, str(trainer.amp or torch.float32).removeprefix("torch."), torch.get_num_threads()
        finally:
            trainer.close()


def measure(side: str, net: str, epochs: int, threads: int, amp: str) -> dict:
    """{"samples_per_s": per epoch, "dtype": the engine's training dtype, "threads" (deepvision only)}

    Both sides get `threads` threads: TensorFlow's intra/inter-op pools, the engine's torch threads
    (DEEPVISION_CPU_THREADS, so that its busy-core probe cannot pick fewer when a neighbour is running)."""
    env = dict(os.environ)
    if side == "deepvision":
        env["DEEPVISION_CPU_THREADS"] = str(threads)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--engine-child", net, "--epochs", str(epochs),
               "--amp", amp]
    else:
        cmd = [os.environ["KERAS_PYTHON"], str(HERE / "keras_peer.py"), net, "--samples", str(NETS[net][6]),
               "--epochs", str(epochs), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4, help="epochs per process, the first is the warm-up")
    p.add_argument("--threads", type=int, default=2, help="threads of each side: TensorFlow's intra/inter-op pools, "
                   "deepvision's torch threads (the cores)")
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16"), help="deepvision's train.amp")
    p.add_argument("--no-append", action="store_true")
    p.add_argument("--engine-child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.engine_child:
        speeds, dtype, threads = run_engine(a.engine_child, a.epochs, a.amp)
        print(json.dumps({"samples_per_s": speeds, "dtype": dtype, "threads": threads}))
        return
    sides = ["deepvision"] + (["keras"] if os.environ.get("KERAS_PYTHON") else [])
    rows, dtypes, threads = [], set(), set()
    for net in a.nets.split(","):
        speeds: dict[str, list[float]] = {s: [] for s in sides}
        for r in range(a.rounds):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                result = measure(side, net, a.epochs, a.threads, a.amp)
                per_epoch = result["samples_per_s"]
                if side == "deepvision":
                    dtypes.add(result["dtype"])
                    threads.add(result["threads"])
                speeds[side].append(statistics.median(per_epoch[1:] or per_epoch))
                print(f"{net} round {r + 1} {side}: {speeds[side][-1]:,.0f} samples/s", flush=True)
        med = {s: statistics.median(v) for s, v in speeds.items()}
        cells = [f"{med[s]:,.0f} ({min(speeds[s]):,.0f}-{max(speeds[s]):,.0f})" for s in sides]
        ratio = f"{med['deepvision'] / med['keras']:.2f}x" if "keras" in med else "-"
        rows.append(f"| {net} | {NETS[net][4]} | " + " | ".join(cells) + f" | {ratio} |")
    header = "| network | batch | deepvision samples/s (range) |" + (" Keras samples/s (range) |" if "keras" in sides
                                                                        else "") + " ratio |"
    table = header + "\n|" + "---|" * (header.count("|") - 1) + "\n" + "\n".join(rows)
    body = (f"Machine: {describe()}. Random data, no augmentation; median over rounds of each process's median "
            f"steady-state epoch (first epoch = warm-up); sides alternate; deepvision trains in "
            f"{'/'.join(sorted(dtypes))} (train.amp {a.amp}) on {'/'.join(map(str, sorted(threads)))} torch "
            f"thread(s), Keras in float32 on {a.threads} TensorFlow intra/inter-op thread(s).\n\n{table}\n")
    print(body)
    if not a.no_append:
        write_section("The reference's networks: deepvision vs Keras", body)


if __name__ == "__main__":
    main()
