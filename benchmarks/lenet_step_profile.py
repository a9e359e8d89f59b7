"""Where LeNet's training step spends its time: deepvision's engine against Keras 3 / TensorFlow-CPU.

    KERAS_PYTHON=/path/to/keras-venv/bin/python python benchmarks/lenet_step_profile.py [--rounds 3]
    python benchmarks/lenet_step_profile.py --steps 5 --rounds 1 --no-append     # smoke run

Both sides run the same step: LeNet (28x28x1; conv 20 5x5, tanh, max-pool 2, conv 50 5x5, tanh,
max-pool 2, dense 500 tanh, dense 10) on one batch of 100 random images with random labels, SGD
momentum 0.9, loss, backward, update and the running accuracy. deepvision runs its trainer's own step
(the engine's default precision and memory format: bf16 autocast and channels_last on CPUs with
AMX-BF16, see docs/performance.md; and, for comparison, float32 NCHW); Keras runs the compiled train
function its `fit` runs, in float32, in a child process of the Keras interpreter ($KERAS_PYTHON,
the network built by `keras_peer.py`).

Each process warms up, times `--steps` steps without a profiler (the step time), then profiles
`--steps` more: torch.profiler on the deepvision side, TensorFlow's profiler (its XSpace trace) on the
Keras side. Every op is put in a category by its name (an op without one inherits its caller's,
e.g. the buffers a convolution allocates), and the step's wall time is shared out among the ops
running at each instant, equally when several run at once (TensorFlow runs independent ops on its
inter-op threads in parallel; torch's ops run one after another, each on all its threads). So the
categories add up to the profiled step; the rest of it, no op running (Python, dispatch, TensorFlow's
executor), is "untraced". Processes alternate sides round by round; the table gives medians over
rounds, and bullet lines compute where the step stands against 1.5x Keras' samples/s.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

HERE = Path(__file__).resolve().parent
TITLE = "LeNet's training step, profiled: deepvision vs Keras"
BATCH, CLASSES, TARGET = 100, 10, 1.5
CATEGORIES = ("conv forward", "conv backward", "tanh fwd+bwd", "max-pool fwd+bwd", "dense fwd+bwd",
              "loss/softmax", "optimizer update", "casts, layout copies", "other ops")
UNTRACED = "untraced (Python, dispatch)"
OTHER = "other ops"
# deepvision variant -> (train.amp, train.channels_last)
VARIANTS = {"default": ("auto", True), "float32 NCHW": ("off", False)}

Event = tuple[object, float, float, "str | None"]  # (thread, start, end, category or None: the caller's)


def torch_category(name: str) -> str | None:
    """The category of a torch.profiler event (an aten op, an autograd node, an optimizer call)."""
    n = name.lower()
    if n.startswith("optimizer.") or "_foreach_" in n:
        return "optimizer update"
    if "conv" in n:
        return "conv backward" if "backward" in n else "conv forward"
    if "tanh" in n:
        return "tanh fwd+bwd"
    if "max_pool" in n or "maxpool" in n:
        return "max-pool fwd+bwd"
    if "nll" in n or "softmax" in n or "cross_entropy" in n:
        return "loss/softmax"
    if any(k in n for k in ("addmm", "linear", "mmbackward", "tbackward")) or n in ("aten::mm", "aten::t"):
        return "dense fwd+bwd"
    if "tocopy" in n or n in ("aten::to", "aten::_to_copy", "aten::copy_", "aten::contiguous", "aten::clone"):
        return "casts, layout copies"
    return None


TF_OP = re.compile(r"^[^:\s]+:[A-Za-z0-9_]+$")  # "scope/name:OpType", TensorFlow's op events


def tf_category(name: str, optimizer: str = "sgd") -> str | None:
    """The category of a TensorFlow op event ("scope/name:OpType"); None: not an op (executor, Python)."""
    if not TF_OP.match(name):
        return None
    scope, _, op = name.rpartition(":")
    s, o = f"/{scope.lower()}/", op.lower()
    if f"/{optimizer.lower()}/" in s:
        return "optimizer update"
    if "conv2d" in o:
        return "conv backward" if "backprop" in o else "conv forward"
    if "maxpool" in o:
        return "max-pool fwd+bwd"
    if "tanh" in o:
        return "tanh fwd+bwd"
    if "matmul" in o or "biasadd" in o:
        return "dense fwd+bwd"
    if "/compile_loss/" in s or "softmax" in o or "crossentropy" in o:
        return "loss/softmax"
    if o in ("cast", "transpose", "identity", "copy", "reshape"):
        return "casts, layout copies"
    return OTHER


def self_segments(events: Iterable[tuple[float, float, str | None]], default: str | None = OTHER
                  ) -> list[tuple[float, float, str | None]]:
    """Non-overlapping (start, end, category) pieces of one thread's nested events: each instant goes to
    the innermost event running then, under its own category or else its nearest caller's (`default`
    at the top)."""
    segs: list[tuple[float, float, str | None]] = []
    stack: list[tuple[float, str | None]] = []  # (end, effective category) of the open events
    cur = 0.0
    for start, end, cat in sorted(events, key=lambda e: (e[0], -e[1])):
        while stack and stack[-1][0] <= start:
            done, c = stack.pop()
            segs.append((cur, done, c))
            cur = done
        if stack:
            segs.append((cur, start, stack[-1][1]))
        eff = cat if cat is not None else (stack[-1][1] if stack else default)
        stack.append((min(end, stack[-1][0]) if stack else end, eff))
        cur = start
    while stack:
        done, c = stack.pop()
        segs.append((cur, done, c))
        cur = done
    return [s for s in segs if s[1] > s[0]]


def wall_shares(events: Iterable[Event], default: str | None = OTHER) -> tuple[dict[str, float], float]:
    """({category: wall time}, time two or more ops ran at once) of events on any number of threads.

    Each instant of wall time is split equally among the threads running a categorised op then, so the
    shares add up to the time any op ran; pieces without a category (None) count as no op running."""
    by_thread: dict[object, list[tuple[float, float, str | None]]] = {}
    for thread, start, end, cat in events:
        by_thread.setdefault(thread, []).append((start, end, cat))
    edges: list[tuple[float, int, str]] = []
    for evs in by_thread.values():
        for start, end, cat in self_segments(evs, default):
            if cat is not None:
                edges += [(start, 1, cat), (end, -1, cat)]
    edges.sort(key=lambda e: (e[0], e[1]))
    shares: dict[str, float] = {}
    running: dict[str, int] = {}
    overlap, last = 0.0, None
    for t, delta, cat in edges:
        active = sum(running.values())
        if last is not None and active and t > last:
            for c, k in running.items():
                if k:
                    shares[c] = shares.get(c, 0.0) + (t - last) * k / active
            if active > 1:
                overlap += t - last
        running[cat] = running.get(cat, 0) + delta
        last = t
    return shares, overlap


def profile_result(step_s: list[float], shares: dict[str, float], overlap: float, profiled_s: float,
                   steps: int, **extra: object) -> dict:
    """The child's JSON: ms per step of the unprofiled step, of each category, untraced, overlap."""
    per = {c: 1e3 * shares.get(c, 0.0) / steps for c in CATEGORIES}
    profiled = 1e3 * profiled_s / steps
    return {"step_ms": [1e3 * s for s in step_s], "categories": per, "profiled_ms": profiled,
            "untraced_ms": max(profiled - sum(per.values()), 0.0), "overlap_ms": 1e3 * overlap / steps, **extra}


