"""im2rec: image folders -> .lst files -> packed .rec/.idx files, a drop-in for MXNet's tools/im2rec.py.

`make_list` (in `listing`, re-exported here) walks an image folder exactly as im2rec.py does (sorted
walk, one label per folder with `recursive`, shuffle with `random.seed(100)`, chunks, train/val/test
ratios), so the same command line writes the same `.lst` files. `pack_list` packs a list: each line
becomes one record, in list order, with the image header (flag, label, id = list index, id2 = 0) and
the image re-encoded after an optional centre crop and short-side resize (or the file's bytes as they
are with `pass_through`).

Differences from im2rec.py, all on the side of robustness: the work is spread over worker processes
(all cores by default); an unreadable image (not an image, truncated, zero bytes) is skipped and listed
with the reason in `PREFIX.skipped.txt` instead of ending the run; palette/alpha PNGs are composited on
white and 16-bit images scaled (EXIF orientation, CMYK and grayscale JPEGs are handled as OpenCV does);
outputs are written to temporary files and renamed when complete.

Why one module of ~435 lines: listing, encoding, the worker pool and its bounded shutdown, and the
lenient list reader are the one packing path; split up, each part would need the others' options.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deepvision.data.imageio import (
    DecodeError,
    check_image_data,
    check_pixels,
    decode_opencv,
    jpeg_truncated,
    read_image_file,
    sniff_format,
)
from deepvision.data.lst import read_list_text
from deepvision.data.records.header import IRHeader, pack_header
from deepvision.data.records.pipeline import forking_cv2
from deepvision.datasets.listing import DEFAULT_EXTS, list_images, make_list, unlistable
from deepvision.datasets.records import RecordWriter, encode_image, frame_record
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, file_id, input_file, stops_held
from deepvision.safeload import check_workers, max_image_side, plain_float, printable, record_index

__all__ = ["DEFAULT_EXTS", "PackItem", "PackOptions", "PackResult", "ProgressReporter", "encode_item",
           "find_lists", "list_images", "make_list", "pack_list", "pack_outputs", "read_list_lenient",
           "refuse_outputs_over_inputs", "skipped_path", "unlistable"]

# -- list reading (lenient, like im2rec.py) ---------------------------------------------------------------
@dataclass(frozen=True)
class PackItem:
    index: int
    path: str
    labels: tuple[float, ...]
    line: int = field(default=0, compare=False)  # the line of the .lst (1-based; 0: not from a list)


FLOAT32_MAX = 3.4028234663852886e38  # the largest label a record's float32 header holds


def read_list_lenient(path: str | Path, unique_index: bool = False
                      ) -> tuple[list[PackItem], list[tuple[str, str, str]]]:
    """Items of a .lst, skipping malformed lines as im2rec.py does; also returns (where, line, reason).
    With `unique_index` (packing: the index is the record's key in the .idx), an index given on two
    lines is a UserError naming both."""
    items, problems = [], []
    seen: dict[int, int] = {}
    for lineno, raw in enumerate(read_list_text(path).splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("\t")]
        shown = line[:200].replace("\t", " ")  # PREFIX.skipped.txt is tab-separated
        if len(parts) < 3:
            problems.append((f"line {lineno}", shown, "expected 'index<TAB>label<TAB>path'"))
            continue
        try:
            index, labels = record_index(parts[0]), tuple(plain_float(v) for v in parts[1:-1])
        except (ValueError, OverflowError):
            problems.append((f"line {lineno}", shown, "the index must be a whole number from 0 to 2**64-1 and "
                                                      "the labels numbers"))
            continue
        if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in labels):  # a record stores float32
            problems.append((f"line {lineno}", shown, "labels must be finite numbers within a 32-bit float's range"))
            continue
        if any(not v.is_integer() and float(np.float32(v)).is_integer() for v in labels):  # 0.99999999 -> 1
            problems.append((f"line {lineno}", shown, "a label the record's 32-bit float would store as a whole "
                                                      "number (a class) is not one; write the class number"))
            continue
        items.append(PackItem(index, parts[-1], labels, lineno))
        if unique_index:
            first = seen.setdefault(items[-1].index, lineno)
            if first != lineno:
                raise UserError(f"{path}: lines {first} and {lineno} both have index {items[-1].index}; "
                                f"each image needs its own index (the record's key in the .idx)")
    return items, problems


# -- encoding one image (runs in worker processes) ----------------------------------------------------------
@dataclass(frozen=True)
class PackOptions:
    """im2rec.py's packing options."""

    root: str = ""
    resize: int = 0
    center_crop: bool = False
    quality: int = 95
    color: int = 1
    encoding: str = ".jpg"
    pass_through: bool = False
    pack_label: bool = False

    def __post_init__(self) -> None:
        ceiling = max_image_side()
        if isinstance(self.resize, bool) or not isinstance(self.resize, int) or not 0 <= self.resize <= ceiling:
            raise UserError(f"--resize must be 0 (keep the size) or a whole number of pixels from 1 to {ceiling:,} "
                            f"(DEEPVISION_MAX_IMAGE_SIDE raises it), got {self.resize}")


def encode_item(options: PackOptions, item: PackItem) -> tuple[bytes | None, str]:
    """(framed record bytes, '') for one list item, or (None, reason) when the image cannot be packed."""
    labels = item.labels
    label: float | list[float] = list(labels) if (len(labels) > 1 and options.pack_label) else labels[0]
    header = IRHeader(0, label, item.index, 0)
    fullpath = os.path.join(options.root, item.path)
    try:
        data = read_image_file(fullpath)  # a FIFO or device named like an image must not block the packer
    except OSError as exc:
        return None, f"cannot read file ({exc.strerror or exc})"
    except DecodeError as exc:  # larger than any image within the pixel limit: never read
        return None, str(exc)
    try:
        if options.pass_through:
            _check_pass_through(data)
            payload = pack_header(header, data)
        else:
            img = decode_opencv(data, options.color)
            if options.center_crop:
                h, w = img.shape[:2]
                if h > w:
                    margin = (h - w) // 2
                    img = img[margin : margin + w]
                else:
                    margin = (w - h) // 2
                    img = img[:, margin : margin + h]
            if options.resize:
                h, w = img.shape[:2]
                new = (options.resize, h * options.resize // w) if h > w else (w * options.resize // h, options.resize)
                if new != (w, h):
                    check_pixels(*new)  # the resized image obeys the pixel limit like a decoded one
                    img = cv2.resize(img, new)  # bilinear, as im2rec.py
            payload = pack_header(header, encode_image(img, options.encoding, options.quality))
    except DecodeError as exc:
        return None, str(exc)
    except (cv2.error, ValueError, MemoryError) as exc:
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
    return frame_record(payload), ""


def _check_pass_through(data: bytes) -> None:
    if not data:
        raise DecodeError("empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise DecodeError("not a recognised image format")
    if fmt == "jpeg" and jpeg_truncated(data):
        raise DecodeError("truncated JPEG (no end-of-image marker)")
    if fmt == "png" and b"IEND" not in data[-12:]:
        raise DecodeError("truncated PNG (no IEND chunk)")
    check_image_data(data)  # stored as is, but decoded by every reader: refuse a decompression bomb now


_OPTIONS: PackOptions | None = None


def _init_worker(options: PackOptions, in_worker: bool = False) -> None:
    global _OPTIONS
    _OPTIONS = options
    if in_worker:
        quiet_pool_worker()


def quiet_pool_worker() -> None:
    """A pool worker's signals: the parent alone reacts to Ctrl+C/SIGTERM, then stops the pool (`stop_pool`).
    Ctrl+C is ignored; SIGTERM unwinds quietly (SystemExit prints nothing), releasing the task queue's lock
    (a worker killed while holding it, waiting for a task, left the pool's terminate() waiting for ever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _encode_task(task: tuple[int, PackItem]) -> tuple[int, bytes | None, str]:
    pos, item = task
    assert _OPTIONS is not None
    framed, reason = encode_item(_OPTIONS, item)
    return pos, framed, reason


# -- packing ---------------------------------------------------------------------------------------------
@dataclass
class PackResult:
    rec: Path
    idx: Path
    packed: int
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (index or line, path, reason)
    seconds: float = 0.0
    nbytes: int = 0  # size of the .rec

    @property
    def skipped_file(self) -> Path:
        return skipped_path(self.rec)

    @property
    def images_per_s(self) -> float:
        return self.packed / self.seconds if self.seconds > 0 else 0.0


def skipped_path(rec: str | Path) -> Path:
    rec = Path(rec)
    return rec.with_name(rec.stem + ".skipped.txt")


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def pack_list(
    lst: str | Path,
    options: PackOptions,
    *,
    rec: str | Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Pack every image of a .lst into REC (default: the list's name with .rec) and its .idx.

    Records follow list order whatever the number of workers. Unreadable images are skipped and
    listed in NAME.skipped.txt (removed when a later run skips nothing). `progress(done, total)` is
    called as images complete.
    """
    lst = Path(lst)
    rec = Path(rec) if rec else lst.with_suffix(".rec")
    workers = check_workers("--num-thread", max(1, workers or os.cpu_count() or 1))
    items, problems = read_list_lenient(lst, unique_index=True)
    _refuse_over(lst, items, options.root, _existing_outputs([rec]))
    _refuse_relabelled(lst, items, options.root)
    if options.pack_label:
        _refuse_mixed_label_counts(lst, items)
    skipped: list[tuple[str, str, str]] = list(problems)
    t0 = time.perf_counter()
    tasks = list(enumerate(items))
    with RecordWriter(rec) as writer:
        pool = None
        try:
            if workers == 1 or len(items) < 2:
                _init_worker(options)
                results: Iterable[tuple[int, bytes | None, str]] = map(_encode_task, tasks)
            else:
                with stops_held(), forking_cv2():  # a stop as the workers start waits for the pool, which is stopped
                    pool = _pool_context().Pool(min(workers, len(items)), initializer=_init_worker,
                                                initargs=(options, True))
                results = pool.imap(_encode_task, tasks, chunksize=max(1, min(16, len(items) // (workers * 8) or 1)))
            for done, (pos, framed, reason) in enumerate(results, 1):
                item = items[pos]
                if framed is None:
                    skipped.append((str(item.index), item.path, reason))
                else:
                    writer.write_framed(framed, item.index)
                if progress is not None:
                    progress(done, len(items))
        finally:
            if pool is not None:
                stop_pool(pool)
        if writer.count == 0:
            writer.abort()
            _write_skipped(rec, skipped)
            raise UserError(f"no image of {lst} could be packed" + (f"; reasons in {skipped_path(rec)}" if skipped
                                                                   else " (the list is empty)"))
        packed, size = writer.count, writer.tell()
    _write_skipped(rec, skipped)
    return PackResult(rec, rec.with_suffix(".idx"), packed, skipped, time.perf_counter() - t0, size)


def stop_pool(pool: multiprocessing.pool.Pool, wait: float = 10.0) -> None:
    """Terminate the pool and join it, within bounded waits. Two ways `terminate()` + `join()` can wait for
    ever: a worker that cannot run Python (stuck on a lock inherited through fork) ignores the SIGTERM it
    is sent, and after an interrupt `terminate()` waits for the task queue's lock, which an idle worker
    holds while it waits for a task. Workers still alive after `wait` seconds are killed; a stop that still
    does not end is left to its daemon thread (the packing is over either way)."""
    def stop() -> None:
        pool.terminate()
        pool.join()

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    stopper.join(wait)
    if stopper.is_alive():
        for worker in list(getattr(pool, "_pool", [])):
            if worker.exitcode is None:
                worker.kill()
        stopper.join(wait)


def pack_outputs(rec: str | Path) -> list[Path]:
    """The files packing writes for record file `rec`: the .rec, its .idx and the list of skipped images."""
    rec = Path(rec)
    return [rec, rec.with_suffix(".idx"), skipped_path(rec)]


def _existing_outputs(recs: Iterable[Path]) -> dict[tuple[int, int], Path]:
    """The packing outputs of `recs` that exist already, by (device, inode)."""
    return {fid: out for rec in recs for out in pack_outputs(rec) if (fid := file_id(out)) is not None}


def _refuse_over(lst: Path, items: list[PackItem], root: str | Path, outputs: dict[tuple[int, int], Path]) -> None:
    if not outputs:
        return  # nothing there yet: no output can be an input
    for path, where in [(lst, ""), *((Path(root, it.path), f" (line {it.line})") for it in items)]:
        fid = file_id(path)
        if fid is not None and fid in outputs:
            raise UserError(f"{outputs[fid]} is an input of {lst}{where} and packing would overwrite it; "
                            f"rename the file or choose another prefix")


def _refuse_relabelled(lst: Path, items: list[PackItem], root: str | Path) -> None:
    """An image listed twice with other labels would be packed as both (the list reader refuses it too);
    compared as the files reached (`./a/0.png`, `a//0.png` and a link are one image)."""
    first: dict[object, PackItem] = {}
    for item in items:
        met = first.setdefault(file_id(Path(root, item.path)) or os.path.normpath(item.path), item)
        if met.labels != item.labels:
            also = "" if met.path == item.path else f" as {met.path}"
            raise UserError(f"{lst}:{item.line}: {item.path} is listed again with other labels (first on line "
                            f"{met.line}{also}); an image has one label")


def _refuse_mixed_label_counts(lst: Path, items: list[PackItem]) -> None:
    """With --pack-label every label of a line is packed: lines with other numbers of labels would make a record
    file the record readers refuse (a classification record file gives every image the same number)."""
    other = next((item for item in items if len(item.labels) != len(items[0].labels)), None)
    if other is not None:
        first = items[0]
        raise UserError(f"{lst} mixes label counts: line {first.line} has {len(first.labels)} label(s), line "
                        f"{other.line} has {len(other.labels)}; --pack-label packs them all and a classification "
                        f"record file gives every image the same number (make the lines agree, or pack without "
                        f"--pack-label to keep the first label)")


def refuse_outputs_over_inputs(lists: Iterable[tuple[Path, Path]], root: str | Path, pack_label: bool = False) -> None:
    """Refuse, before anything is packed, a pack whose outputs (`pack_outputs` of each list's record file)
    are one of its inputs: a .lst, or an image a list names under `root` (compared by inode, so links
    and `..` detours are caught): packing would replace those photos with the record file or its index.
    `lists`: (.lst, record file) pairs; every list is read, so a duplicate index or an image listed
    with two labels is refused here too, and with `pack_label` a list mixing label counts."""
    lists = list(lists)
    outputs = _existing_outputs(rec for _, rec in lists)
    for lst, _ in lists:
        items = read_list_lenient(lst, unique_index=True)[0]
        _refuse_over(lst, items, root, outputs)
        _refuse_relabelled(lst, items, root)
        if pack_label:
            _refuse_mixed_label_counts(lst, items)


def _write_skipped(rec: Path, skipped: list[tuple[str, str, str]]) -> None:
    path = skipped_path(rec)
    if not skipped:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    lines = ["# index\tpath\treason\n"] + [f"{i}\t{p}\t{' '.join(r.split())}\n" for i, p, r in skipped]
    atomic_write_text(path, "".join(lines))


def find_lists(prefix: str | Path) -> tuple[Path, list[Path]]:
    """(working dir, .lst files) im2rec.py packs for PREFIX: every file whose path starts with PREFIX
    and ends in .lst, in the prefix's folder (or in PREFIX itself when it is a folder)."""
    prefix = os.path.abspath(str(prefix))
    working = prefix if os.path.isdir(prefix) else os.path.dirname(prefix)
    if not os.path.isdir(working):
        raise UserError(f"folder not found: {working}")
    names = sorted(os.listdir(working))
    named = [Path(working, n) for n in names if os.path.join(working, n).startswith(prefix) and n.endswith(".lst")]
    # a FIFO, folder or broken link named like a list is refused by name, never skipped as if absent
    return Path(working), [input_file(p, "list file") for p in named]


class ProgressReporter:
    """A rich progress bar on a terminal; otherwise a line every 1,000 images (im2rec.py's log)."""

    def __init__(self, label: str, stream=None, every: int = 1000) -> None:
        self.label, self.every = printable(label), every  # a list's file name: never markup or control codes
        self.stream = stream or sys.stderr
        self._bar = None
        self._task = None
        self._t0 = self._last = time.perf_counter()
        if hasattr(self.stream, "isatty") and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=True)

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            if self._task is None:
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=total, rate="")
            rate = done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, completed=done, rate=f"{rate:.0f} img/s")
        elif done % self.every == 0 or done == total:
            now = time.perf_counter()
            self.stream.write(f"{self.label}: {done}/{total} images, {now - self._last:.2f} s since the last line\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()
