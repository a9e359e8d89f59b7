"""Describe the machine a benchmark ran on (for BENCHMARKS.md)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe() -> str:
    import torch

    threads = torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores ({threads} torch threads), "
            f"{gpu}, Python {platform.python_version()}, torch {torch.__version__}")


def append_section(title: str, body: str, path: Path | None = None) -> Path:
    """Append a dated section to BENCHMARKS.md at the repository root."""
    path = path or Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
    if not path.exists():
        path.write_text("# Benchmarks\n\nFigures appended by the scripts in `benchmarks/`; newest last.\n")
    with open(path, "a") as f:
        f.write(f"\n## {title}\n\n{body.rstrip()}\n")
    return path
