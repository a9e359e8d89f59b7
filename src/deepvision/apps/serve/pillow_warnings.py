"""Pillow's warnings about uploaded images, counted by reason instead of printed into the server's log."""

from __future__ import annotations

import os
import threading
import warnings
from collections import Counter
from typing import Any

_pillow_warnings: Counter[str] = Counter()
_pillow_lock = threading.Lock()
_PIL_DIR = os.sep + "PIL" + os.sep


def _count_pillow_warning(previous: Any) -> Any:
    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if _PIL_DIR in str(filename):
            reason = " ".join(f"{category.__name__}: {message}".split())[:160]
            with _pillow_lock:
                _pillow_warnings[reason] += 1
            return
        previous(message, category, filename, lineno, file, line)

    show.counts_pillow = True  # type: ignore[attr-defined]
    return show


def quiet_pillow_warnings() -> Counter[str]:
    """Count Pillow's warnings about the images it decodes (a truncated TIFF read, corrupt EXIF data, a
    size above Pillow's own bomb warning) by reason instead of printing them, and return that live
    counter. For a process decoding untrusted images (serve): each warning would otherwise be printed
    into its log, two lines per upload. The outcome of a decode does not change: a damaged image is
    still a DecodeError, one that decodes is still used. Other warnings are shown as before."""
    with _pillow_lock:
        if not getattr(warnings.showwarning, "counts_pillow", False):
            warnings.showwarning = _count_pillow_warning(warnings.showwarning)
        warnings.filterwarnings("always", module=r"PIL(\.|$)")  # every one counted, not the first per line
    return _pillow_warnings


def pillow_warning_counts() -> dict[str, int]:
    """A copy of the counts `quiet_pillow_warnings` keeps (reason -> count)."""
    with _pillow_lock:
        return dict(_pillow_warnings)
