"""Mean files: the per-channel mean R, G, B of a training set, as JSON {"R": .., "G": .., "B": ..}.

Each value is the unweighted mean of the per-image channel means (every image counts once, whatever
its size), in 0-255 units. From a `.lst`, the original files are decoded as the packer decodes them
(OpenCV for JPEGs, composited on white for transparent images); from a `.rec`, the stored images are
decoded. Work is spread over processes; unreadable images are skipped and counted.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deepvision.data.imageio import DecodeError, Decoder, decode_opencv, read_image_file
from deepvision.data.lst import labels_files
from deepvision.data.mean_file import read_mean_rgb
from deepvision.data.records.pipeline import forking_cv2
from deepvision.data.records.record_file import RecordFile
from deepvision.data.records.recordio import RecordError
from deepvision.datasets.im2rec import quiet_pool_worker, stop_pool
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, stops_held
from deepvision.placement import begins_with, refuse_output_over_inputs, refuse_replacing
from deepvision.safeload import check_workers, input_file


@dataclass
class MeanResult:
    """Means in R, G, B order (0-255), the images that counted, and those skipped (where, reason)."""

    r: float
    g: float
    b: float
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"R": self.r, "G": self.g, "B": self.b}


def _file_means(path: str) -> tuple[np.ndarray | None, str]:
    try:
        data = read_image_file(path)  # a FIFO must not block; a file larger than an image is not read
        img = decode_opencv(data, 1)  # BGR, like the reference's cv2.imread
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})"
    except DecodeError as exc:
        return None, str(exc)
    b, g, r = cv2.mean(img)[:3]
    return np.array([r, g, b]), ""


def _record_means(task: tuple[str, int, int]) -> tuple[np.ndarray, int, list[tuple[str, str]]]:
    """Sum of per-image RGB means over records [start, stop) of a record file, count, skipped."""
    path, start, stop = task
    rf = RecordFile.open(path, cache=False) if _RECORD_FILE is None or str(_RECORD_FILE.path) != path else _RECORD_FILE
    decoder = Decoder(3)
    total, count, skipped = np.zeros(3), 0, []
    for i in range(start, stop):
        try:
            payload = rf.read(i)
            flag = int.from_bytes(bytes(payload[:4]), "little")
            img = decoder(payload[24 + 4 * flag :])
        except (RecordError, DecodeError, ValueError) as exc:
            skipped.append((rf.describe(i), str(exc)))
            continue
        total += np.asarray(cv2.mean(img)[:3])
        count += 1
    return total, count, skipped


_RECORD_FILE: RecordFile | None = None


def _init(record_file: RecordFile | None, in_worker: bool = False) -> None:
    global _RECORD_FILE
    _RECORD_FILE = record_file
    if in_worker:
        quiet_pool_worker()


def compute_mean(
    source: str | Path,
    *,
    root: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    out: str | Path | None = None,
) -> MeanResult:
    """Mean R, G, B of the images of a .lst (files under `root`, default the list's folder) or a .rec.
    `out`, the mean file the caller will write, is refused up front when it is the source or one of its
    images."""
    source = input_file(source)  # a FIFO is named as one, never opened
    workers = check_workers("--num-thread", max(1, workers or os.cpu_count() or 1))
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    t0 = time.perf_counter()
    sums, count, skipped = np.zeros(3), 0, []
    companions = labels_files(source)  # the class names training reads
    if source.suffix == ".rec" or source.suffix == ".idx":
        if root is not None:  # taken and ignored: a record file holds the images themselves
            rec = source.with_suffix(".rec").name
            raise UserError(f"--root applies to a .lst (the folder its paths are relative to); {rec} holds its "
                            f"images: leave it out")
        if out is not None:
            refuse_output_over_inputs(out, [source.with_suffix(".rec"), source.with_suffix(".idx"), *companions])
            refuse_replacing(out, _is_mean_file, "a mean file")
        rf = RecordFile.open(source.with_suffix(".rec"))
        n = len(rf)
        step = max(1, min(256, n // (workers * 4) or 1))
        tasks = [(str(rf.path), s, min(n, s + step)) for s in range(0, n, step)]
        with _pool(ctx, min(workers, max(1, len(tasks))), rf) as pool:  # never more processes than work
            done = 0
            for total, k, bad in pool.imap(_record_means, tasks):
                sums += total
                count += k
                skipped += bad
                done += k + len(bad)
                if progress is not None:
                    progress(done, n)
    else:
        from deepvision.datasets.im2rec import read_list_lenient

        items, problems = read_list_lenient(source)
        skipped += [(where, reason) for where, _, reason in problems]
        base = str(root) if root is not None else str(source.parent)
        paths = [os.path.join(base, it.path) for it in items]
        if out is not None:
            refuse_output_over_inputs(out, [source, *paths, *companions])
            refuse_replacing(out, _is_mean_file, "a mean file")
        _check_base(source, base, root, paths)
        chunk = max(1, min(32, len(paths) // (workers * 8) or 1))
        with _pool(ctx, min(workers, max(1, len(paths))), None) as pool:
            for done, (means, reason) in enumerate(pool.imap(_file_means, paths, chunksize=chunk), 1):
                if means is None:
                    skipped.append((items[done - 1].path, reason))
                else:
                    sums += means
                    count += 1
                if progress is not None:
                    progress(done, len(paths))
    if count == 0:
        raise UserError(f"no readable image in {source}"
                        + (f" (first problem: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    r, g, b = (sums / count).tolist()
    return MeanResult(r, g, b, count, skipped, time.perf_counter() - t0)


def _check_base(source: Path, base: str, root: str | Path | None, paths: list[str]) -> None:
    """Fail at once, naming a path tried, when none of the list's first images exist under `base`."""
    sample = paths[:20]
    if not sample or any(os.path.exists(p) for p in sample):
        return
    where = "the list's folder" if root is None else "--root"
    hint = ("pass --root DIR, the image folder the list's paths start from (the ROOT given to "
            "`im2rec --list PREFIX ROOT`)" if root is None else "check --root")
    raise UserError(f"the images of {source} are not under {base} ({where}): {sample[0]} does not exist; {hint}")


@contextlib.contextmanager
def _pool(ctx, workers: int, record_file: RecordFile | None):
    if workers == 1:
        yield _Serial(record_file)
        return
    pool = None
    try:
        with stops_held(), forking_cv2():  # a stop as the workers start waits for the pool, which the finally stops
            pool = ctx.Pool(workers, initializer=_init, initargs=(record_file, True))
        yield pool
    finally:  # within bounded waits: a worker a signal ended may hold a queue's lock that terminate() waits for
        if pool is not None:
            stop_pool(pool, wait=1.0)


class _Serial:
    """The Pool interface, in process (workers=1)."""

    def __init__(self, record_file: RecordFile | None) -> None:
        _init(record_file)

    def imap(self, fn, items, chunksize: int = 1):
        return map(fn, items)


def _is_mean_file(path: Path) -> bool:
    return begins_with(path, '{"R":')  # what write_mean_json writes: only such a file is replaced


def write_mean_json(path: str | Path, means: MeanResult | dict[str, float]) -> Path:
    """Write the mean file (atomically) and return its path."""
    d = means.to_dict() if isinstance(means, MeanResult) else {k: float(means[k]) for k in ("R", "G", "B")}
    path = Path(path)
    atomic_write_text(path, json.dumps(d) + "\n")
    return path


def read_mean_json(path: str | Path) -> dict[str, float]:
    """{"R", "G", "B"} from a mean file."""
    r, g, b = read_mean_rgb(path)
    return {"R": r, "G": g, "B": b}
