"""LISA traffic signs: `allAnnotations.csv` (semicolon-separated, one box a row)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from deepvision.datasets.detection.readers.common import count_line, inside, parse_number
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.safeload import input_file, read_text_file


def read_lisa(csv_path: str | Path, classes: list[str] | None) -> Annotations:
    """LISA `allAnnotations.csv`: skip the header, keep the text before the first comma,
    split it on ';' into path, tag, x1, y1, x2, y2. Only rows whose tag is in `classes` are kept (None
    keeps all), and images enter the dataset only through kept rows, as in the reference builder.
    """
    path = Path(csv_path)
    if path.is_dir():
        path = path / "allAnnotations.csv"
    input_file(path, "LISA annotations", " (give the allAnnotations.csv file)")
    lines = read_text_file(path, "LISA annotations").splitlines()
    if not lines or not lines[0].startswith("Filename;"):
        raise UserError(f"{path} does not start with the LISA header 'Filename;Annotation tag;...'")
    wanted = set(classes) if classes is not None else None
    images: dict[str, ImageRecord] = {}
    skipped: Counter = Counter()
    for line_no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split(",")[0].split(";")
        where = f"{path.name} line {line_no}"
        if len(fields) < 6:
            raise UserError(f"{where}: expected 'path;tag;x1;y1;x2;y2;...', got {line[:80]!r}")
        rel, tag = fields[0], fields[1]
        if wanted is not None and tag not in wanted:
            skipped[tag] += 1
            continue
        x1, y1, x2, y2 = (parse_number(v, where, name) for v, name in zip(fields[2:6], ("x1", "y1", "x2", "y2")))
        file = str(inside(path.parent, rel, where).resolve())
        images.setdefault(file, ImageRecord(file)).boxes.append(Box(x1, y1, x2, y2, tag))
    notes = []
    if skipped:
        notes.append(f"skipped {sum(skipped.values()):,} LISA rows of {len(skipped)} tag(s) outside the classes: "
                     f"{count_line(skipped)}")
    return Annotations({"all": list(images.values())}, list(classes) if classes else None, notes, "lisa",
                       inputs=[str(path)], read_from=f"{len(lines) - 1:,} rows of {path}")