def timed(step: Callable[[], object], steps: int) -> float:
    """Seconds per call of `step` over `steps` calls (0.0 for none)."""
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / max(steps, 1)


def run_engine(variant: str, steps: int, warmup: int) -> dict:
    """deepvision's trainer step (this process) on one batch, timed and then profiled."""
    import contextlib
    import io

    import torch
    from torch.profiler import ProfilerActivity, profile

    from deepvision.config import build_config
    from deepvision.engine.distributed import DistInfo
    from deepvision.engine.resolve import resolve_run
    from deepvision.engine.trainer import Trainer
    from deepvision.runs.rundir import RunDir
    from reference_nets import engine_config

    amp, channels_last = VARIANTS[variant]
    cfg = engine_config("lenet", 1, amp)
    cfg["data"]["options"]["samples"] = 2 * BATCH
    cfg["train"]["channels_last"] = channels_last
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(resolve_run(build_config(cfg)), RunDir.create(tmp, "bench"), dist=DistInfo(),
                          device=torch.device("cpu"))
        try:
            task, model, dtype = trainer.task, trainer.train_model, trainer.amp
            x, y = task.to_device(next(iter(trainer.loaders["train"])), torch.device("cpu"))
            meter = task.meter(torch.device("cpu"), "train")
            model.train()

            def step() -> None:  # the body of the trainer's training loop, one batch, no accumulation
                with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                    loss, out = task.train_loss(model, x, y)
                trainer._backward(loss)
                trainer._step()
                meter.update(out.detach(), y, loss.detach())

            timed(step, warmup)
            step_s = [timed(step, steps)]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                profiled_s = timed(step, steps) * steps
            events = [(e.thread, e.time_range.start, e.time_range.end, torch_category(e.name))
                      for e in prof.events()]
            shares, overlap = wall_shares((t, s * 1e-6, e * 1e-6, c) for t, s, e, c in events)
            return profile_result(step_s, shares, overlap, profiled_s, steps,
                                  dtype=str(dtype or torch.float32).removeprefix("torch."),
                                  memory_format="channels_last" if trainer.channels_last else "NCHW",
                                  threads=torch.get_num_threads(), torch=torch.__version__)
        finally:
            trainer.close()


