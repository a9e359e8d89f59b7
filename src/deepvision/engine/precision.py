"""Numeric precision of a run: autocast dtypes (`train.amp`) and denormal flushing on the CPU.

`train.amp: auto` trains in bf16 autocast on CUDA GPUs and on CPUs with AMX-BF16 tile units (Intel
Sapphire Rapids and later), where oneDNN's bf16 kernels make the training step of LeNet, MiniVGGNet and
EmotionVGGNet faster (`benchmarks/cpu_precision.py`, BENCHMARKS.md; docs/performance.md); on the CPU only
the training step runs in bf16, validation and `deepvision evaluate` score in float32. Elsewhere `auto` is
float32.

`flush_denormals` sets flush-to-zero on every thread that computes: `torch.set_flush_denormal` alone
changes the calling thread's floating-point mode, and the OpenMP workers that run half of each kernel on
two cores keep computing with (slow) denormals once they exist.
"""

from __future__ import annotations

import ctypes
import os

import torch


def cpu_bf16_fast() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX-BF16 and AVX512-BF16)."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return False
    try:
        caps = capabilities()
    except RuntimeError:
        return False
    return bool(caps.get("amx_bf16")) and bool(caps.get("avx512_bf16"))


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.amp` for scoring (validation, evaluation); None: float32."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or (device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def train_amp_dtype(mode: str, device: torch.device, cpu_autocast: bool = True) -> torch.dtype | None:
    """The autocast dtype of the training step. `auto` on the CPU: bf16 where `cpu_bf16_fast()` and the
    task allows it (`cpu_autocast`), else float32; otherwise as `amp_dtype`."""
    if mode == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_autocast and cpu_bf16_fast() else None
    return amp_dtype(mode, device)


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
