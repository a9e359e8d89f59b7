"""Training curves: loss and accuracy, train vs val, with markers where the learning rate changed."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from deepvision.errors import UserError


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            xs.append(row["epoch"])
            ys.append(v)
    return xs, ys


def lr_changes(history: list[dict[str, Any]], ratio: float = 1.5) -> list[tuple[int, float]]:
    """(epoch, new lr) where the rate jumped by at least `ratio` (a step of a piecewise schedule or a
    manual change) since the previous epoch; the small per-epoch moves of cosine/poly schedules are
    not marked."""
    out = []
    for prev, row in zip(history, history[1:]):
        a, b = prev.get("lr"), row.get("lr")
        if a and b and max(a, b) / min(a, b) >= ratio:
            out.append((row["epoch"], row["lr"]))
    return out


def save_figure(fig, path: Path) -> Path:
    """Save atomically (temp file + rename) so a reader never sees half an image."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix or '.png'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


def _mark_lr(ax, changes: list[tuple[int, float]]) -> None:
    for epoch, lr in changes:
        ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.text(epoch - 0.5, 1.0, f" lr {lr:g}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="left", fontsize=7, color="grey")


def _curves_figure(history: list[dict[str, Any]], curves: tuple[tuple[str, str, str], ...], ylabel: str,
                   title: str, legend: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label, style in curves:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, style, marker="o", markersize=3, label=label)
    _mark_lr(ax, lr_changes(history))
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend)
    return save_figure(fig, path)


def plot_history(history: list[dict[str, Any]], out_dir: str | Path, title: str = "") -> list[Path]:
    """Write loss.png and accuracy.png into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    return [
        _curves_figure(history, (("train_loss", "train", "-"), ("val_loss", "val", "-")), "cross-entropy",
                       f"{title} loss".strip(), "upper right", out_dir / "loss.png"),
        _curves_figure(history, (("train_acc", "train rank-1", "-"), ("val_acc", "val rank-1", "-"),
                                 ("train_top5", "train rank-5", "--"), ("val_top5", "val rank-5", "--")),
                       "accuracy", f"{title} accuracy".strip(), "lower right", out_dir / "accuracy.png"),
    ]


def plot_compare(histories: dict[str, list[dict[str, Any]]], path: str | Path,
                 metrics: tuple[str, ...] = ("val_acc", "val_loss")) -> Path:
    """Overlay the curves of several runs (one colour per run; train dashed, val solid) in one PNG."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(7 * len(metrics), 5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (name, history) in enumerate(histories.items()):
            color = f"C{i % 10}"
            for key, style in ((metric, "-"), (metric.replace("val_", "train_"), "--")):
                xs, ys = _series(history, key)
                if xs and (key == metric or metric.startswith("val_")):
                    ax.plot(xs, ys, style, color=color, marker="o", markersize=2,
                            label=f"{name} ({'val' if key.startswith('val_') else 'train'})")
            for epoch, _ in lr_changes(history):
                ax.axvline(epoch - 0.5, color=color, linestyle=":", linewidth=0.7)
        ax.set(xlabel="epoch", ylabel=metric.replace("_", " "), title=metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return save_figure(fig, Path(path))
