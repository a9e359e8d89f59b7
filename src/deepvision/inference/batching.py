"""Decode images in background threads while the model runs on the previous batch.

PIL releases the GIL while it decodes and resizes, so a few threads keep a CPU model or a GPU fed
without worker processes; a file that does not decode raises its one-line UserError in the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

from deepvision.errors import UserError
from deepvision.safeload import IMAGE_EXTS, image_files, input_file

T = TypeVar("T")


def expand_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, plus every image under the named folders (recursively, sorted)."""
    if not inputs:
        raise UserError("give at least one image file or folder")
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) found under {p}")
            out.extend(found)
        else:  # a missing path, a FIFO or a device is refused before anything opens it
            out.append(input_file(p, "image or folder", "; give an image file or a folder of images"))
    return out


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def batches(items: Sequence[T], load: Callable[[T], torch.Tensor], batch_size: int,
            threads: int | None = None) -> Iterator[tuple[list[T], torch.Tensor]]:
    """(items, stacked tensors) per batch, in order; the next batch decodes while this one is used."""
    if batch_size <= 0:
        raise UserError(f"the batch size must be a positive integer, got {batch_size}")
    chunks = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(threads or default_threads()) as pool:

        def submit(chunk: list[T]) -> list[Future[Any]]:
            return [pool.submit(load, item) for item in chunk]

        pending = submit(chunks[0])
        for k, chunk in enumerate(chunks):
            try:
                tensors = [f.result() for f in pending]
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
            pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
            yield chunk, torch.stack(tensors)