def xspace_events(path: str, optimizer: str) -> list[Event]:
    """The op events of TensorFlow's XSpace trace (its host plane), with their categories."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    events: list[Event] = []
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            for e in line.events:
                cat = tf_category(names.get(e.metadata_id, ""), optimizer)
                if cat is not None:
                    start = line.timestamp_ns * 1e-9 + e.offset_ps * 1e-12
                    events.append(((plane.id, line.id), start, start + e.duration_ps * 1e-12, cat))
    return events


def run_keras(steps: int, warmup: int, threads: int) -> dict:
    """Keras' compiled train function (what `fit` runs per step) on one batch, timed and then profiled.

    Runs in the Keras interpreter."""
    import numpy as np

    from keras_peer import build, keras_setup

    tf, keras = keras_setup(threads)
    from keras import layers

    model = build("lenet", keras, layers)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, 28, 28, 1), dtype=np.uint8).astype(np.float32) / 255
    y = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    batches = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    model.make_train_function()
    train = model.train_function

    def step() -> None:
        train(batches)

    timed(step, warmup)
    step_s = [timed(step, steps)]
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            profiled_s = timed(step, steps) * steps
        finally:
            tf.profiler.experimental.stop()
        traces = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not traces:
            raise SystemExit("TensorFlow's profiler wrote no .xplane.pb trace")
        events = [e for path in traces for e in xspace_events(path, model.optimizer.name)]
    shares, overlap = wall_shares(events, default=None)
    return profile_result(step_s, shares, overlap, profiled_s, steps, dtype="float32",
                          memory_format="NHWC", threads=threads, keras=keras.__version__,
                          tensorflow=tf.__version__)


def measure(side: str, steps: int, warmup: int, threads: int) -> dict:
    """One fresh process of `side` ("keras" or a deepvision variant): its JSON result.

    Both sides get `threads` threads: TensorFlow's intra/inter-op pools, the engine's torch threads
    (DEEPVISION_CPU_THREADS, so that its busy-core probe cannot pick fewer when a neighbour runs)."""
    env = dict(os.environ)
    common = ["--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads)]
    if side == "keras":
        cmd = [os.environ["KERAS_PYTHON"], str(Path(__file__).resolve()), "--keras-child", *common]
    else:
        env["DEEPVISION_CPU_THREADS"] = str(threads)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--engine-child", side, *common]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"the {side} process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(results: list[dict]) -> dict:
    """Medians over rounds: step ms, every category, untraced, profiled, overlap; plus the labels."""
    med = statistics.median
    out = {k: v for k, v in results[0].items() if k not in ("step_ms", "categories")}
    out["step_ms"] = med(med(r["step_ms"]) for r in results)
    out["categories"] = {c: med(r["categories"][c] for r in results) for c in CATEGORIES}
    for key in ("untraced_ms", "profiled_ms", "overlap_ms"):
        out[key] = med(r[key] for r in results)
    return out


def label(result: dict) -> str:
    return f"{result['dtype']}, {result['memory_format']}"


def gap_lines(dv: dict, keras: dict | None, base: dict | None) -> list[str]:
    """Bullet lines computed from the medians: where deepvision's step stands against 1.5x Keras."""
    lines = []
    if keras is not None:
        ratio = keras["step_ms"] / dv["step_ms"]
        need = keras["step_ms"] / TARGET
        head = (f"- deepvision's step takes {dv['step_ms']:.2f} ms, Keras' {keras['step_ms']:.2f} ms: "
                f"{ratio:.2f}x Keras' samples/s. ")
        if dv["step_ms"] <= need:
            lines.append(head + f"That is at or past the {TARGET}x target ({need:.2f} ms).")
        else:
            lines.append(head + f"{TARGET}x needs {need:.2f} ms, {dv['step_ms'] - need:.2f} ms less.")
        rows = [(c, dv["categories"][c], keras["categories"][c]) for c in CATEGORIES]
        rows.append((UNTRACED, dv["untraced_ms"], keras["untraced_ms"]))
        over = sorted(((d - k / TARGET, c, d, k) for c, d, k in rows if d - k / TARGET > 0.005), reverse=True)
        if over:
            parts = [f"{c} {d:.2f} vs {k:.2f} ms (+{x:.2f})" for x, c, d, k in over]
            lines.append(f"- In the profiled step, over 1/{TARGET} of Keras' time (by how much): "
                         + "; ".join(parts) + ".")
        ahead = [(k / TARGET - d, c) for c, d, k in rows if k / TARGET - d > 0.005]
        if ahead:
            lines.append(f"- Already under 1/{TARGET} of Keras' time: "
                         + ", ".join(f"{c} ({x:.2f} ms to spare)" for x, c in sorted(ahead, reverse=True)) + ".")
        if keras["overlap_ms"] > 0.005:
            lines.append(f"- TensorFlow ran two or more ops at once for {keras['overlap_ms']:.2f} ms of its "
                         f"profiled step (its inter-op threads); torch's ops ran one after another.")
    if base is not None:
        diffs = sorted(((base["categories"][c] - dv["categories"][c], c) for c in CATEGORIES), reverse=True)
        parts = [f"{c} {x:+.2f} ms" for x, c in diffs if abs(x) > 0.005]
        lines.append(f"- {label(dv)} against {label(base)} (time saved per category): "
                     + ("; ".join(parts) or "no category moved") + f"; whole step "
                     f"{base['step_ms'] - dv['step_ms']:+.2f} ms.")
    for name, r in (("deepvision", dv), ("Keras", keras)):
        if r is not None:
            lines.append(f"- {name}: profiled step {r['profiled_ms']:.2f} ms against {r['step_ms']:.2f} ms "
                         f"without the profiler (its cost: {r['profiled_ms'] - r['step_ms']:+.2f} ms).")
    return lines


