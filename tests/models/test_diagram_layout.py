"""Model diagrams: box text never overlaps or leaves its box, and a figure whose blocks hold
branches or skips says so instead of passing them off as a plain chain."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from deepvision.errors import UserError
from deepvision.models import create_model
from deepvision.models.diagram import branch_note, branches, diagram_summary, write_diagram


def meta(name: str):
    with torch.device("meta"):
        return create_model(name)


@pytest.mark.parametrize(("name", "shape", "expected"), [
    ("googlenet_ref", (3, 224, 224), (["Inception"], False)),
    ("lenet", (1, 28, 28), ([], False)),
])
def test_branches_are_found_by_tracing(name, shape, expected):
    model = meta(name)
    assert branches(model, diagram_summary(model, shape, name).rows) == expected


def test_notes_name_what_the_chain_does_not_show():
    assert branch_note([], False) == ""
    assert "each PreActBottleneck block has parallel branches or a skip connection" in branch_note(
        ["PreActBottleneck"], False)
    assert "take the same input in parallel" in branch_note([], True)


def test_box_text_stays_inside_its_box(tmp_path, monkeypatch):
    drawn = {}
    real_savefig = plt.Figure.savefig

    def capture(fig, path, *args, **kwargs):
        fig.canvas.draw()
        drawn["fig"] = fig
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", capture)
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    write_diagram(meta("resnet50_ref"), (3, 224, 224), tmp_path / "r.png", "resnet50_ref")
    fig = drawn["fig"]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [p.get_window_extent(renderer) for p in ax.patches]
    texts = [t for t in ax.texts if t.get_fontfamily() == ["DejaVu Sans Mono"]]
    assert len(texts) == len(boxes) == 27  # the input and 26 blocks
    for text, box in zip(texts, boxes):
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
    assert "features.stage3.unit1" in texts[13].get_text() and "1,509,376 p" in texts[13].get_text()
    note = [t.get_text() for t in ax.texts if t.get_style() == "italic"]
    assert note and "PreActBottleneck" in " ".join(note)


def test_diagram_replaces_a_link_at_its_name_never_follows_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "d.png").symlink_to(victim)
    with pytest.raises(UserError, match="d.png exists and is not a diagram models show drew"):
        write_diagram(meta("lenet"), (1, 28, 28), tmp_path / "d.png", "lenet")
    assert victim.read_text() == "precious\n"
    (tmp_path / "d.png").unlink()  # (a .png that is no figure: no figure is drawn beside it)
    earlier = tmp_path / "earlier.png"  # a link to a figure drawn before: the link is replaced, the figure kept
    write_diagram(meta("lenet"), (1, 28, 28), earlier, "lenet")
    drawn = earlier.read_bytes()
    (tmp_path / "d.png").symlink_to(earlier)
    write_diagram(meta("lenet"), (1, 28, 28), tmp_path / "d.png", "lenet")
    assert earlier.read_bytes() == drawn and not (tmp_path / "d.png").is_symlink()
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "earlier.png", "victim.txt"]  # no temporary
