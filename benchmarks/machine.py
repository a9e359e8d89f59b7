"""Describe the machine a benchmark ran on (for BENCHMARKS.md)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
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


REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "BENCHMARKS.md"
HISTORY = REPO / "docs" / "benchmark-history.md"
PEERS = ("KERAS_PYTHON", "MXNET_PYTHON")  # interpreters of the peers, named by variable in the command
HISTORY_INTRO = """# Benchmark history

Earlier runs of the sections of [BENCHMARKS.md](../BENCHMARKS.md), newest first, as they stood when a
newer run of the same script replaced them. Each was measured on the machine and date it names, with
the code of that date: the current figures are the ones in BENCHMARKS.md.
"""


def command_line() -> str:
    """The command that is running, as a user types it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    peers = [f"{name}=..." for name in PEERS if os.environ.get(name)]
    return " ".join([*peers, "python", str(shown), *map(shlex.quote, sys.argv[1:])])


def _split(text: str, title: str) -> tuple[str, str | None, str]:
    """(before, the `## title` section or None, after) of a markdown text."""
    header = f"\n## {title}\n"
    start = text.find(header)
    if start == -1:
        return text, None, ""
    nxt = text.find("\n## ", start + len(header))
    end = len(text) if nxt == -1 else nxt
    return text[:start], text[start:end], text[end:]


def write_section(title: str, body: str, path: Path | None = None, history: Path | None = None) -> Path:
    """Make `body` the `## title` section of BENCHMARKS.md, opened by the command that produced it.

    The section's previous run moves to the top of docs/benchmark-history.md, so the report holds only
    the latest table of each workload. Returns the report's path.
    """
    from deepvision.fileio import atomic_write_text

    path = path or REPORT
    history = history or HISTORY
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    before, old, after = _split(text, title)
    section = f"\n## {title}\n\n`{command_line()}`\n\n{body.strip()}\n"
    if old is not None:
        past = history.read_text() if history.exists() else HISTORY_INTRO
        first = past.find("\n## ")  # newest first: the entry goes above the earlier ones
        cut = len(past) if first == -1 else first
        previous = old.strip().split("\n", 1)[1].strip()  # the old section without its "## title" line
        entry = f"\n## {title} (replaced {time.strftime('%Y-%m-%d')})\n\n{previous}\n"
        atomic_write_text(history, past[:cut].rstrip("\n") + "\n" + entry + past[cut:])
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n" + section
    atomic_write_text(path, text)
    return path