def section(dv: dict, base: dict | None, keras: dict | None, rounds: int, steps: int, machine: str) -> str:
    """The BENCHMARKS.md section from the summarised results of each side."""
    cols = [("deepvision " + label(dv), dv)]
    if base is not None:
        cols.append(("deepvision " + label(base), base))
    if keras is not None:
        cols.append(("Keras " + label(keras), keras))
    header = "| category (ms/step) | " + " | ".join(n for n, _ in cols) + (" | ratio |" if keras else " |")
    align = "|---|" + "---:|" * (len(cols) + (1 if keras else 0))

    def row(name: str, values: list[float], fmt: str = "{:.2f}") -> str:
        cells = [fmt.format(v) for v in values]
        if keras is not None:
            cells.append(f"{values[-1] / values[0]:.2f}x" if values[0] > 0 else "-")
        return f"| {name} | " + " | ".join(cells) + " |"

    rows = [row(c, [r["categories"][c] for _, r in cols]) for c in CATEGORIES]
    rows.append(row(UNTRACED, [r["untraced_ms"] for _, r in cols]))
    rows.append(row("**sum = profiled step**", [sum(r["categories"].values()) + r["untraced_ms"] for _, r in cols]))
    rows.append(row("**step, no profiler**", [r["step_ms"] for _, r in cols]))
    speeds = [BATCH * 1e3 / r["step_ms"] for _, r in cols]
    cells = [f"{s:,.0f}" for s in speeds] + ([f"{speeds[0] / speeds[-1]:.2f}x"] if keras else [])
    rows.append("| **samples/s** | " + " | ".join(cells) + " |")
    peer = (f"; Keras {keras['keras']} on TensorFlow {keras['tensorflow']}, its compiled train function "
            f"(what `fit` runs per step) on {keras['threads']} intra/inter-op thread(s)") if keras else ""
    body = (f"Machine: {machine}. One batch of {BATCH} random 28x28x1 images, SGD momentum 0.9, the same "
            f"batch every step (no loader on either side); per process {steps} steps timed, then {steps} "
            f"profiled; medians over {rounds} round(s), sides alternating. "
            f"deepvision: its trainer's step in the engine's default precision and memory format "
            f"({label(dv)}) on {dv['threads']} torch thread(s)"
            + (f", and in {label(base)}" if base is not None else "") + peer
            + ". Ops are grouped by name; each instant of the step goes to the op(s) running then "
            "(shared equally when TensorFlow runs several at once), so the rows add up to the profiled "
            "step. Fused ops count where their main op does (Keras' dense tanh runs inside its matmul, "
            "its conv bias inside the conv). Ratio: Keras' time / deepvision's (above 1: deepvision "
            "faster).\n\n" + "\n".join([header, align, *rows]) + "\n\n" + "\n".join(gap_lines(dv, keras, base)))
    return body + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="processes per side")
    p.add_argument("--steps", type=int, default=200, help="steps timed, then as many profiled, per process")
    p.add_argument("--warmup", type=int, default=20, help="steps before timing")
    p.add_argument("--threads", type=int, default=2, help="threads of each side: TensorFlow's intra/inter-op "
                   "pools, deepvision's torch threads (the cores)")
    p.add_argument("--no-append", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    p.add_argument("--engine-child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--keras-child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.rounds < 1 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        p.error("--rounds, --steps and --threads must be positive, --warmup at least 0")
    if a.engine_child:
        print(json.dumps(run_engine(a.engine_child, a.steps, a.warmup)))
        return
    if a.keras_child:
        print(json.dumps(run_keras(a.steps, a.warmup, a.threads)))
        return
    sides = [*VARIANTS] + (["keras"] if os.environ.get("KERAS_PYTHON") else [])
    results: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(a.rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            results[side].append(measure(side, a.steps, a.warmup, a.threads))
            print(f"round {r + 1} {side}: {min(results[side][-1]['step_ms']):.2f} ms/step", flush=True)
    summary = {s: summarise(v) for s, v in results.items()}
    body = section(summary["default"], summary["float32 NCHW"], summary.get("keras"), a.rounds, a.steps,
                   describe())
    print(body)
    if not a.no_append:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
