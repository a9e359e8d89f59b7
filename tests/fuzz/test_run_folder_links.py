"""A run's own folders (checkpoints/, plots/, eval/ and what lies below them) replaced by a symbolic link
or a file: every write is refused in one line before anything is written, and the link's target is
left as it was."""

from __future__ import annotations

import csv

import pytest

from deepvision.errors import UserError
from deepvision.runs.rundir import RunDir
from tests.fuzz.test_corpus import _snapshot


def _run(tmp_path):
    run = RunDir.create(tmp_path, "r")
    run.config_path.write_text("name: r\n")
    with run.history_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr"])
        writer.writeheader()
        for epoch in (1, 2):
            writer.writerow({"epoch": epoch, "train_loss": 1 / epoch, "val_loss": 1.2 / epoch,
                             "train_acc": 0.4 * epoch, "val_acc": 0.3 * epoch, "lr": 0.1})
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "loss.png").write_text("keep\n")
    (victim / "last.pt").write_text("keep\n")
    return run, victim


def _plant(run, name, victim):
    folder = run.path / name
    if folder.exists():
        folder.rmdir()
    folder.symlink_to(victim, target_is_directory=True)


def test_plot_refuses_a_symlinked_plots_folder(tmp_path, run_cli):
    run, victim = _run(tmp_path)
    _plant(run, "plots", victim)
    before = _snapshot(tmp_path)
    code, out, err = run_cli("plot", run.path)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{run.path / 'plots'} is a symbolic link; refusing to write through it" in err
    assert _snapshot(tmp_path) == before


def test_plot_refuses_a_file_in_place_of_the_plots_folder(tmp_path, run_cli):
    run, _ = _run(tmp_path)
    (run.path / "plots").rmdir()
    (run.path / "plots").write_text("not a folder\n")
    before = _snapshot(tmp_path)
    code, _, err = run_cli("plot", run.path)
    assert code == 2 and err.count("\n") == 1 and "plots is not a folder; refusing to write into it" in err
    assert _snapshot(tmp_path) == before


def test_checkpoints_are_never_written_through_a_symlinked_folder(tmp_path):
    run, victim = _run(tmp_path)
    _plant(run, "checkpoints", victim)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="checkpoints is a symbolic link; refusing to write through it"):
        run.save_checkpoint({"epoch": 1}, 1, prefix="m", periodic=True, best=True)
    with pytest.raises(UserError, match="checkpoints is a symbolic link"):
        RunDir.create(tmp_path, "r", exist_ok=True)
    assert _snapshot(tmp_path) == before


def test_evaluation_reports_are_never_written_through_a_planted_link(tmp_path):
    run, victim = _run(tmp_path)
    _plant(run, "eval", victim)
    with pytest.raises(UserError, match="eval is a symbolic link"):
        run.folder("eval", "test-best", create=False)
    (run.path / "eval").unlink()
    (run.path / "eval").mkdir()
    (run.path / "eval" / "test-best").symlink_to(victim, target_is_directory=True)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="test-best is a symbolic link"):
        run.folder("eval", "test-best")
    assert _snapshot(tmp_path) == before


def test_real_folders_are_created_and_reused(tmp_path):
    run, _ = _run(tmp_path)
    made = run.folder("eval", "test-best")
    assert made == run.path / "eval" / "test-best" and made.is_dir()
    assert run.folder("eval", "test-best") == made and run.eval_dir == run.path / "eval"
    assert run.folder("eval", "other", create=False) == run.path / "eval" / "other"
    assert not (run.path / "eval" / "other").exists()


def test_evaluate_refuses_a_symlinked_eval_folder_before_any_work(tmp_path, run_cli):
    run, victim = _run(tmp_path)
    _plant(run, "eval", victim)
    before = _snapshot(tmp_path)
    code, out, err = run_cli("evaluate", run.path, "--data", tmp_path / "nowhere")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{run.path / 'eval'} is a symbolic link; refusing to write through it" in err
    assert _snapshot(tmp_path) == before


