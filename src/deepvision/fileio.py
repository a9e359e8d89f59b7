"""Files in and out: writes that readers never see half done (`atomic_path`: a temporary file beside the
target, then rename), regular-file reads that cannot hang on a FIFO, and torch files read safely.

Why one module of ~520 lines: the architecture tests hold every rename and every torch.load to this file,
so the project's writes and its one unpickling site can be read in one place; the rules on where an
output may go (never over an input, into a folder another command owns or a folder of images) sit
beside them because they decide what those writes may replace."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from deepvision.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # what Pillow and OpenCV both read


def file_mode() -> int:
    """The permission bits a newly created file gets under the current umask (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file: the same inode when both exist (hard links, symlinks,
    `..` detours), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def file_id(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names, links followed: two paths with one id are one file. None
    when nothing is there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def refuse_output_over_inputs(out: str | Path, inputs: Iterable[str | Path], option: str = "--out") -> None:
    """Refuse, before anything is read or written, an output file that is one of the command's inputs
    (writing it would destroy the data the command reads). Compared by inode, so links and `..`
    detours are caught; an output that does not exist yet cannot be an input."""
    target = file_id(out)
    if target is None:
        return
    for item in inputs:
        if file_id(item) == target:
            raise UserError(f"{option} {out} is an input of this command ({item}) and would be overwritten; "
                            f"choose another output file")


def refuse_output_folder_over_inputs(out_dir: str | Path, inputs: Iterable[str | Path],
                                     targets: Iterable[str | Path] = (), option: str = "--out") -> None:
    """Refuse, before anything is written, an output folder that holds the command's inputs (the folder
    of an input file), or whose output files `targets` are inputs (compared by inode, so links and `..`
    detours are caught): writing there would replace the photos the command reads, or mix its outputs
    into them for the next run."""
    inputs = list(inputs)
    if os.path.isdir(out_dir):
        for item in inputs:
            if same_file(Path(item).parent, out_dir):
                raise UserError(f"{option} {out_dir} holds the input {item}; its outputs would replace or mix "
                                f"with the inputs, so choose another folder")
    for target in targets:
        try:
            refuse_output_over_inputs(target, inputs, option)
        except UserError:
            raise UserError(f"{option} {out_dir} would overwrite an input with {target}; choose another "
                            f"folder") from None


def refuse_mixed_reports(out_dir: str | Path, foreign: Iterable[str], other: str, option: str = "--out") -> None:
    """Refuse, before any work, an output folder holding another command's report (`foreign`: file names
    only that command writes): the files both write (metrics.json, report.csv, ...) would be replaced and
    the rest left, two half reports in one folder."""
    found = next((name for name in foreign if os.path.lexists(Path(out_dir) / name)), None)
    if found is not None:
        raise UserError(f"{option} {out_dir} holds {found}, part of {other}; this report would replace some of "
                        f"its files and leave the rest: choose another folder")


def enclosing(target: Path, folders: Iterable[Path]) -> Path | None:
    """The outermost of `folders` that is `target` or holds it (links followed), else None."""
    target = target.resolve()
    found = [f for f in folders if target.is_relative_to(f.resolve())]
    return min(found, key=lambda f: len(f.resolve().parts)) if found else None


def refuse_output_inside(out: str | Path, folder: str | Path, what: str, option: str = "--out",
                         file: bool = False) -> None:
    """Refuse, before anything is written, an output folder inside (or equal to) an input folder: its files
    would join the inputs (a report's PNGs counted as images of a class by the next run). `file`: `out`
    is an output file (a predictions CSV), refused inside the folder likewise."""
    if os.path.isdir(folder) and enclosing(Path(out), [Path(folder)]) is not None:
        if file:
            raise UserError(f"{option} {out} is inside {what} {folder}; the next command over that folder would "
                            f"read it as an input, so write it outside the folder")
        raise UserError(f"{option} {out} is inside {what} {folder}; its files would be read as part of it next "
                        f"time, so choose a folder outside it")


def distinct_stems(paths: Iterable[str | Path]) -> list[str]:
    """A name per input for the outputs made from it: the file's stem (`face` for face.jpg), or its whole
    name (`face.jpg`) when another input has the same stem (face.jpg and face.png), so that no output
    replaces another's."""
    paths = [Path(p) for p in paths]
    stems = [p.name if p.stem in ("", ".", "..") else p.stem for p in paths]  # "..png": no folder name of its own
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    names = [stem if counts[stem] == 1 else p.name for p, stem in zip(paths, stems)]
    taken = set(names)
    out: list[str] = []
    used: set[str] = set()
    for name in names:  # the same name from different folders: _1, _2, ... in input order
        candidate, k = name, 1
        while candidate in used or candidate != name and candidate in taken:
            candidate, k = f"{name}_{k}", k + 1
        used.add(candidate)
        out.append(candidate)
    return out


def require_new_folder(path: str | Path, option: str = "--out") -> None:
    """Refuse, before anything is written, an output folder that already holds something (or is a file
    or a dangling link): a generator writing fixed names there would replace files it did not make."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) or path.is_symlink() and not path.exists():
        raise UserError(f"{option} {path} already exists and is not empty; a generator would overwrite "
                        f"what is there, so choose a new folder")


def begins_with(path: str | Path, start: str) -> bool:
    """Whether the regular file `path` begins with `start`, whitespace ignored: how a command knows a table
    it wrote before (a CSV header, a JSON document's first key)."""
    try:
        with open_regular_file(path) as f:
            head = "".join(f.read(256).decode("utf-8", "replace").split())
    except OSError:
        return False
    return head.startswith("".join(start.split()))


def figure_options(path: str | Path) -> dict[str, Any]:
    """Extra `savefig` arguments: a JPEG carries a comment naming matplotlib (PNG, SVG and PDF name it
    themselves), so `drawn_by_matplotlib` knows the figure when a later run would replace it."""
    return {"pil_kwargs": {"comment": b"Matplotlib figure"}} if Path(path).suffix.lower() in (".jpg", ".jpeg") else {}


def images_in(folder: str | Path, own: Iterable[str] = ()) -> list[str]:
    """The names of the image files directly in `folder` (sorted), but those named in `own`."""
    folder, own = Path(folder), set(own)
    return sorted(p.name for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTS and p.name not in own) \
        if folder.is_dir() else []


def refuse_folder_of_images(out_dir: str | Path, own: Iterable[str], option: str = "--out") -> None:
    """Refuse a report folder holding images other than the report's own PNGs (`own`): a data set's class
    folder, whose next build or training would read the report's figures as images of that class."""
    held = images_in(out_dir, own)
    if held:
        raise UserError(f"{option} {out_dir} holds images ({held[0]}, ...); the report's figures would join them as "
                        f"data: choose another folder")


def drawn_by_matplotlib(path: str | Path) -> bool:
    """Whether an image file names matplotlib in its first or last 4 kB (PNG's Software text, SVG's comment,
    PDF's Creator): a figure a plotting command drew, which the next run may replace."""
    try:
        with open_regular_file(path) as f:
            head = f.read(4096)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read(4096)
    except OSError:
        return False
    return b"atplotlib" in head or b"atplotlib" in tail


def refuse_replacing(path: str | Path, ours: Callable[[Path], bool], what: str, option: str = "--out") -> None:
    """Refuse, before any work, an output file that exists and is not `what` (`ours(path)` False): a file
    named by mistake (a data set's photo, an annotation file) would be replaced by this command's output."""
    path = Path(path)
    if os.path.lexists(path) and not (path.is_file() and ours(path)):
        raise UserError(f"{option} {path} exists and is not {what}; choose a new file name (only {what} is "
                        f"replaced)")


def require_own_folder(path: str | Path, marker: str, start: str, command: str, option: str = "--out") -> None:
    """Refuse, before anything is written, an output folder that an earlier `command` did not write: it must
    be new, empty, or hold that command's `marker` table (beginning with `start`), whose outputs are then
    replaced name by name. In any other folder the outputs, named after the inputs, would replace the
    user's files (a data set's photos by annotated copies) or mix with another command's report."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise UserError(f"{option} {not_a_folder(path, 'folder')}")
    try:  # the litter file browsers leave (.DS_Store, Thumbs.db) does not make a folder the user's
        held = [n for n in os.listdir(path) if n not in (".DS_Store", "Thumbs.db", "desktop.ini")]
    except OSError as exc:
        raise UserError(f"{option} {path} cannot be read: {exc.strerror or exc}") from None
    if held and not begins_with(path / marker, start):
        raise UserError(f"{option} {path} holds files but no {marker} of an earlier {command} (a run stopped before "
                        f"writing it leaves none); its outputs could replace them: choose a new or empty folder")


def require_new_file(path: str | Path, option: str = "--out") -> None:
    """Refuse, before anything is written, an output file of a generator that already exists (or is a
    link): a fake data set never replaces a file, real data least of all."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise UserError(f"{option} {path} already exists; a generator never replaces a file, so choose a "
                        f"new name")


def unlink_quietly(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def move(src: str | Path, dst: str | Path) -> None:
    """Rename `src` to `dst` in one step on one file system (a finished folder into place, a file aside);
    an OSError becomes a one-line UserError naming both."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise UserError(f"could not move {src} to {dst}: {exc.strerror or exc}") from None


def write_failed(path: str | Path, exc: OSError) -> UserError:
    """The one-line error for a failed atomic write of `path` (the temporary file is already gone)."""
    kept = "; the previous file is intact" if Path(path).exists() else ""
    return UserError(f"could not write {path}: {exc.strerror or exc}{kept}")


@contextlib.contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Create folder `path` (and its missing parents) for one command's outputs. When the block fails, the
    folders the command made and left empty are removed again (deepest first): sub-folders it made
    inside `path` (`images/cat/` of a build that failed before its first image), then `path` and the
    parents this call created. A folder that existed before is kept, as is every file and every folder
    holding one, so a failed or refused build leaves no empty `--out` tree and never loses anything."""
    path = Path(path)
    created = []
    for folder in [path, *path.parents]:
        if folder.exists() or folder.is_symlink():
            break
        created.append(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        before = set() if created else set(os.listdir(path))
    except OSError as exc:
        raise UserError(f"could not create the folder {path}: {exc.strerror or exc}") from None
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            for name in sorted(set(os.listdir(path)) - before):
                _remove_empty_folders(path / name)
        for folder in created:  # deepest first; rmdir refuses a folder that is not empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _remove_empty_folders(top: Path) -> None:
    """Remove `top` and the folders below it that hold nothing but empty folders (links never followed,
    files never touched: rmdir refuses a folder that is not empty)."""
    if top.is_symlink() or not top.is_dir():
        return
    for folder, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def output_subfolder(out: str | Path, relative: str | Path, option: str = "--out") -> Path:
    """Create folder `out/relative` (and `out` with its missing parents) for a command's outputs; returns it.

    `out` itself may be a link: the user named it. A link planted at a folder below it is refused, never
    followed: what the command writes there would land in a folder elsewhere (links planted at file
    names are replaced by the rename of `atomic_path`). A file where a folder goes is refused too."""
    out = Path(out)
    relative = Path(relative)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{relative} is not a folder below {out}")
    folder = out
    try:
        out.mkdir(parents=True, exist_ok=True)
        for part in relative.parts:
            folder = folder / part
            if not folder.is_symlink():
                with contextlib.suppress(FileExistsError):
                    folder.mkdir()
            if folder.is_symlink():  # after mkdir: a link planted in between is caught as well
                raise UserError(f"{option} {out}: {folder} is a link; deepvision never writes through a link "
                                f"inside an output folder: remove it or choose another {option}")
            if not folder.is_dir():
                raise UserError(f"{option} {out}: {folder} is a file where a folder goes: move it or choose "
                                f"another {option}")
    except OSError as exc:
        raise UserError(f"could not create the folder {folder}: {exc.strerror or exc}") from None
    return folder


def md5_of(path: str | Path) -> str:
    """The MD5 hex digest of a file, read in 1 MiB blocks (checksums of downloaded datasets)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary file renamed into place, with the usual permissions.

    A failure (a full disk, a read-only folder) raises UserError and leaves any previous file intact.
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def zip_damage(path: str | Path) -> str | None:
    """For a zip file (torch.save's format): the first member whose CRC does not match, or the reason
    the archive cannot be read; None when it is intact or not a zip file at all."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return f"CRC mismatch in {bad}" if bad else None


def input_file(path: str | Path, what: str = "file", hint: str = "") -> Path:
    """`path` if it names a regular file; UserError "WHAT not found: PATH" when nothing is there, and
    "WHAT PATH is a FIFO (a directory, ...), not a regular file" otherwise, without opening it."""
    path = Path(path)
    try:
        kind = special_kind(os.stat(path).st_mode)
    except (OSError, ValueError):
        raise UserError(f"{what} not found: {path}{hint}") from None
    if kind is not None:
        raise UserError(f"{what} {path} is {kind}, not a regular file{hint}")
    return path


def read_torch_file(path: str | Path, kind: str, fix: str, map_location: Any = "cpu") -> Any:
    """The object in a torch.save file, read with weights_only=True (nothing is unpickled). A missing file, a
    damaged zip (CRC checked first) or anything torch cannot read is a one-line UserError naming the file as
    `kind` ("checkpoint", "weights file") and saying what to do (`fix`)."""
    import torch

    path = input_file(path, kind)  # a FIFO is named as one, never opened
    damage = zip_damage(path)
    if damage:
        raise UserError(f"{path} is corrupt ({damage}); {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for garbage input
        # a pickled object (torch names the GLOBAL it blocked): torch's own advice would be the unsafe load
        if "GLOBAL" in str(exc) and str(exc).startswith("Weights only load failed"):
            raise UserError(f"{path} holds Python objects besides tensors (pickled code, which deepvision never "
                            f"runs); refused; {fix}") from None
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a readable {kind} ({reason}); {fix}") from None


class CommitOnExit:
    """`with` support for a writer whose close() commits what it wrote and abort() discards it: the block
    commits when it ends normally and discards on an exception."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PendingFile:
    """A new file that replaces `path` only when it is complete: `tmp` is a temporary file beside `path` (same
    file system, hidden name ending in `suffix`) to write by any means; `commit()` flushes it to disk, gives
    it the usual permissions and renames it over `path` in one step; `discard()` removes it. A failure is a
    one-line UserError naming `path` (with `hint` appended) and leaves `path` untouched. For writers that
    stay open across calls (record files, HDF5); `atomic_path` is the same for one block of code."""

    def __init__(self, path: str | Path, suffix: str = ".tmp", hint: str = "") -> None:
        self.path, self.hint = Path(path), hint
        try:
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=suffix)
            os.close(fd)
        except OSError as exc:
            raise UserError(f"could not write {self.path}: {exc.strerror or exc}{hint}") from None
        self.tmp = Path(name)

    def commit(self) -> None:
        try:
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(self.tmp, file_mode())
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.failed(exc)

    def discard(self) -> None:
        unlink_quietly(self.tmp)

    def failed(self, exc: OSError) -> None:
        """Discard the file and raise the one-line error for `exc`."""
        self.discard()
        raise UserError(f"{write_failed(self.path, exc)}{self.hint}") from None


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", hint: str = "") -> Iterator[Path]:
    """The one way deepvision replaces a file: yields a temporary path beside `path` (`PendingFile`); when
    the block ends normally the file is renamed over `path`. On any error the temporary file is removed and
    `path` is untouched; an OSError becomes a one-line UserError naming `path`."""
    pending = PendingFile(path, suffix, hint)
    try:
        yield pending.tmp
    except OSError as exc:
        pending.failed(exc)
    except BaseException:
        pending.discard()
        raise
    pending.commit()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """`atomic_write_text` for bytes: temporary file beside `path`, then rename; UserError on failure."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_kind(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ("a FIFO", ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def not_a_folder(path: str | Path, what: str) -> str:
    """Why `path`, which is no folder, cannot be the `what` ("run directory") asked for: a file or a
    FIFO is named for what it is, never called missing."""
    try:
        kind = special_kind(os.stat(path).st_mode) or "a file"
    except OSError:
        return f"{what} not found: {path}"
    return f"{path} is {kind}, not a {what}"


def open_regular_file(path: str | Path) -> BinaryIO:
    """Open a regular file for reading. A FIFO, device, socket or directory raises OSError ("not a
    regular file: a FIFO") at once instead of blocking or reading forever (the file is opened
    non-blocking and checked with fstat, so a path swapped for a FIFO after a check is caught too)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        kind = special_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_regular_text(path: str | Path, encoding: str = "utf-8-sig", newline: str | None = "") -> TextIO:
    """`open_regular_file` for text: a FIFO or device raises OSError at once, never blocks. UTF-8 by
    default, a leading byte-order mark dropped (Excel's 'CSV UTF-8' writes one)."""
    return io.TextIOWrapper(open_regular_file(path), encoding=encoding, newline=newline)


def read_regular_file(path: str | Path) -> bytes:
    """The bytes of a regular file (see `open_regular_file`)."""
    with open_regular_file(path) as f:
        return f.read()


def check_jpeg_quality(quality: Any, option: str = "--quality") -> int:
    """`quality` if it is a JPEG quality, a whole number 1-100 (libjpeg clamps anything else without a
    word); UserError naming `option` otherwise. Every command that writes JPEGs checks it here."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UserError(f"{option} must be 1-100 for JPEG, got {quality}")
    return quality


def write_image(path: str | Path, bgr: Any) -> None:
    """Encode an OpenCV BGR (or gray) array in the format of `path`'s suffix and write it atomically (a
    temporary file, then rename: never half a picture under the final name)."""
    import cv2  # imported on first use

    suffix = Path(path).suffix or ".png"
    try:
        ok, buf = cv2.imencode(suffix, bgr)
    except cv2.error:  # a suffix OpenCV has no encoder for
        ok = False
    if not ok:
        raise UserError(f"could not encode {path} as {suffix}")
    atomic_write_bytes(path, buf.tobytes())
