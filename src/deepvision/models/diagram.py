"""Network diagrams: one box per layer (or per block for deep networks), drawn with matplotlib.

Boxes follow the forward pass top to bottom and show the layer name, type, output shape and
parameter count; colours mark the top-level parts (features, classifier, ...). Deep networks are
drawn at the deepest module level that fits in `max_rows` boxes (GoogLeNet's inception modules,
ResNet's units), so the picture stays readable. The boxes form a chain: blocks whose inside branches
(inception) or skips (residual units), found by tracing them with torch.fx, are named in a note
under the title rather than drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from deepvision.errors import UserError
from deepvision.fileio import atomic_path
from deepvision.models.summary import LayerRow, ModelSummary, format_macs, format_shape, summarize
from deepvision.placement import drawn_as, figure_options, refuse_figure_among_images, refuse_replacing

DIAGRAM = "models show --diagram"  # named in the figure: only its own diagram is replaced

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


def _real_users(node) -> int:
    """Users of an fx node that consume its values (not `x.size(0)`-style shape queries)."""
    return sum(1 for u in node.users
               if not (u.op == "call_method" and u.target in ("size", "dim"))
               and not (u.op == "call_function" and getattr(u.target, "__name__", "") == "getattr"))


def _fans_out(graph) -> bool:
    return any(n.op not in ("output", "get_attr") and _real_users(n) > 1 for n in graph.nodes)


def branches(model: nn.Module, rows: Sequence[LayerRow]) -> tuple[list[str], bool | None]:
    """(kinds of drawn blocks with parallel branches or a skip connection inside, whether data skips
    between drawn boxes): read from torch.fx traces; None where a trace is impossible."""
    import torch.fx

    inside: list[str] = []
    unknown = False
    checked: set[str] = set()
    paths = set()
    for r in rows:
        try:
            module = model.get_submodule(r.name)
        except AttributeError:
            continue
        paths.add(r.name)
        if r.kind in checked or not any(True for _ in module.children()):
            continue
        checked.add(r.kind)
        try:
            if _fans_out(torch.fx.symbolic_trace(module).graph):
                inside.append(r.kind)
        except Exception:  # dynamic control flow: cannot tell
            unknown = True

    class Blocks(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return qualname in paths or super().is_leaf_module(m, qualname)

    try:
        between: bool | None = _fans_out(Blocks().trace(model))
    except Exception:
        between = None
    return inside, (None if unknown and not inside and between is None else between)


def branch_note(inside: list[str], between: bool | None) -> str:
    """The sentence the figure prints about what the chain of boxes does not show."""
    notes = []
    if inside:
        kinds = ", ".join(inside[:3]) + (" ..." if len(inside) > 3 else "")
        notes.append(f"boxes are drawn in forward order; each {kinds} block has parallel branches or a skip "
                     f"connection inside (not drawn)")
    if between:
        notes.append("some boxes take the same input in parallel or are skipped over; the chain does not "
                     "show those branches")
    elif between is None and not inside:
        notes.append("boxes are drawn in forward order; branches could not be traced and are not drawn")
    return "; ".join(notes)


def check_diagram_path(path: str | Path) -> Path:
    """`path` as a Path when a diagram can be written there (a known suffix, an existing folder); checked
    before any table is printed, so a refusal is the only line."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"cannot write a diagram as '{path.suffix or path.name}'; use one of {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    refuse_replacing(path, drawn_as(DIAGRAM), "a diagram models show drew", "--diagram")
    refuse_figure_among_images(path, "--diagram")
    return path


def write_diagram(model: nn.Module, input_shape: Sequence[int], path: str | Path, name: str = "model",
                  max_rows: int = 40) -> Path:
    """Draw the network to `path` (.png, .svg, .pdf or .jpg) and return the path.

    Each box is one line of fixed-width columns (name, type, output shape, parameters), so long names
    of deep stages never overlap; the figure grows to fit them. When blocks hold branches or skip
    connections (residual, inception), a note under the title says so.
    """
    path = check_diagram_path(path)
    summary = diagram_summary(model, input_shape, name, max_rows)
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    rows = summary.rows
    c, h, w = summary.input_shape
    boxes = [("input", "", format_shape((c, h, w)), ""),
             *[(r.name, f"({r.kind})" if r.kind else "", format_shape(r.output_shape),
                f"{r.params:,} p" if r.params else "") for r in rows]]
    widths = [max(len(b[i]) for b in boxes) for i in range(4)]
    texts = [f"{a:<{widths[0]}}  {k:<{widths[1]}}  {s:>{widths[2]}}  {p:>{widths[3]}}".rstrip() for a, k, s, p in boxes]
    chars = max(len(t) for t in texts)
    char_in = 8.5 / 72 * 0.6  # a DejaVu Sans Mono character at 8.5 pt, in inches
    fig_w = max(8.5, chars * char_in + 1.2)
    note = branch_note(*branches(model, rows))
    note_lines = textwrap.wrap(note, int(fig_w * 13)) if note else []
    top = 1.3 + 0.32 * len(note_lines)
    step = 0.62
    height = top + step * (len(boxes) + 0.5)
    fig = plt.figure(figsize=(fig_w, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, fig_w)
    ax.set_ylim(-height, 0)
    ax.axis("off")
    palette = plt.get_cmap("tab10").colors
    groups: dict[str, tuple[float, float, float]] = {}
    mid = fig_w / 2
    ax.text(mid, -0.25, f"{name}", ha="center", va="top", fontsize=13, weight="bold")
    ax.text(mid, -0.7, f"{summary.total_params:,} parameters ({summary.trainable_params:,} trainable) · "
                       f"{format_macs(summary.macs)} multiply-adds", ha="center", va="top", fontsize=9)
    for i, line in enumerate(note_lines):
        ax.text(mid, -1.05 - 0.3 * i, line, ha="center", va="top", fontsize=8.5, style="italic", color="0.3")
    left, box_w = 0.5, fig_w - 1.0
    for i, ((label, _, _, _), text) in enumerate(zip(boxes, texts)):
        y = -top - step * i
        group = label.split(".")[0]
        colour = groups.setdefault(group, palette[len(groups) % len(palette)]) if i else (0.85, 0.85, 0.85)
        ax.add_patch(FancyBboxPatch((left, y - 0.22), box_w, 0.44, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=(*colour[:3], 0.25), edgecolor=colour, linewidth=1.2))
        ax.text(left + 0.1, y, text, va="center", fontsize=8.5, family="DejaVu Sans Mono")
        if i:
            ax.annotate("", xy=(mid, y + 0.23), xytext=(mid, y + step - 0.23),
                        arrowprops={"arrowstyle": "->", "color": "0.4", "linewidth": 0.8})
    try:  # temporary file + rename: a link at `path` is replaced, never followed; a failed draw keeps the old file
        with atomic_path(path, Path(path).suffix or ".png") as tmp:
            fig.savefig(tmp, dpi=110, format=(Path(path).suffix or ".png")[1:], **figure_options(path, DIAGRAM))
    finally:
        plt.close(fig)
    return path
