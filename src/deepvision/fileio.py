"""Files in and out: writes that readers never see half done (`atomic_path`: a temporary file beside the
target, then rename; `written_whole`: a report or a folder of drawings moved into place at the end),
regular-file reads that cannot hang on a FIFO, and torch files read safely.

The rules on where an output may go (never over an input, into a folder another command owns or a
folder of images) are `deepvision.placement`.

Why one module of ~540 lines: the architecture tests hold every rename and every torch.load to this file,
so the project's writes and its one unpickling site can be read in one place."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from deepvision.errors import UserError, chained_stop

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


def walk_folders(top: str | Path, root: str | Path | None = None, hidden: bool = True
                 ) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk(top)` (folder, sub-folders, other entries), sub-folders sorted, linked folders followed, as
    Ultralytics' recursive glob and im2rec do: a folder met on the walk is a folder, linked or not, never left
    out without a word. A link that makes the walk reach one folder twice (a loop back to its own ancestor, or a
    second way to a folder read already: its files would be read twice) is refused naming the link, and with
    `root` (a dataset's folder) so is a link leading outside root (the dataset would not be whole without what
    lies outside it). Without `hidden`, hidden folders are not entered."""
    top = Path(top)
    real_top, real_root = top.resolve(), Path(root).resolve() if root is not None else None
    seen: dict[tuple[int, int] | None, Path] = {file_id(top): top}
    for here, dirs, files in os.walk(top, followlinks=True):
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
        for name in dirs:
            sub = Path(here, name)
            if os.path.islink(sub):
                target = sub.resolve()
                if real_top.is_relative_to(target):
                    raise UserError(f"{sub} is a link to {target}, which holds {top}: following it would never "
                                    f"end; remove the link")
                if real_root is not None and not target.is_relative_to(real_root):
                    raise UserError(f"{sub} is a link to {target}, outside the dataset folder {root}; move that "
                                    f"folder into {root}, or copy it there in place of the link")
            first = seen.setdefault(file_id(sub), sub)
            if first != sub:
                link = sub if os.path.islink(sub) else first
                raise UserError(f"{sub} and {first} are one folder ({link} is a link): its files would be read "
                                f"twice; remove the link")
        yield here, dirs, files


def tree_entries(top: str | Path, root: str | Path | None = None, hidden: bool = True) -> list[Path]:
    """Everything under `top` at every level that is not a folder, sorted, reached through `top`'s paths and
    its linked folders (see `walk_folders`)."""
    return sorted(Path(here, name) for here, _, files in walk_folders(top, root, hidden) for name in files)


def linked_folders(top: str | Path) -> list[Path]:
    """The linked folders under `top` (hidden folders not entered) that a walk of it follows."""
    return [Path(here, d) for here, dirs, _ in walk_folders(top, hidden=False) for d in dirs
            if os.path.islink(Path(here, d))]


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


# the hidden folders a command writes into before its outputs move into place: `written_whole`'s
# `.partial-XXXXXXXX` inside --out, an import's `.NAME.import-XXXXXXXX` beside it (tempfile's 8 characters)
_WORK_FOLDER = re.compile(r"(?<![^/\s'\"])\.partial-[a-z0-9_]{8}/")
_IMPORT_FOLDER = re.compile(r"(?<![^/\s'\"])\.([^/\s]+)\.import-[a-z0-9_]{8}(?=/|[\s:;,'\"]|$)")


def public_names(text: str) -> str:
    """`text` (a message) with every path into a command's hidden work folder named where the file will
    land: "could not write out/.partial-ab12cd34/sheet.png" says "out/sheet.png", as the user gave it."""
    return _IMPORT_FOLDER.sub(r"\1", _WORK_FOLDER.sub("", text))


def write_failed(path: str | Path, exc: OSError) -> UserError:
    """The one-line error for a failed atomic write of `path` (the temporary file is already gone)."""
    kept = "; the previous file is intact" if Path(path).exists() else ""
    return UserError(f"could not write {path}: {exc.strerror or exc}{kept}")


