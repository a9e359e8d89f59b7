"""Training curves: loss and accuracy, train vs val, with the learning rate in a panel below.

`plot_run` is the one entry point for a run directory (the `Plotter` callback during training and
`deepvision plot` afterwards draw the same figures). A learning rate that changes gets its own
panel; dashed lines mark only its steps (piecewise boundaries, manual changes on resume), labelled
with the new rate, never the epoch-by-epoch moves of cosine or poly schedules. Loss goes on a log
axis when it spans more than a factor of 20; legends sit outside the axes so they never hide a curve.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullFormatter

from deepvision.config.io import override_keys
from deepvision.errors import UserError
from deepvision.fileio import atomic_path
from deepvision.placement import figure_options
from deepvision.runs.history import lr_steps
from deepvision.runs.rundir import RunDir

LOG_SPAN = 20.0  # loss axes become logarithmic beyond this max/min ratio
METRIC_TITLES = {"loss": "loss (cross-entropy)", "acc": "rank-1 accuracy", "top5": "rank-5 accuracy",
                 "lr": "learning rate"}
TASK_TITLES = {"detection": {"loss": "detection loss (sum of its components)", "map50": "mAP@0.5",
                             "map": "mAP@[.5:.95]"}}


CURVES = ("train_loss", "val_loss", "train_acc", "val_acc", "train_top5", "val_top5", "val_map50", "val_map")
LOST_COLOR = "tab:red"


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The epochs and finite values of column `key` (NaN and inf, a diverged epoch's, cannot be drawn)."""
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and not math.isfinite(v)):
            xs.append(row["epoch"])
            ys.append(v)
    return xs, ys


def _lost(history: list[dict[str, Any]], keys: Any) -> dict[int, list[tuple[str, float]]]:
    """epoch -> [(column, value)] of the cells among `keys` that hold NaN or inf: a curve has no point there."""
    lost: dict[int, list[tuple[str, float]]] = {}
    for row in history:
        for key in keys:
            v = row.get(key)
            if isinstance(v, float) and not math.isfinite(v):
                lost.setdefault(row["epoch"], []).append((key, v))
    return lost


def unplotted_note(history: list[dict[str, Any]]) -> str | None:
    """One sentence naming the epochs whose metrics are NaN or inf (not drawn; shaded on the plots), or None:
    'not drawn (NaN or inf, shaded red on the plots): epoch 2 train_loss inf, val_loss inf'."""
    keys = [k for k in dict.fromkeys(k for row in history for k in row) if k in CURVES or k.startswith("train_loss_")]
    lost = _lost(history, keys)
    if not lost:
        return None
    parts = [f"epoch {e} " + ", ".join(f"{k} {v}" for k, v in cells) for e, cells in sorted(lost.items())[:5]]
    more = f"; {len(lost) - 5:,} more epoch(s)" if len(lost) > 5 else ""
    return f"not drawn (NaN or inf, shaded red on the plots): {'; '.join(parts)}{more}"


def lr_changes(history: list[dict[str, Any]], manual: tuple[int, ...] = ()) -> list[tuple[int, float]]:
    """(epoch, new lr) at each learning-rate step (`runs.history.lr_steps`) and at the `manual` epochs
    (1-based) where a resume set the rate."""
    lrs = {row["epoch"]: row["lr"] for row in history if row.get("lr") is not None}
    epochs = sorted(lrs)
    steps = {epochs[i - 1] for i in lr_steps([lrs[e] for e in epochs])}
    steps |= {e for e in manual if e in lrs and e - 1 in lrs and lrs[e] != lrs[e - 1]}
    return [(e, lrs[e]) for e in sorted(steps)]


def manual_lr_epochs(run: RunDir) -> tuple[int, ...]:
    """1-based epochs where a resume set the learning rate or the schedule (from run.json)."""
    epochs = []
    try:
        segments = run.read_state().get("segments")
    except UserError:  # a damaged run.json only loses the dashed lines, not the plot
        return ()
    segments = [seg for seg in segments if isinstance(seg, dict)] if isinstance(segments, list) else []
    for seg in segments[1:]:  # a damaged list only loses the dashed lines, not the plot
        overrides = seg.get("overrides") if isinstance(seg.get("overrides"), list) else []
        try:
            keys = override_keys([str(o) for o in overrides])
        except UserError:  # an override no longer readable only loses its dashed line
            keys = []
        start = seg.get("start_epoch", 0)
        if not isinstance(start, int) or isinstance(start, bool):
            continue
        if seg.get("manual_lr") is not None or any(k == "optim.lr" or k.startswith("schedule.") for k in keys):
            epochs.append(start + 1)
    return tuple(epochs)


COMPARE_FIGURE = "runs compare"  # the figure names the command, which replaces only its own figures


