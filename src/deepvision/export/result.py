"""What `deepvision export` returns for every task: the file written and how it compared with PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepvision.export.detection import ParityReport


@dataclass
class ExportResult:
    """One exported file. Classification fills `max_abs_diff` (logits), `relative_diff` (that divided by
    the largest |logit|) and `top1_agreement`;
    detection fills `parity` (boxes, scores and labels matched per image). `checked` is the number
    of check inputs; `check_source` says where they came from."""

    path: Path
    format: str
    bytes: int
    checked: int
    check_source: str
    task: str = "classification"
    classes: list[str] = field(default_factory=list)
    max_abs_diff: float | None = None
    relative_diff: float | None = None
    top1_agreement: float | None = None
    parity: ParityReport | None = None

    @property
    def verified(self) -> bool:
        """Whether the file was run and compared with PyTorch (detection can skip it: --no-check)."""
        return self.parity is not None or self.max_abs_diff is not None

    def summary(self) -> str:
        """'exported PATH' and, indented on a second line, '4.3 MB, onnx, 3 classes; verified against PyTorch'."""
        what = [f"{self.bytes / 1e6:.1f} MB", self.format]
        if self.classes:
            what.append(f"{len(self.classes)} classes")
        check = "verified against PyTorch" if self.verified else "not verified (--no-check)"
        return f"exported {self.path}\n  {', '.join(what)}; {check}"