@contextlib.contextmanager
def output_folder(path: str | Path, discard_on_stop: bool = False, discard_on_failure: bool = False) -> Iterator[Path]:
    """Create folder `path` (and its missing parents) for one command's outputs. When the block fails, the
    folders the command made and left empty are removed again (deepest first): sub-folders it made
    inside `path` (`images/cat/` of a build that failed before its first image), then `path` and the
    parents this call created. A folder that existed before is kept, as is every file and every folder
    holding one, so a failed or refused build leaves no empty `--out` tree and never loses anything.
    With `discard_on_stop`, a stop (Ctrl+C, SIGTERM) also removes the files and folders the block added
    at the top of `path`: a half-written output that the same command, run again, would refuse; with
    `discard_on_failure`, any failure does (a full disk: a generator's half-written tree)."""
    path = Path(path)
    created = missing_folders(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        before = set() if created else set(os.listdir(path))
    except OSError as exc:
        raise UserError(f"could not create the folder {path}: {exc.strerror or exc}") from None
    try:
        yield path
    except BaseException as exc:
        with contextlib.suppress(OSError):
            for name in sorted(set(os.listdir(path)) - before):  # a stop: also as an ImportError
                if discard_on_failure or discard_on_stop and chained_stop(exc) is not None:
                    _remove_added(path / name)
                _remove_empty_folders(path / name)
        remove_made(created)
        raise


def resolved_paths(paths: Iterable[str | Path]) -> set[str]:
    """The absolute paths with their folders resolved (a folder reached through a link is the folder itself), to
    tell whether two lists name the same files; one `realpath` per folder, not per file."""
    folders: dict[str, str] = {}
    out = set()
    for path in paths:
        head, name = os.path.split(os.path.abspath(path))
        if (real := folders.get(head)) is None:
            real = folders[head] = os.path.realpath(head)
        out.add(os.path.join(real, name))
    return out


def missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist, deepest first: what a mkdir(parents=True) makes."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def remove_made(folders: list[Path]) -> None:
    """Remove the folders a command made (`missing_folders`, deepest first) while they are empty."""
    for folder in folders:  # rmdir refuses a folder that is not empty
        try:
            folder.rmdir()
        except OSError:
            break


def _remove_added(entry: Path) -> None:
    """Remove a file, link or folder tree a stopped command added (links are removed, never followed)."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


def _remove_empty_folders(top: Path) -> None:
    """Remove `top` and the folders below it that hold nothing but empty folders (links never followed,
    files never touched: rmdir refuses a folder that is not empty)."""
    if top.is_symlink() or not top.is_dir():
        return
    for folder, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def written_whole(path: str | Path, last: str | None = None, stale: Iterable[str] = ()) -> Iterator[Path]:
    """Outputs that land in folder `path` together or not at all (a report, a folder of drawings). The block
    writes into a hidden temporary folder inside `path` (its file system, even through a link); when the
    block ends normally, each file there is moved to the same place in `path` (sub-folders made as needed, a
    link planted at one refused), `last` (the table that marks the folder as the command's) last, in one
    step that Ctrl+C and SIGTERM do not cut (`stops_held`), and the names in `stale` that the block did not
    write are removed (an earlier report's files that would mix with this one). On any failure or stop the
    temporary folder goes, `path` holds what it held before, and the folders this call created are removed
    again (`output_folder`)."""
    with output_folder(path) as folder:
        try:
            tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".partial-"))
        except OSError as exc:
            raise UserError(f"could not write to the folder {folder}: {exc.strerror or exc}") from None
        try:
            yield tmp
            with stops_held():
                files = sorted((Path(top, name).relative_to(tmp) for top, _, names in os.walk(tmp) for name in names),
                               key=lambda rel: (rel.as_posix() == last, rel.as_posix()))
                for sub in sorted({rel.parent for rel in files} - {Path(".")}):
                    output_subfolder(folder, sub)  # before any move: a refusal leaves the folder as it was
                for name in set(stale) - {rel.as_posix() for rel in files}:
                    unlink_quietly(folder / name)  # a folder of that name is the user's: unlink leaves it
                for rel in files:
                    move(tmp / rel, folder / rel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Hold Ctrl+C and SIGTERM off for a few steps that must all happen or none (renames, a pool's start): one
    that arrives meanwhile is raised when the block ends. So is a stop that waits for a safe point (the CLI's
    SIGALRM recheck, see `cli.terminate`). Only the main thread handles signals; elsewhere a no-op."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = [signal.SIGINT, signal.SIGTERM] + [signal.SIGALRM] * callable(signal.getsignal(signal.SIGALRM))
    saved = {sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        stops = [sig for sig in arrived if sig != signal.SIGALRM]
        if stops:  # now to its own handler: KeyboardInterrupt, Terminated, or the default
            signal.raise_signal(stops[0])
        if signal.SIGALRM in arrived:
            signal.raise_signal(signal.SIGALRM)


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
    return _digest(path, "md5")


def sha256_of(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks (an ONNX export's external data)."""
    return _digest(path, "sha256")


def _digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | Path, text: str, parents: bool = False) -> None:
    """Write a text file through a temporary file renamed into place, with the usual permissions (`parents`:
    the missing folders above it made, and removed again if the write fails).

    A failure (a full disk, a read-only folder) raises UserError and leaves any previous file intact.
    """
    atomic_write_bytes(path, text.encode("utf-8"), parents)


def repeated_member(zf: Any) -> str | None:
    """The first member name the directory of the open `zipfile.ZipFile` `zf` lists twice, None when each is
    listed once. Readers disagree on such a file (zipfile and numpy take the last member, torch the first),
    so every reader of outside zips refuses it."""
    seen: set[str] = set()
    for name in zf.namelist():
        if name in seen:
            return name
        seen.add(name)
    return None


def zip_damage(path: str | Path) -> str | None:
    """For a zip file (torch.save's format): a member listed twice, the first member whose CRC does not
    match, or the reason the archive cannot be read; None when it is intact or not a zip file at all."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            twice = repeated_member(zf)
            bad = None if twice else zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as exc:
        return str(exc) or type(exc).__name__  # RuntimeError: an encrypted member
    if twice:
        return f"it holds the member {twice!r} twice"
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
    it the usual permissions and renames it over `path` in one step; `discard()` removes it, and with
    `parents` the missing folders above `path` that it created (a stopped `--out new/f.h5` leaves no
    `new/`). A failure is a one-line UserError naming `path` (with `hint` appended) and leaves `path`
    untouched. For writers that stay open across calls (record files, HDF5); `atomic_path` is the same for
    one block of code."""

    def __init__(self, path: str | Path, suffix: str = ".tmp", hint: str = "", parents: bool = False) -> None:
        self.path, self.hint = Path(path), hint
        self.made = missing_folders(self.path.parent) if parents else []
        try:
            with stops_held():  # a stop (a second Ctrl+C stops at once) lands before or after: never a stray file
                if self.made:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=suffix)
                os.close(fd)
                self.tmp = Path(name)
        except OSError as exc:
            remove_made(self.made)
            raise UserError(f"could not write {self.path}: {exc.strerror or exc}{hint}") from None
        except BaseException:  # the stop held meanwhile, raised as the block ends: the new file goes with it
            if hasattr(self, "tmp"):
                self.discard()
            raise

    def commit(self) -> None:
        try:
            with stops_held():  # the file is renamed into place, or left to discard(); a stop waits for either
                with open(self.tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.chmod(self.tmp, file_mode())
                os.replace(self.tmp, self.path)
                self.made = []
        except OSError as exc:
            self.failed(exc)

    def discard(self) -> None:
        unlink_quietly(self.tmp)
        remove_made(self.made)

    def failed(self, exc: OSError) -> None:
        """Discard the file and raise the one-line error for `exc`."""
        self.discard()
        raise UserError(f"{write_failed(self.path, exc)}{self.hint}") from None


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", hint: str = "", parents: bool = False) -> Iterator[Path]:
    """The one way deepvision replaces a file: yields a temporary path beside `path` (`PendingFile`, which
    with `parents` creates the missing folders above it); when the block ends normally the file is renamed
    over `path`. On any error the temporary file (and the folders made for it) is removed and `path` is
    untouched; an OSError becomes a one-line UserError naming `path`."""
    pending = PendingFile(path, suffix, hint, parents)
    try:
        yield pending.tmp
        pending.commit()  # inside: a stop landing just before it still discards the file
    except OSError as exc:
        pending.failed(exc)
    except BaseException:
        pending.discard()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, parents: bool = False) -> None:
    """`atomic_write_text` for bytes: temporary file beside `path`, then rename; UserError on failure."""
    with atomic_path(path, parents=parents) as tmp:
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
