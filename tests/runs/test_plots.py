"""Training-curve figures: a learning-rate panel, marks only at real steps with readable labels,
a log loss axis when it spans decades, legends that never cover the curves, titled compare panels."""

from __future__ import annotations

import pytest

from deepvision.runs import plots
from deepvision.runs.rundir import RunDir
from tests.runs.test_journal_table import fake_run


@pytest.fixture
def figures(monkeypatch):
    """The figures plots.py would save, drawn (so extents are known) instead of written."""
    saved = {}

    def keep(fig, path, kind=None):
        fig.canvas.draw()
        saved[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    yield saved
    for fig in saved.values():
        plots.plt.close(fig)


def vlines(ax) -> list[float]:
    return sorted(line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1 and
                  line.get_linestyle() == "--")


def legend_outside(fig, ax) -> bool:
    renderer = fig.canvas.get_renderer()
    return ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_piecewise_steps_are_marked_and_labelled(tmp_path, figures):
    run = fake_run(tmp_path, "steps", {"name": "piecewise", "ranges": ["1-50: 0.01", "51-65: 0.001",
                                                                       "66-70: 0.0001"]}, 70)
    plots.plot_run(run)
    loss = figures["loss.png"]
    ax, lr_ax = loss.axes
    assert ax.get_title(loc="left") == "steps: loss" and ax.get_yscale() == "log"  # 1.0 .. 0.014: beyond a factor of 20
    assert vlines(ax) == vlines(lr_ax) == [50.5, 65.5]
    assert sorted(t.get_text() for t in lr_ax.texts) == ["0.0001", "0.001"] and lr_ax.get_yscale() == "log"
    assert all(t.get_rotation() == 0 for t in lr_ax.texts)
    assert legend_outside(loss, ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val", "learning-rate step"]
    labels = [t.get_text() for t in figures["accuracy.png"].axes[0].get_legend().get_texts()]
    assert labels == ["train rank-1", "val rank-1", "train rank-5", "val rank-5", "learning-rate step"]


def test_cosine_gets_a_panel_but_no_marks_and_few_classes_no_rank5(tmp_path, figures):
    run = fake_run(tmp_path, "cos", {"name": "cosine"}, 8, classes=2)
    plots.plot_run(run)
    ax, lr_ax = figures["loss.png"].axes
    assert vlines(ax) == [] and len(lr_ax.texts) == 0 and ax.get_yscale() == "linear"
    assert list(lr_ax.lines[0].get_ydata()) == [r["lr"] for r in run.read_history()]
    labels = [t.get_text() for t in figures["accuracy.png"].axes[0].get_legend().get_texts()]
    assert labels == ["train rank-1", "val rank-1"]  # 2 classes: rank-5 is always 100%


def test_constant_rate_has_no_panel_and_names_the_rate(tmp_path, figures):
    plots.plot_run(fake_run(tmp_path, "flat", {"name": "constant"}, 3))
    assert len(figures["loss.png"].axes) == 1
    assert figures["loss.png"].axes[0].get_title(loc="left") == "flat: loss  (learning rate 0.05)"


def test_a_manual_resume_is_marked(tmp_path, figures):
    run = fake_run(tmp_path, "manual", {"name": "cosine"}, 8)
    history = run.read_history()
    for row in history[5:]:
        row["lr"] = 0.02  # resumed at epoch 6 with --set optim.lr=0.02
    run.write_history(history)
    run.write_state({"status": "finished", "segments": [{"start_epoch": 0, "overrides": []},
                                                        {"start_epoch": 5, "overrides": ["optim.lr=0.02"],
                                                         "manual_lr": 0.02}]})
    assert plots.manual_lr_epochs(RunDir(run.path)) == (6,)
    plots.plot_run(run)
    assert vlines(figures["loss.png"].axes[0]) == [5.5]


def test_compare_titles_panels_and_lists_each_run_once(tmp_path, figures):
    a = fake_run(tmp_path, "a", {"name": "piecewise", "ranges": ["1-3: 0.05", "4-6: 0.005"]}, 6)
    b = fake_run(tmp_path, "b", {"name": "cosine"}, 6)
    plots.plot_compare({"a": a.read_history(), "b": b.read_history()}, tmp_path / "c.png")
    fig = figures["c.png"]
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "rank-1 accuracy: validation (solid), training (dashed)",
        "loss (cross-entropy): validation (solid), training (dashed)"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    runs, lines = fig.legends
    assert [t.get_text() for t in runs.get_texts()] == ["a", "b"]
    assert [t.get_text() for t in lines.get_texts()] == ["validation", "training",
                                                         "learning-rate step (in the run's colour)"]


def test_detection_history_gets_map_and_loss_components_not_an_empty_accuracy(tmp_path, figures):
    history = [{"epoch": e, "lr": 0.01, "train_loss": 3.0 / e, "train_loss_classifier": 2.0 / e,
                "train_loss_box_reg": 1.0 / e, "val_map50": 0.2 * e, "val_map": 0.1 * e, "train_acc": None,
                "val_acc": None} for e in range(1, 4)]
    (tmp_path / "accuracy.png").write_bytes(b"an empty figure from an earlier version")
    paths = plots.plot_history(history, tmp_path, title="det")
    assert [p.name for p in paths] == ["loss.png", "map.png"] and set(figures) == {"loss.png", "map.png"}
    assert not (tmp_path / "accuracy.png").exists()
    ax = figures["map.png"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["val mAP@0.5", "val mAP@[.5:.95]"]
    assert [list(line.get_ydata()) for line in ax.lines[:2]] == [[0.2, 0.4, 0.2 * 3], [0.1, 0.2, 0.1 * 3]]
    labels = [t.get_text() for t in figures["loss.png"].axes[0].get_legend().get_texts()]
    assert labels == ["train (sum)", "box_reg", "classifier"]


def test_a_detector_trained_without_a_val_split_gets_its_loss_and_no_empty_figure(tmp_path, figures):
    """With no val split the history holds no mAP: it was drawn as a classifier's, an empty accuracy.png and
    a "cross-entropy" loss."""
    history = [{"epoch": e, "lr": 0.01, "train_loss": 3.0 / e, "train_loss_classifier": 2.0 / e,
                "train_loss_box_reg": 1.0 / e, "val_map50": None, "val_map": None} for e in range(1, 4)]
    paths = plots.plot_history(history, tmp_path, title="det")
    assert [p.name for p in paths] == ["loss.png"] and set(figures) == {"loss.png"}
    assert figures["loss.png"].axes[0].get_ylabel() == "detection loss"


@pytest.mark.parametrize(("row", "problem"), [
    ("99999,nan,nan,nan,nan,nan,nan,nan,nan,nan", "line 5: epoch 99999 after epoch 3; the epochs count up"),
    ("4,nan,nan,nan,nan,nan,nan,nan,nan,nan", "line 5: learning rate nan is not a finite number"),
    ("4,-0.5,1,1,1,1,1,1,1,1", "line 5: learning rate -0.5 is not a finite number from 0"),
    ("4,0.1,1,1,1,1,1,1,1,-1", "line 5: seconds '-1.0' is not a duration (a finite number from 0)"),
    ("2,0.1,1,1,1,1,1,1,1,1", "line 5: epoch 2 after epoch 3"),
    ("1.5,0.1,1,1,1,1,1,1,1,1", "line 5: epoch '1.5' is not a whole number"),
    ("abc,0.1,1,1,1,1,1,1,1,1", "line 5: epoch 'abc' is not a whole number"),
    ("4,0.1,1,1,1,1,1,1,1,1,7,8,9", "line 5: 13 cells under a header of 10"),
    ("4,0.05", "line 5: 2 cells under a header of 10"),
    ("4,0.1,1,1,1,1,0.9_9,1,1,1", "line 5: val_acc '0.9_9' is not a number"),  # float() read it as 0.99
    ("4,0.1,1,1,1,1,١,1,1,1", "line 5: val_acc '١' is not a number"),  # and this as 1
])
def test_an_impossible_history_row_is_damage_for_plot_and_runs(tmp_path, run_cli, row, problem):
    from deepvision.runs.journal import journal

    run = fake_run(tmp_path, "r", {"name": "constant"}, 3)
    with open(run.history_path, "a") as f:
        f.write(row + "\n")
    code, out, err = run_cli("plot", run.path)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"history.csv is damaged ({problem}" in err
    assert not (run.path / "plots" / "loss.png").exists()
    assert journal(tmp_path)[0]["status"].startswith(f"damaged: {run.history_path} is damaged ({problem}")


def test_a_diverged_run_with_nan_losses_still_plots(tmp_path, run_cli):
    run = fake_run(tmp_path, "r", {"name": "constant"}, 3)
    rows = run.read_history()
    rows[-1].update(train_loss=float("nan"), val_loss=float("inf"))
    run.write_history(rows)
    code, out, err = run_cli("plot", run.path)
    assert code == 0 and "loss.png" in out, err


def test_an_epoch_whose_losses_are_inf_is_shaded_and_named(tmp_path, run_cli, figures):
    """A diverged epoch (train and val loss inf) cannot be drawn: its place on the x axis is shaded, with a
    legend entry, and `plot` names it in a note, instead of the axis shrinking to the other epochs."""
    run = fake_run(tmp_path, "r", {"name": "constant"}, 3)
    rows = run.read_history()
    rows[1].update(train_loss=float("inf"), val_loss=float("inf"))
    rows[2].update(train_loss=float("nan"))
    run.write_history(rows)
    code, out, err = run_cli("plot", run.path)
    assert code == 0, err
    assert " ".join(out.split()).endswith("not drawn (NaN or inf, shaded red on the plots): epoch 2 train_loss inf, "
                                          "val_loss inf; epoch 3 train_loss nan")
    ax = figures["loss.png"].axes[0]
    spans = [p.get_bbox() for p in ax.patches]
    assert [(b.x0, b.x1) for b in spans] == [(1.5, 2.5), (2.5, 3.5)]
    assert ax.get_xlim()[0] < 1 and ax.get_xlim()[1] > 3.4
    assert [list(line.get_xdata()) for line in ax.lines[:2]] == [[1], [1, 3]]
    assert ax.get_legend().get_texts()[-1].get_text() == "NaN or inf (not drawn)"
    assert not figures["accuracy.png"].axes[0].patches  # the accuracies of those epochs are numbers
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith(str(tmp_path)))  # the note


@pytest.mark.parametrize(("header", "row", "problem"), [
    ("epoch,lr,val_acc,val_acc", "1,0.1,0.9,0.1", "line 1: the header names 'val_acc' twice"),
    ("a,b,c", "1,2,3", "line 1: the header has no epoch column"),
    ("epoch,lr,val_acc", "99999999999999999999,0.1,0.9", "line 2: epoch 99999999999999999999 is beyond the 100,000"),
])
def test_a_history_header_or_epoch_no_run_writes_is_damage(tmp_path, run_cli, header, row, problem):
    """With a column named twice the second value would win unseen; an epoch beyond train.epochs' bound
    was never trained."""
    run = fake_run(tmp_path, "r", {"name": "constant"}, 3)
    run.history_path.write_text(f"{header}\n{row}\n")
    code, out, err = run_cli("plot", run.path)
    assert code == 2 and err.count("\n") == 1 and f"history.csv is damaged ({problem}" in err, err


def test_a_history_saved_by_a_spreadsheet_reads_and_an_oversized_field_is_named(tmp_path, run_cli):
    """A BOM before the header (a spreadsheet's UTF-8 save) is not part of the first column's name; a field
    beyond the CSV module's limit is named with its line, not as "damaged (Error)"."""
    run = fake_run(tmp_path, "r", {"name": "constant"}, 2)
    text = run.history_path.read_text()
    run.history_path.write_text("\ufeff" + text)
    assert [row["epoch"] for row in run.read_history()] == [1, 2]
    lines = text.splitlines()
    run.history_path.write_text("\n".join([lines[0], lines[1], "x" * 200_000 + lines[2]]) + "\n")
    code, out, err = run_cli("plot", run.path)
    assert code == 2 and err.count("\n") == 1 and "history.csv is damaged (line 3: not readable as CSV (field " \
        "larger than field limit" in err, err


def test_a_figure_stopped_while_saved_leaves_no_folder_made_for_it(tmp_path, monkeypatch):
    """`runs compare a b --out new/cmp.png` stopped as the figure is written: neither a temporary file nor
    new/ is left; a folder that was there stays."""
    from deepvision.errors import Terminated

    def stopped(self, *args, **kwargs):
        raise Terminated

    monkeypatch.setattr(plots.plt.Figure, "savefig", stopped)
    for path in (tmp_path / "new" / "sub" / "cmp.png", tmp_path / "cmp.png"):
        fig, _ = plots.plt.subplots()
        with pytest.raises(Terminated):
            plots.save_figure(fig, path, plots.COMPARE_FIGURE)
        assert list(tmp_path.iterdir()) == []