def save_figure(fig, path: Path, kind: str | None = None) -> Path:
    """Save atomically (temp file + rename) so a reader never sees half an image; `kind` names the command
    in the figure (`placement.figure_options`)."""
    try:
        with atomic_path(path, path.suffix or ".png", parents=True) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=(path.suffix or ".png")[1:],
                        **figure_options(path, kind))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


def _log_if_wide(ax, values: list[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        ax.set_yscale("log")


def _lr_panel(ax, history: list[dict[str, Any]], changes: list[tuple[int, float]]) -> None:
    xs, ys = _series(history, "lr")
    ax.set_ylabel("learning rate")
    if changes:  # steps: drawn as steps, on a log axis when they span decades
        ax.step(xs, ys, where="mid", color="0.3", linewidth=1.2)
        _log_if_wide(ax, ys)
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:  # a continuous schedule (the rate each epoch starts with)
        ax.plot(xs, ys, color="0.3", linewidth=1.2, marker="o" if len(xs) <= 40 else None, markersize=2)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    for epoch, lr in changes:
        ax.annotate(f"{lr:.3g}", (epoch - 0.5, lr), xytext=(3, 3), textcoords="offset points", fontsize=7,
                    color="0.25", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})


def _mark(axes, changes: list[tuple[int, float]], color: str = "grey") -> None:
    for ax in axes:
        for epoch, _ in changes:
            ax.axvline(epoch - 0.5, color=color, linestyle="--", linewidth=0.8, zorder=0)


def _curves_figure(history: list[dict[str, Any]], curves: tuple[tuple[str, str, str], ...], ylabel: str,
                   title: str, path: Path, changes: list[tuple[int, float]], log_ok: bool) -> Path:
    lrs = [v for v in _series(history, "lr")[1]]
    with_lr = len({round(v, 15) for v in lrs}) > 1
    if with_lr:
        fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True, height_ratios=[3, 1])
    else:
        fig, ax = plt.subplots(figsize=(8, 4.6))
        lr_ax = None
    plotted: list[float] = []
    marker = "o" if len(history) <= 40 else None
    for key, label, style in curves:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, style, marker=marker, markersize=3, label=label)
            plotted += ys
    lost = _lost(history, [key for key, _, _ in curves])
    for epoch in lost:  # a diverged epoch: no point can be drawn, so its place is shaded instead
        ax.axvspan(epoch - 0.5, epoch + 0.5, color=LOST_COLOR, alpha=0.15, linewidth=0, zorder=0)
    if log_ok:
        _log_if_wide(ax, plotted)
    ax.set_ylabel(ylabel)
    ax.set_title(title if with_lr or not lrs else f"{title}  (learning rate {lrs[0]:g})", loc="left")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if changes:
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8))
        labels.append("learning-rate step")
    if lost:
        handles.append(Patch(facecolor=LOST_COLOR, alpha=0.15, linewidth=0))
        labels.append("NaN or inf (not drawn)")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)
    _mark([a for a in (ax, lr_ax) if a is not None], changes)
    if lr_ax is not None:
        _lr_panel(lr_ax, history, changes)
    (lr_ax or ax).set_xlabel("epoch")
    (lr_ax or ax).xaxis.set_major_locator(MaxNLocator(integer=True))
    return save_figure(fig, path)


def plot_history(history: list[dict[str, Any]], out_dir: str | Path, title: str = "", rank5: bool = True,
                 manual: tuple[int, ...] = ()) -> list[Path]:
    """Write loss.png and accuracy.png into `out_dir` (a detection history: loss.png with the loss
    components and map.png with val mAP@0.5 and mAP@[.5:.95]); returns their paths. `rank5=False` leaves
    the rank-5 curves out (5 classes or fewer); `manual` are epochs where a resume set the rate."""
    out_dir = Path(out_dir)
    changes = lr_changes(history, manual)
    prefix = f"{title}: " if title else ""
    detector = any(_series(history, k)[0] for k in ("val_map50", "val_map")) or \
        any(k.startswith("train_loss_") and v is not None for r in history for k, v in r.items())  # no val split
    if not any(_series(history, k)[0] for k in ("train_acc", "val_acc")) and detector:
        return _detection_figures(history, out_dir, prefix, changes)
    accuracy = [("train_acc", "train rank-1", "-"), ("val_acc", "val rank-1", "-")]
    if rank5:
        accuracy += [("train_top5", "train rank-5", "--"), ("val_top5", "val rank-5", "--")]
    return [
        _curves_figure(history, (("train_loss", "train", "-"), ("val_loss", "val", "-")), "cross-entropy",
                       f"{prefix}loss", out_dir / "loss.png", changes, log_ok=True),
        _curves_figure(history, tuple(accuracy), "accuracy", f"{prefix}accuracy", out_dir / "accuracy.png",
                       changes, log_ok=False),
    ]


