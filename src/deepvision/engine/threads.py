"""CPU threads for a run: leave the cores other processes are busy on.

PyTorch's OpenMP threads spin between parallel regions; when another process holds one of the cores,
every region waits for a preempted spinner and training collapses to a fraction of its idle speed
(`benchmarks/lenet_mnist.py --neighbour` measures it). Fewer threads than cores avoids that
without costing the idle machine anything, unlike `OMP_WAIT_POLICY=PASSIVE` (docs/performance.md).
So, on the CPU and unless the user chose a count (`OMP_NUM_THREADS`, or `DEEPVISION_CPU_THREADS=N`;
`auto` is the default), a run measures how busy the cores are for a fraction of a second before it
starts and trains on the ones left free. The check happens once; load that starts later is not followed.
Every other command that computes (detect, evaluate, predict, classify, emotion, features, export, ...)
follows the same policy: the CLI fits the threads before the command runs (cli/main.py).
"""

from __future__ import annotations

import os
import time

import torch

from deepvision.errors import UserError

MAX_THREADS = 1024  # OpenMP allocates per thread: 99,999,999 asked for 21.6 GB and aborted


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all cores from /proc/stat, or None where there is no such file."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(interval: float = 0.25) -> float | None:
    """Cores kept busy by other processes over `interval` seconds (this process sleeps meanwhile)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(interval)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def fit_threads_to_load(device: torch.device, interval: float = 0.25, what: str = "training"
                        ) -> tuple[int, str | None]:
    """Lower torch's intra-op threads to the free cores; returns (previous count, a line to report or None).
    `what` names the work in that line ("training", "running detect", ...)."""
    previous = torch.get_num_threads()
    if device.type != "cpu":
        return previous, None
    chosen = os.environ.get("DEEPVISION_CPU_THREADS", "").strip().lower()
    if chosen not in ("auto", ""):  # empty is unset, as for every DEEPVISION_* variable
        if not (chosen.isascii() and chosen.isdigit()) or not 1 <= int(chosen) <= MAX_THREADS:
            raise UserError(f"DEEPVISION_CPU_THREADS must be 'auto' or a thread count from 1 to {MAX_THREADS:,}, "
                            f"got {chosen[:24]!r}")
        torch.set_num_threads(int(chosen))
        return previous, None
    if os.environ.get("OMP_NUM_THREADS") or previous <= 1:
        return previous, None
    busy = busy_cores(interval)
    if busy is None:
        return previous, None
    cores = os.cpu_count() or previous
    free = max(1, min(previous, cores - int(busy + 0.5)))
    if free >= previous:
        return previous, None
    torch.set_num_threads(free)
    return previous, (f"{busy:.1f} of {cores} cores are busy with other processes: {what} on {free} "
                      f"thread(s) instead of {previous} (set OMP_NUM_THREADS to choose)")
