"""LeNet on the shared MNIST test set: deepvision engine vs a bare PyTorch loop (vs Keras/TF, MXNet 1.9.1).

Setting: 8,000 train / 2,000 val (stratified, seed 42) from the 10,000 real MNIST test
digits, batch 100, SGD lr 0.05 momentum 0.9, 5 epochs, CPU. Goals: engine >= 0.95x the bare loop's
training samples/s, validation accuracy >= 98%, and >= 1.5x MXNet when MXNET_PYTHON is set.

On a shared machine the speed of a whole run drifts by +-10% from minute to minute and from process
to process, more than the difference being measured. So throughput is measured epoch by epoch,
interleaved: an epoch of the engine (`Trainer.train_epoch`, the loop `deepvision train` runs: loader,
metrics, logging, validation and checkpoints, the last two outside the timed training phase)
alternates with an epoch of the bare loop (same memory format and denormal flushing as the engine's
CPU defaults, so the ratio prices the engine's own work) in one process; this is repeated in several fresh
processes (half build the engine first, half the bare loop: memory placement alone moves a loop's
speed by several per cent), and the ratio is the median over all pairs. Complete 5-epoch runs (`deepvision.train`,
the bare loop, Keras/TF, MXNet; the order rotates from trial to trial) then give the final validation
accuracy, wall time and the Keras and MXNet comparisons (goals: engine >= 1.2x Keras/TF-CPU,
>= 1.5x MXNet, val accuracy >= 98%). Keras runs when KERAS_PYTHON names an interpreter with Keras 3 and
tensorflow-cpu (`benchmarks/keras_lenet.py`, same threads as torch).

`--neighbour` measures the engine (and Keras) with and without a `yes > /dev/null` process busy on one
core, runs alternating; goal: the engine keeps at least half its idle samples/s.

    python benchmarks/lenet_mnist.py [--mnist DIR] [--processes 6] [--rounds 6] [--trials 3] [--no-append]
    KERAS_PYTHON=/work/keras-venv/bin/python MXNET_PYTHON=/path/to/mxnet-venv/bin/python \
        python benchmarks/lenet_mnist.py
    KERAS_PYTHON=/work/keras-venv/bin/python python benchmarks/lenet_mnist.py --neighbour [--trials 3]
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
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepvision.api import train
from deepvision.config.io import build_config
from deepvision.data.sources import load_data
from deepvision.engine.distributed import DistInfo
from deepvision.engine.precision import train_amp_dtype
from deepvision.engine.resolve import resolve_run
from deepvision.engine.trainer import Trainer
from deepvision.models import create_model
from deepvision.models.memory_format import to_channels_last
from deepvision.runs.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

HERE = Path(__file__).resolve().parent
DEFAULT_MNIST = HERE.parent.parent / "shared" / "datasets" / "mnist"
EPOCHS, BATCH, LR, MOMENTUM = 5, 100, 0.05, 0.9
MEAN, STD = 0.1307, 0.3081  # standard MNIST normalisation, applied by every variant


def config(root: Path, epochs: int | None = None) -> dict:
    return {
        "name": "bench-lenet",
        "model": {"name": "lenet"},
        "data": {"source": "mnist", "root": str(root), "train": "test", "test": None, "val_fraction": 0.2,
                 "batch_size": BATCH, "mean": [MEAN], "std": [STD]},
        "optim": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
        "train": {"epochs": epochs or EPOCHS, "seed": 0, "device": "cpu", "log_every": 100, "tensorboard": False,
                  "progress": "lines"},
    }


def engine_amp(root: Path) -> torch.dtype | None:
    """The autocast dtype of the engine's training step for this config on the CPU (`train.amp`; None: float32)."""
    return train_amp_dtype(build_config(config(root)).train.amp, torch.device("cpu"))