def _detection_figures(history: list[dict[str, Any]], out_dir: Path, prefix: str,
                       changes: list[tuple[int, float]]) -> list[Path]:
    """A detector's curves: the summed loss and each component, and the validation mAP."""
    parts = sorted({k for r in history for k in r if k.startswith("train_loss_") and r[k] is not None})
    losses = [("train_loss", "train (sum)", "-"), *((k, k.removeprefix("train_loss_"), "--") for k in parts)]
    maps = (("val_map50", "val mAP@0.5", "-"), ("val_map", "val mAP@[.5:.95]", "--"))
    stale = out_dir / "accuracy.png"  # a detector has no accuracy: never leave an empty figure behind
    if stale.is_file():
        stale.unlink()
    figures = [_curves_figure(history, tuple(losses), "detection loss", f"{prefix}loss", out_dir / "loss.png",
                              changes, log_ok=True)]
    if any(_series(history, k)[0] for k, _, _ in maps):  # trained without a val split: no mAP to draw
        figures.append(_curves_figure(history, maps, "mAP", f"{prefix}validation mAP", out_dir / "map.png", changes,
                                      log_ok=False))
    return figures


def plot_run(run: RunDir, history: list[dict[str, Any]] | None = None) -> list[Path]:
    """The run's plots/loss.png and plots/accuracy.png (detection: plots/map.png), titled with the run's name."""
    history = history if history is not None else run.read_history()
    try:
        classes = len(run.read_labels())
    except UserError:
        classes = None
    return plot_history(history, run.plots, title=run.path.name, rank5=classes is None or classes > 5,
                        manual=manual_lr_epochs(run))


def metric_titles(task: str = "classification") -> dict[str, str]:
    """The titles of a task's metrics ('loss' of a detection run is its summed loss)."""
    return {**METRIC_TITLES, **TASK_TITLES.get(task, {})}


def metric_title(metric: str, task: str = "classification") -> str:
    """'val_acc' -> 'validation rank-1 accuracy' (a detection run's 'train_loss': its summed loss)."""
    titles = metric_titles(task)
    split, _, name = metric.partition("_")
    if not name:
        return titles.get(split, split)
    where = {"val": "validation", "train": "training"}.get(split, split)
    return f"{where} {titles.get(name, name.replace('_', ' '))}"


def plot_compare(histories: dict[str, list[dict[str, Any]]], path: str | Path,
                 metrics: tuple[str, ...] = ("val_acc", "val_loss"), task: str = "classification") -> Path:
    """Overlay the curves of several runs of one `task` in one PNG: a panel per metric, one colour per run (val
    solid, train dashed where a val metric is drawn), dotted lines at each run's learning-rate steps; one
    legend for the figure."""
    titles = metric_titles(task)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.6), squeeze=False)
    styles_used: set[str] = set()
    for ax, metric in zip(axes[0], metrics):
        plotted: list[float] = []
        for i, history in enumerate(histories.values()):
            color = f"C{i % 10}"
            pairs = [(metric, "-")]
            if metric.startswith("val_"):
                pairs.append(("train_" + metric.removeprefix("val_"), "--"))
            for key, style in pairs:
                xs, ys = _series(history, key)
                if xs:
                    ax.plot(xs, ys, style, color=color, marker="o" if len(xs) <= 40 else None, markersize=2)
                    plotted += ys
                    styles_used.add("train" if key.startswith("train_") and metric.startswith("val_") else "main")
            for epoch, _ in lr_changes(history):
                ax.axvline(epoch - 0.5, color=color, linestyle=":", linewidth=0.9)
                styles_used.add("lr")
        if metric.endswith("loss"):
            _log_if_wide(ax, plotted)
        shown = metric_title(metric, task)
        if metric.startswith("val_"):
            shown = f"{titles.get(metric[4:], metric[4:])}: validation (solid), training (dashed)"
        ax.set_title(shown, loc="left", fontsize=10)
        ax.set(xlabel="epoch", ylabel=titles.get(metric.partition("_")[2] or metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    runs = [Line2D([], [], color=f"C{i % 10}", linewidth=2) for i in range(len(histories))]
    fig.legend(runs, list(histories), loc="upper left", bbox_to_anchor=(0.02, 0.0), fontsize=8, frameon=False,
               title="runs", title_fontsize=8, alignment="left")
    handles, labels = [], []
    if "train" in styles_used:
        handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle="--")]
        labels += ["validation", "training"]
    if "lr" in styles_used:
        handles.append(Line2D([], [], color="0.3", linestyle=":"))
        labels.append("learning-rate step (in the run's colour)")
    if handles:
        fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.98, 0.0), fontsize=8, frameon=False,
                   title="lines", title_fontsize=8, alignment="left")
    return save_figure(fig, Path(path), COMPARE_FIGURE)
