"""Numeric precision of a run: the autocast dtype of `train.amp`, and denormal flushing on the CPU.

`train.amp: auto` is bf16 autocast on CUDA GPUs and float32 on the CPU. bf16 on the CPU
(`train.amp: bf16`) runs on oneDNN's AMX kernels where the CPU has them; it was 1.7-2.3x faster than
float32 with one thread but slower with two on the 2-core machine measured (docs/performance.md), so it
is not the CPU default.

`flush_denormals` sets flush-to-zero on every thread that computes: `torch.set_flush_denormal` alone
changes the calling thread's floating-point mode, and the OpenMP workers that run half of each kernel on
two cores keep computing with (slow) denormals once they exist.
"""

from __future__ import annotations

import ctypes
import os

import torch


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.amp` on `device`; None: float32."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or (device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


_PARALLEL_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP library torch's CPU kernels run on, when it is loaded and torch uses OpenMP."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        with open("/proc/self/maps") as f:  # the very copy torch loaded (wheels bundle their own libgomp)
            paths = {line.split()[-1] for line in f if line.rstrip().endswith((".so", ".so.1", ".so.5"))}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith(("libgomp", "libiomp5", "libomp")):
            try:
                lib = ctypes.CDLL(path)
                lib.GOMP_parallel.argtypes = [_PARALLEL_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                lib.GOMP_parallel.restype = None
                return lib
            except (OSError, AttributeError):
                return None
    return None


def flush_denormals(enabled: bool) -> bool:
    """Flush denormal floats to zero (or stop) on this thread and every thread of torch's OpenMP pool
    (`torch.get_num_threads()` of them); returns whether the CPU supports it."""
    supported = torch.set_flush_denormal(enabled)
    threads = torch.get_num_threads()
    lib = _openmp_runtime() if supported and threads > 1 else None
    if lib is not None:
        # one parallel region whose body sets the mode on each thread of the team (threads created
        # later inherit it from the thread that creates them)
        body = _PARALLEL_BODY(lambda _: torch.set_flush_denormal(enabled) and None)
        lib.GOMP_parallel(body, None, threads, 0)
    return supported