def engine_layout(root: Path) -> torch.memory_format:
    """The memory format the engine trains this config in on the CPU (`train.channels_last`, on unless set off)."""
    chosen = build_config(config(root)).train.channels_last
    return torch.contiguous_format if chosen is False else torch.channels_last


class BareLoop:
    """The loop a PyTorch user writes by hand: same model, data in memory, no metrics or logging.

    Like with like: it trains in the engine's memory format and training precision (bf16 autocast where
    `train.amp: auto` picks it) and, as the engine does on the CPU, with denormals flushed to zero, so
    engine / bare measures the engine's own per-batch work, not a layout or a precision.
    """

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 layout: torch.memory_format = torch.channels_last, amp: torch.dtype | None = None):
        torch.manual_seed(0)
        self.layout, self.amp = layout, amp
        self.model = create_model("lenet")
        if layout == torch.channels_last:
            self.model = to_channels_last(self.model, "cpu")
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.data = train_x, train_y, val_x, val_y

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div_(255).sub_(MEAN).div_(STD).contiguous(memory_format=self.layout)

    def epoch(self) -> float:
        """Train one epoch; returns its samples/s."""
        train_x, train_y, _, _ = self.data
        self.model.train()
        n = len(train_y)
        perm = torch.randperm(n)
        flushing = torch.set_flush_denormal(True)
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            with torch.autocast("cpu", dtype=self.amp or torch.bfloat16, enabled=self.amp is not None):
                loss = F.cross_entropy(self.model(self.batch(train_x[idx])), train_y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        seconds = time.perf_counter() - t0
        if flushing:
            torch.set_flush_denormal(False)
        return n / seconds

    def accuracy(self) -> float:
        _, _, val_x, val_y = self.data
        self.model.eval()
        with torch.inference_mode():
            correct = sum((self.model(self.batch(val_x[i : i + BATCH])).argmax(1)
                           == val_y[i : i + BATCH]).sum().item() for i in range(0, len(val_y), BATCH))
        return correct / len(val_y)


def paired_epochs(root: Path, bundle, rounds: int, tmp: Path, bare_first: bool = False) -> dict:
    """Alternate engine and bare epochs in one process; per-round ratios.

    Which of the two is built first alternates between processes: where a model's tensors land in
    memory changes its speed by several per cent (the same loop built twice in one process runs at
    different speeds), and the order of creation would otherwise favour one side every time.
    """
    def make_trainer() -> Trainer:
        return Trainer(resolve_run(build_config(config(root, epochs=rounds))), RunDir.create(tmp, "paired"),
                       dist=DistInfo(), device=torch.device("cpu"))

    def make_bare() -> BareLoop:
        return BareLoop(bundle.train.images, bundle.train.labels, bundle.val.images, bundle.val.labels,
                        engine_layout(root), engine_amp(root))

    if bare_first:
        bare = make_bare()
        trainer = make_trainer()
    else:
        trainer = make_trainer()
        bare = make_bare()
    engine_speeds, bare_speeds = [], []
    with contextlib.redirect_stdout(io.StringIO()):
        for r in range(rounds):
            if r % 2:
                b = bare.epoch()
                e = trainer.train_epoch(r)["samples_per_s"]
            else:
                e = trainer.train_epoch(r)["samples_per_s"]
                b = bare.epoch()
            engine_speeds.append(e)
            bare_speeds.append(b)
    trainer.close()
    return {"engine": engine_speeds[1:], "bare": bare_speeds[1:]}  # round 1 warms up


def paired_in_processes(mnist: Path, processes: int, rounds: int) -> dict:
    """`paired_epochs` in fresh processes; medians over every pair."""
    engine, bare, per_process = [], [], []
    for k in range(processes):
        out = subprocess.run([sys.executable, __file__, "--mnist", str(mnist), "--paired-worker", str(rounds)]
                             + (["--bare-first"] if k % 2 else []), capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        engine += got["engine"]
        bare += got["bare"]
        per_process.append(statistics.median(e / b for e, b in zip(got["engine"], got["bare"])))
        print(f"process {len(per_process)}: engine/bare {per_process[-1]:.3f}", flush=True)
    ratios = [e / b for e, b in zip(engine, bare)]
    return {"engine": statistics.median(engine), "bare": statistics.median(bare), "ratio": statistics.median(ratios),
            "per_process": per_process, "pairs": len(ratios)}


def full_engine(root: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(config(root), out=out)
    return {"speeds": [r["samples_per_s"] for r in result.history], "val_acc": result.history[-1]["val_acc"],
            "wall": time.perf_counter() - t0}


def full_bare(root: Path, bundle) -> dict:
    t0 = time.perf_counter()
    bare = BareLoop(bundle.train.images, bundle.train.labels, bundle.val.images, bundle.val.labels,
                    engine_layout(root), engine_amp(root))
    speeds = []
    for _ in range(EPOCHS):
        speeds.append(bare.epoch())
        acc = bare.accuracy()
    return {"speeds": speeds, "val_acc": acc, "wall": time.perf_counter() - t0}


def full_mxnet(python: str, npz: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()),
           "MXNET_CPU_WORKER_NTHREADS": str(torch.get_num_threads())}
    t0 = time.perf_counter()
    out = subprocess.run([python, str(HERE / "mxnet_lenet.py"), str(npz), "--epochs", str(EPOCHS), "--batch",
                          str(BATCH), "--lr", str(LR), "--momentum", str(MOMENTUM)],
                         capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"speeds": result["samples_per_s"], "val_acc": result["val_acc"][-1], "wall": time.perf_counter() - t0,
            "version": result["mxnet"]}


def full_keras(python: str, npz: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([python, str(HERE / "keras_lenet.py"), str(npz), "--epochs", str(EPOCHS), "--batch",
                          str(BATCH), "--lr", str(LR), "--momentum", str(MOMENTUM), "--threads",
                          str(torch.get_num_threads())], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"speeds": result["samples_per_s"], "val_acc": result["val_acc"][-1], "wall": time.perf_counter() - t0,
            "version": f"Keras {result['keras']} / TF {result['tensorflow']}"}


@contextlib.contextmanager
def busy_neighbour(on: bool):
    """`yes > /dev/null`: another process keeping one core busy while the body runs."""
    if not on:
        yield
        return
    proc = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait()


def neighbour(a: argparse.Namespace, bundle, npz: Path, tmp: Path) -> str:
    """Engine (and Keras) samples/s idle vs with a busy neighbour, runs alternating."""
    keras_python = os.environ.get("KERAS_PYTHON")
    got: dict[tuple[str, bool], list[float]] = {}
    for trial in range(a.trials):
        for loaded in (False, True) if trial % 2 == 0 else (True, False):
            with busy_neighbour(loaded):
                got.setdefault(("engine", loaded), []).append(
                    steady(full_engine(a.mnist, tmp / f"n{trial}{loaded}")["speeds"]))
                if keras_python:
                    got.setdefault(("keras", loaded), []).append(steady(full_keras(keras_python, npz)["speeds"]))
            print(f"trial {trial + 1} {'with' if loaded else 'without'} neighbour: " + ", ".join(
                f"{k} {v[-1]:.0f}" for (k, ld), v in got.items() if ld == loaded), flush=True)
    lines = [f"Machine: {describe()}",
             f"Setting: as above, {EPOCHS}-epoch runs, median of {a.trials} per condition (alternating); "
             f"neighbour: one `yes > /dev/null` process; torch threads {torch.get_num_threads()}, "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}.", "",
             "| variant | idle samples/s | with a busy neighbour | loaded / idle |", "|---|---|---|---|"]
    for name in ("engine", "keras"):
        if (name, False) in got:
            idle, busy = statistics.median(got[(name, False)]), statistics.median(got[(name, True)])
            lines.append(f"| {name} | {idle:,.0f} | {busy:,.0f} | {busy / idle:.2f} |")
    idle, busy = statistics.median(got[("engine", False)]), statistics.median(got[("engine", True)])
    lines += ["", f"- engine keeps **{busy / idle:.2f}x** of its idle speed with a neighbour (goal >= 0.5x): "
                  f"{'met' if busy / idle >= 0.5 else 'NOT met'}"]
    return "\n".join(lines)


def steady(speeds: list[float]) -> float:
    """Median samples/s over epochs 2..N (epoch 1 warms up)."""
    return statistics.median(speeds[1:] if len(speeds) > 1 else speeds)


def main() -> None:
    global EPOCHS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", type=Path, default=Path(os.environ.get("DEEPVISION_MNIST", DEFAULT_MNIST)))
    p.add_argument("--processes", type=int, default=6, help="fresh processes for the interleaved epochs")
    p.add_argument("--rounds", type=int, default=6, help="interleaved engine/bare epoch pairs per process")
    p.add_argument("--paired-worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--bare-first", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trials", type=int, default=3, help="complete runs of each variant")
    p.add_argument("--neighbour", action="store_true", help="engine speed with and without a busy neighbour")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs of the complete runs (default {EPOCHS})")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    a = p.parse_args()
    EPOCHS = a.epochs
    bundle = load_data(build_config(config(a.mnist)).data)
    if a.paired_worker:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(paired_epochs(a.mnist, bundle, a.paired_worker, Path(tmp), a.bare_first)))
        return
    mx_python = os.environ.get("MXNET_PYTHON")
    keras_python = os.environ.get("KERAS_PYTHON")
    runs: dict[str, list[dict]] = {"engine": [], "bare": [], "keras": [], "mxnet": []}
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "split.npz"
        np.savez(npz, x_train=bundle.train.images.numpy()[:, 0], y_train=bundle.train.labels.numpy(),
                 x_val=bundle.val.images.numpy()[:, 0], y_val=bundle.val.labels.numpy(), mean=MEAN, std=STD)
        if a.neighbour:
            text = neighbour(a, bundle, npz, Path(tmp))
            print(text)
            if not a.no_append:
                print(f"written to {write_section('LeNet on MNIST: a busy neighbour', text)}")
            return
        paired = paired_in_processes(a.mnist, a.processes, a.rounds)
        runners = {"engine": lambda t: full_engine(a.mnist, Path(tmp) / f"runs{t}"),
                   "bare": lambda t: full_bare(a.mnist, bundle),
                   "keras": lambda t: full_keras(keras_python, npz), "mxnet": lambda t: full_mxnet(mx_python, npz)}
        names = [n for n in runners if n in ("engine", "bare") or (n == "keras" and keras_python)
                 or (n == "mxnet" and mx_python)]
        for trial in range(a.trials):  # interleaved: the order rotates from trial to trial
            k = trial % len(names)
            for name in names[k:] + names[:k]:
                runs[name].append(runners[name](trial))
            print(f"trial {trial + 1}: " + ", ".join(f"{k} {steady(v[-1]['speeds']):.0f}" for k, v in runs.items()
                                                     if v), flush=True)
    summary = {k: {"samples_per_s": statistics.median(steady(r["speeds"]) for r in v),
                   "val_acc": statistics.median(r["val_acc"] for r in v),
                   "wall_s": statistics.median(r["wall"] for r in v)} for k, v in runs.items() if v}
    engine = summary["engine"]
    lines = [
        f"Machine: {describe()}",
        f"Setting: LeNet, MNIST test set split 8,000/2,000 (seed 42), batch {BATCH}, SGD lr {LR} momentum "
        f"{MOMENTUM}, inputs normalised with mean {MEAN} / std {STD}, CPU; engine and bare loop both in "
        f"{'channels_last' if engine_layout(a.mnist) == torch.channels_last else 'NCHW'}, "
        f"{'bf16 autocast' if engine_amp(a.mnist) == torch.bfloat16 else 'float32'} (the engine's `train.amp: "
        f"auto` here; Keras and MXNet in float32), with denormals flushed. "
        f"Throughput: {a.processes} fresh processes x "
        f"{a.rounds} interleaved engine/bare epoch pairs (first pair of each dropped; creation order alternating), "
        f"median of the {paired['pairs']} per-pair ratios. Complete "
        f"runs: {EPOCHS} epochs, median of {a.trials} trials; samples/s = training phase, median of epochs "
        f"2-{EPOCHS}; wall = whole run incl. data loading, validation, checkpoints.",
        "",
        f"Interleaved epochs: engine {paired['engine']:,.0f} samples/s, bare loop {paired['bare']:,.0f} samples/s, "
        f"**engine / bare = {paired['ratio']:.2f}x** (median ratio per process: "
        f"{', '.join(f'{r:.2f}' for r in paired['per_process'])}).",
        "",
        "| complete run | train samples/s | final val acc | wall s |",
        "|---|---|---|---|",
    ]
    labels = {"engine": "deepvision engine (`deepvision.train`)", "bare": "bare PyTorch loop",
              "keras": f"{runs['keras'][0]['version']} (`fit`)" if runs["keras"] else "",
              "mxnet": f"MXNet {runs['mxnet'][0]['version']} Module" if runs["mxnet"] else ""}
    for name in ("engine", "bare", "keras", "mxnet"):
        if name in summary:
            s = summary[name]
            lines.append(f"| {labels[name]} | {s['samples_per_s']:,.0f} | {s['val_acc'] * 100:.2f}% | "
                         f"{s['wall_s']:.1f} |")
    lines.append("")
    ratio = paired["ratio"]
    run_ratio = statistics.median(steady(e["speeds"]) / steady(b["speeds"]) for e, b in zip(runs["engine"],
                                                                                              runs["bare"]))
    met = [name for name, r in (("interleaved epochs", ratio), ("complete runs", run_ratio)) if r >= 0.95]
    verdict = "met" if len(met) == 2 else f"met by {met[0]} only" if met else "NOT met"
    lines.append(f"- engine / bare loop, interleaved epochs: **{ratio:.2f}x**; complete runs (median of the "
                 f"per-trial ratios): **{run_ratio:.2f}x** (goal >= 0.95x): {verdict}")
    lines.append(f"- engine val accuracy after {EPOCHS} epochs: **{engine['val_acc'] * 100:.2f}%** (goal >= 98%): "
                 f"{'met' if engine['val_acc'] >= 0.98 else 'NOT met'}")
    if "keras" in summary:
        kr = statistics.median(steady(e["speeds"]) / steady(k["speeds"]) for e, k in zip(runs["engine"],
                                                                                          runs["keras"]))
        lines.append(f"- engine / Keras-TF (complete runs, median of the per-trial ratios): **{kr:.2f}x** "
                     f"(goal >= 1.2x): {'met' if kr >= 1.2 else 'NOT met'}")
    else:
        lines.append("- Keras/TF: not measured (set KERAS_PYTHON to an interpreter with Keras 3 + tensorflow-cpu)")
    if "mxnet" in summary:
        mr = engine["samples_per_s"] / summary["mxnet"]["samples_per_s"]
        verdict = "met" if mr >= 1.5 else "NOT met"
        lines.append(f"- engine / MXNet (complete runs): **{mr:.2f}x** (goal >= 1.5x): {verdict}")
    else:
        lines.append("- MXNet: not measured (set MXNET_PYTHON to an MXNet 1.9.1 interpreter)")
    text = "\n".join(lines)
    print(text)
    if not a.no_append:
        print(f"written to {write_section('LeNet on MNIST: engine vs bare loop vs Keras/TF vs MXNet', text)}")


if __name__ == "__main__":
    main()
