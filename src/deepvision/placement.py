"""Where an output may go: never over an input, never into a folder of images or a folder another command
owns, never replacing a file the command did not write. Every check runs before any work, so a refused
command changes nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.fileio import (
    IMAGE_EXTS,
    file_id,
    linked_folders,
    not_a_folder,
    open_regular_file,
    output_folder,
    same_file,
)


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


def refuse_output_in_input_folders(out: str | Path, inputs: Iterable[str | Path], option: str = "--out",
                                   file: bool = False) -> None:
    """`refuse_output_inside` for every folder among a command's inputs (files and folders of images): the
    outputs, named as the inputs, would be read back as new inputs by the next run over that folder."""
    for item in inputs:
        refuse_output_inside(out, item, "the input folder", option, file)
        for link in linked_folders(item) if os.path.isdir(item) else ():  # read as part of the input folder
            refuse_output_inside(out, link, f"{item}'s linked folder", option, file)


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


@contextlib.contextmanager
def new_output_folder(path: str | Path, option: str = "--out") -> Iterator[Path]:
    """A generator's or builder's new output folder: refused unless new or empty (`require_new_folder`), then
    created for the block; a block that fails (a full disk, a file size limit) or is stopped (Ctrl+C,
    SIGTERM) removes everything it added, so the same command run again is not refused a half-written tree."""
    require_new_folder(path, option)
    with output_folder(path, discard_on_failure=True) as folder:
        yield folder


def begins_with(path: str | Path, start: str) -> bool:
    """Whether the regular file `path` begins with `start`, whitespace ignored: how a command knows a table
    it wrote before (a CSV header, a JSON document's first key)."""
    try:
        with open_regular_file(path) as f:
            head = "".join(f.read(256).decode("utf-8", "replace").split())
    except OSError:
        return False
    return head.startswith("".join(start.split()))


def figure_options(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Extra `savefig` arguments: a JPEG carries a comment naming matplotlib (PNG, SVG and PDF name it
    themselves), so `drawn_by_matplotlib` knows the figure when a later run would replace it; with `kind`
    (the command that draws it, "runs compare") the figure also names it, for `drawn_as`."""
    mark = f"deepvision {kind}" if kind else ""
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        return {"pil_kwargs": {"comment": f"Matplotlib figure; {mark}".encode()}}
    return {"metadata": {"Title": mark}} if mark else {}


def drawn_as(kind: str) -> Callable[[Path], bool]:
    """Whether a file is a figure `kind` drew (`figure_options(path, kind)`): the one figure that command
    may replace, never another command's (a run's confusion matrix, its accuracy plot)."""
    return lambda path: _marked(path, f"deepvision {kind}".encode())


def refuse_figure_among_images(path: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, a figure written into a folder holding images that are not figures (a data
    set's class folder): the next build or training would read it as an image of that class."""
    path = Path(path)
    if os.path.lexists(path.parent / "run.json"):  # a run folder's sample images are no data set
        return
    for name in images_in(path.parent, [path.name]):
        if not drawn_by_matplotlib(path.parent / name):
            raise UserError(f"{option} {path} would be drawn among the images of {path.parent} ({name}, ...); a "
                            f"figure there joins them as data: choose another folder")


def images_in(folder: str | Path, own: Iterable[str] = ()) -> list[str]:
    """The names of the image files directly in `folder` (sorted), but those named in `own`."""
    folder, own = Path(folder), set(own)
    return sorted(p.name for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTS and p.name not in own
                  and p.is_file()) if folder.is_dir() else []


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
    return _marked(path, b"atplotlib")


def _marked(path: str | Path, mark: bytes) -> bool:
    """Whether `mark` is in the first or last 4 kB of the regular file `path` (where figures keep their text)."""
    try:
        with open_regular_file(path) as f:
            head = f.read(4096)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read(4096)
    except OSError:
        return False
    return mark in head or mark in tail


def refuse_replacing(path: str | Path, ours: Callable[[Path], bool], what: str, option: str = "--out") -> None:
    """Refuse, before any work, an output file that exists and is not `what` (`ours(path)` False): a file
    named by mistake (a data set's photo, an annotation file) would be replaced by this command's output."""
    path = Path(path)
    if os.path.lexists(path) and not (path.is_file() and ours(path)):
        raise UserError(f"{option} {path} exists and is not {what}; choose a new file name (only {what} is "
                        f"replaced)")


def require_own_folder(path: str | Path, marker: str, start: str, command: str, option: str = "--out",
                       inputs: Iterable[str | Path] = ()) -> None:
    """Refuse, before anything is written, an output folder that an earlier `command` did not write: it must
    be new, empty (but for the command's own `inputs`, which it never writes over), or hold that command's
    `marker` table (beginning with `start`), whose outputs are then replaced name by name. In any other
    folder the outputs, named after the inputs, would replace the user's files (a data set's photos by
    annotated copies) or mix with another command's report."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise UserError(f"{option} {not_a_folder(path, 'folder')}")
    own = {file_id(p) for p in inputs} - {None}
    try:  # the litter file browsers leave (.DS_Store, Thumbs.db) does not make a folder the user's
        held = [n for n in os.listdir(path) if n not in (".DS_Store", "Thumbs.db", "desktop.ini")
                and file_id(path / n) not in own]
    except OSError as exc:
        raise UserError(f"{option} {path} cannot be read: {exc.strerror or exc}") from None
    if held and not begins_with(path / marker, start):
        raise UserError(f"{option} {path} holds files but no {marker} of an earlier {command} (a run stopped before "
                        f"writing it leaves none); its outputs could replace them: choose a new or empty folder")


def listed_in(table: Path, key: str) -> list[str]:
    """The file names an earlier command's JSON table lists under `key` (its outputs); none when the table
    is absent or damaged, so that nothing of the folder counts as the command's own."""
    from deepvision.safeload import read_json

    try:
        doc = read_json(table, f"an earlier {table.name}")
    except (FileNotFoundError, UserError):
        return []
    listed = doc.get(key) if isinstance(doc, dict) else None
    return [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []


def refuse_unlisted(out: str | Path, targets: Iterable[Path], listed: Iterable[str], marker: str, command: str,
                    option: str = "--out") -> None:
    """Refuse, before anything is written, to replace a file of an earlier `command`'s folder that its
    `marker` table does not list among its outputs (`listed`: file names): a file put there since, such as
    the user's own photo named like an input, is not the command's to replace."""
    listed, out = set(listed), Path(out)
    for target in targets:  # listed by their path under `out` ("photo/input.png"; a name where directly in it)
        name = target.relative_to(out).as_posix() if target.is_relative_to(out) else target.name
        if os.path.lexists(target) and name not in listed:
            raise UserError(f"{option} {out} holds {name}, which its {marker} does not list as an output of "
                            f"the earlier {command}; it would be replaced: move it or choose a new or empty folder")


def replace_only_own(out: str | Path, targets: Iterable[Path], listed: Iterable[str], marker: str, start: str,
                     command: str, *, list_marker: str | None = None, option: str = "--out") -> None:
    """Both rules of a command that writes into a folder of its own: the folder is new, empty or an earlier
    `command`'s (`require_own_folder`), and of its files only those its table lists are replaced
    (`refuse_unlisted`; `list_marker`: the table holding the list, when it is not `marker`)."""
    require_own_folder(out, marker, start, command, option)
    refuse_unlisted(out, targets, listed, list_marker or marker, command, option)


def require_new_file(path: str | Path, option: str = "--out") -> None:
    """Refuse, before anything is written, an output file of a generator that already exists (or is a
    link): a fake data set never replaces a file, real data least of all."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise UserError(f"{option} {path} already exists; a generator never replaces a file, so choose a "
                        f"new name")
