"""LISA traffic signs: `allAnnotations.csv` (semicolon-separated, one box a row)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from deepvision.datasets.detection.readers.common import count_line, inside, parse_number
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.safeload import input_file, printable, read_text_file

COLUMNS = ("Filename", "Annotation tag", "Upper left corner X", "Upper left corner Y", "Lower right corner X",
           "Lower right corner Y")  # path, tag, x1, y1, x2, y2


def _columns(header: str, path: Path) -> list[int]:
    """The positions of `COLUMNS` in the header (names compared without surrounding spaces or case): a header
    lacking one, or naming one twice, is refused naming it, never read by position."""
    names = [name.strip().casefold() for name in header.split(";")]
    for column in COLUMNS:
        if names.count(column.casefold()) != 1:
            how = "lacks" if column.casefold() not in names else "names twice"
            raise UserError(f"{path} {how} the LISA column '{column}' in its header (first line "
                            f"'{printable(header[:80])}'); its header names the columns "
                            f"'{';'.join(COLUMNS)};...' in any order")
    return [names.index(column.casefold()) for column in COLUMNS]


def read_lisa(csv_path: str | Path, classes: list[str] | None) -> Annotations:
    """LISA `allAnnotations.csv`: ';'-separated rows whose path, tag and corners are the columns the header
    names (`COLUMNS`, in any order). Only rows whose tag is in `classes` are kept (None keeps all), and
    images enter the dataset only through kept rows, as in the reference builder.
    """
    path = Path(csv_path)
    if path.is_dir():
        path = path / "allAnnotations.csv"
    input_file(path, "LISA annotations", " (give the allAnnotations.csv file)")
    lines = read_text_file(path, "LISA annotations").splitlines()
    at = _columns(lines[0] if lines else "", path)
    wanted = set(classes) if classes is not None else None
    images: dict[str, ImageRecord] = {}
    skipped: Counter = Counter()
    for line_no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split(";")
        where = f"{path.name} line {line_no}"
        if len(fields) <= max(at):
            raise UserError(f"{where}: expected {max(at) + 1} or more ';'-separated fields (the header's), got "
                            f"{line[:80]!r}")
        rel, tag = fields[at[0]], fields[at[1]]
        if wanted is not None and tag not in wanted:
            skipped[tag] += 1
            continue
        x1, y1, x2, y2 = (parse_number(fields[i], where, name) for i, name in zip(at[2:], ("x1", "y1", "x2", "y2")))
        file = str(inside(path.parent, rel, where).resolve())
        images.setdefault(file, ImageRecord(file)).boxes.append(Box(x1, y1, x2, y2, tag))
    notes = []
    if skipped:
        notes.append(f"skipped {sum(skipped.values()):,} LISA rows of {len(skipped)} tag(s) outside the classes: "
                     f"{count_line(skipped)}")
    return Annotations({"all": list(images.values())}, list(classes) if classes else None, notes, "lisa",
                       inputs=[str(path)], read_from=f"{len(lines) - 1:,} rows of {path}")