def test_tensorboard_events_are_never_written_through_a_planted_link(tmp_path):
    from types import SimpleNamespace

    from deepvision.engine.callbacks.records import TensorBoardLogger

    run, victim = _run(tmp_path)
    _plant(run, "tensorboard", victim)
    logger = TensorBoardLogger()
    opened = []
    logger.writer_class = opened.append
    logger.trainer = SimpleNamespace(run=run)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="tensorboard is a symbolic link; refusing to write through it"):
        logger.on_train_start()
    assert opened == [] and _snapshot(tmp_path) == before
    (run.path / "tensorboard").unlink()
    logger.on_train_start()
    assert opened == [str(run.path / "tensorboard")] and (run.path / "tensorboard").is_dir()


def test_a_history_that_is_a_fifo_is_damaged_not_empty(tmp_path):
    import os

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    os.mkfifo(run.history_path)
    with pytest.raises(UserError, match=r"history\.csv is not a regular file \(a FIFO\); delete it"):
        run.read_history()


def test_a_config_that_is_a_fifo_marks_the_run_damaged(tmp_path):
    import os

    from deepvision.runs.journal import journal

    good, _ = _run(tmp_path)
    good.update_state(status="finished")
    bad = RunDir.create(tmp_path, "fifo")
    bad.update_state(status="finished")
    os.mkfifo(bad.config_path)
    rows = {row["name"]: row for row in journal(tmp_path)}
    assert rows["r"]["status"] == "finished" and rows["r"]["epochs"] == 2
    assert rows["fifo"]["status"] == (f"damaged: {bad.config_path} is not a regular file (a FIFO); "
                                      "delete it (`deepvision resume` rewrites it from the last checkpoint)")
    with pytest.raises(UserError, match=r"config\.yaml is not a regular file \(a FIFO\)"):
        RunDir.open(bad.path)


def test_a_run_json_that_is_a_fifo_is_listed_as_damaged(tmp_path):
    """The run stays in `deepvision runs` (marked damaged) and every reader names the FIFO, without blocking."""
    import os

    from deepvision.runs.journal import journal

    good, _ = _run(tmp_path)
    good.update_state(status="finished")
    bad = RunDir.create(tmp_path, "fifo")
    bad.config_path.write_text("name: fifo\n")
    bad.state_path.unlink(missing_ok=True)
    os.mkfifo(bad.state_path)
    rows = {row["name"]: row for row in journal(tmp_path)}
    assert rows["fifo"]["status"].startswith(f"damaged: {bad.state_path} is not a regular file (a FIFO); "
                                             "restore it or delete it")
    with pytest.raises(UserError, match=r"run\.json is not a regular file \(a FIFO\)"):
        bad.read_state()


@pytest.mark.parametrize("name", ["labels.txt", "checkpoints/best.pt"])
def test_labels_and_best_checkpoint_fifos_are_named_not_skipped(tmp_path, name):
    """A FIFO labels.txt would have predictions named by class number; a FIFO best.pt would have
    evaluate fall back to another checkpoint: both are refused, naming the FIFO."""
    import os

    from deepvision.runs.loading import run_classes

    run = RunDir.create(tmp_path, "r")
    (run.path / "checkpoints").mkdir(exist_ok=True)
    (run.checkpoints / "net-0001.pt").write_bytes(b"x")
    os.mkfifo(run.path / name)
    with pytest.raises(UserError, match=r"is not a regular file \(a FIFO\)"):
        if name == "labels.txt":
            run_classes(run, {"classes": ["a", "b"]})
        else:
            run.resolve_checkpoint(None, "best")


def test_a_fifo_or_file_named_as_a_run_is_named_for_what_it_is(tmp_path, run_cli):
    import os

    os.mkfifo(tmp_path / "ff")
    (tmp_path / "f.txt").write_text("x\n")
    for path, kind in ((tmp_path / "ff", "a FIFO"), (tmp_path / "f.txt", "a file")):
        with pytest.raises(UserError, match=rf"^{path} is {kind}, not a run directory$"):
            RunDir.open(path)
    with pytest.raises(UserError, match=r"^run directory not found: "):
        RunDir.open(tmp_path / "missing")
