"""Network diagrams: one box per layer (or per block for deep networks), drawn with matplotlib.

Boxes follow the forward pass top to bottom and show the layer name, type, output shape and
parameter count; colours mark the top-level parts (features, classifier, ...). Deep networks are
drawn at the deepest module level that fits in `max_rows` boxes (GoogLeNet's inception modules,
ResNet's units), so the picture stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from deepvision.errors import UserError
from deepvision.models.summary import ModelSummary, format_macs, format_shape, summarize

FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def diagram_summary(model: nn.Module, input_shape: Sequence[int], name: str, max_rows: int = 40) -> ModelSummary:
    """The summary at the deepest level with at most `max_rows` rows (all leaves when they fit)."""
    leaves = summarize(model, input_shape, name)
    if len(leaves.rows) <= max_rows:
        return leaves
    best = summarize(model, input_shape, name, depth=1)
    depth = 2
    while True:
        candidate = summarize(model, input_shape, name, depth=depth)
        if len(candidate.rows) > max_rows or len(candidate.rows) == len(best.rows):
            return best
        best, depth = candidate, depth + 1


def write_diagram(model: nn.Module, input_shape: Sequence[int], path: str | Path, name: str = "model",
                  max_rows: int = 40) -> Path:
    """Draw the network to `path` (.png, .svg, .pdf or .jpg) and return the path."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"cannot write a diagram as '{path.suffix or path.name}'; use one of {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    summary = diagram_summary(model, input_shape, name, max_rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    rows = summary.rows
    step = 0.62
    height = 1.3 + step * (len(rows) + 1)
    fig, ax = plt.subplots(figsize=(8.5, height))
    ax.set_xlim(0, 10)
    ax.set_ylim(-height, 0.2)
    ax.axis("off")
    palette = plt.get_cmap("tab10").colors
    groups: dict[str, tuple[float, float, float]] = {}
    c, h, w = summary.input_shape
    ax.text(5, -0.15, f"{name}", ha="center", va="top", fontsize=13, weight="bold")
    ax.text(5, -0.55, f"{summary.total_params:,} parameters ({summary.trainable_params:,} trainable) · "
                      f"{format_macs(summary.macs)} multiply-adds", ha="center", va="top", fontsize=9)
    boxes = [("input", "", (c, h, w), None), *[(r.name, r.kind, r.output_shape, r.params) for r in rows]]
    for i, (label, kind, shape, params) in enumerate(boxes):
        y = -1.3 - step * i
        group = label.split(".")[0]
        colour = groups.setdefault(group, palette[len(groups) % len(palette)]) if i else (0.85, 0.85, 0.85)
        ax.add_patch(FancyBboxPatch((1.0, y - 0.22), 8.0, 0.44, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=(*colour[:3], 0.25), edgecolor=colour, linewidth=1.2))
        ax.text(1.2, y, label if not kind else f"{label}  ({kind})", va="center", fontsize=8.5, family="monospace")
        detail = format_shape(shape) + (f"   {params:,} p" if params else "")
        ax.text(8.8, y, detail, va="center", ha="right", fontsize=8.5, family="monospace")
        if i:
            ax.annotate("", xy=(5, y + 0.23), xytext=(5, y + step - 0.23),
                        arrowprops={"arrowstyle": "->", "color": "0.4", "linewidth": 0.8})
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
