"""Keep freed memory in the process while training on the CPU.

glibc's malloc serves blocks above its mmap threshold (128 KB at first) with a fresh `mmap` and returns
them to the kernel when freed, and trims the heap whenever its free top passes 128 KB. A CPU training
step allocates and frees activations and gradients of a few MB every step, so without a change every
step pays thousands of page faults: on LeNet at batch 100 that is a third of the step in kernel time
(`benchmarks/reference_nets.py`, docs/performance.md). glibc raises the threshold by itself once it sees
such a block freed, so whether a run pays depends on what the process allocated before. PyTorch's
CPU performance guides swap in jemalloc or tcmalloc; here the run sets glibc's two thresholds instead:
blocks up to 32 MB (glibc's largest mmap threshold) come from the heap, and up to 512 MB of freed heap
stays with the process. Set MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES to choose
yourself; the call then leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 512 * 2**20
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (see the module docstring); returns whether
    they are set (False off glibc, or where the user's environment sets malloc's own options)."""
    global _done
    if _done:
        return True
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
