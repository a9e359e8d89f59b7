"""Checkpoint disk use and `deepvision runs prune`: the journal says how much the older epochs take and
the command that deletes them; pruning keeps last.pt, best.pt and the newest --keep periodic files,
frees what it reports, and leaves a run another process holds alone."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
import yaml

from deepvision.errors import UserError
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir, bytes_freed
from tests.helpers import run_main, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-epoch run that keeps every periodic checkpoint (checkpoint.keep: null)."""
    root = tmp_path_factory.mktemp("prune")
    cfg = tiny_config(4, max_samples=200)
    cfg["train"].update(max_steps=2, log_every=1000, progress="lines")
    cfg["checkpoint"] = {"keep": None}
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_main("train", root / "c.yaml", "--out", root / "runs", "--name", "all")
    assert code == 0, err
    return root / "runs"


@pytest.fixture
def runs(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "runs")  # hard links become copies: re-link as training made them
    run = RunDir(tmp_path / "runs" / "all")
    last = run.checkpoints / "last.pt"
    for epoch, path in run.saved_epochs().items():
        if epoch == 4:
            path.unlink()
            os.link(last, path)
    best = run.checkpoints / "best.pt"
    best_epoch = int(load_checkpoint(best)["epoch"])
    best.unlink()
    os.link(run.saved_epochs()[best_epoch], best)
    return tmp_path / "runs"


def test_default_keep_is_two_and_five_for_the_reference_profile():
    from deepvision.config import build_config

    assert build_config({}).checkpoint.keep == 2
    assert build_config({"profile": "reference"}).checkpoint.keep == 5


def test_journal_says_what_older_epochs_take_and_how_to_prune(runs):
    run = RunDir(runs / "all")
    before = run.checkpoint_disk_use()["total"]
    freed = bytes_freed(run.prunable(0))
    assert 0 < freed < before
    code, out, _ = run_main("runs", runs)
    lines = out.splitlines()
    assert code == 0 and max(len(line) for line in lines if str(runs) not in line) <= 80
    from deepvision.runs.journal import format_bytes

    assert f"checkpoints take {format_bytes(before)}, {format_bytes(freed)} of it older epochs" in out
    command = f"best.pt of each run: deepvision runs prune {runs}"
    assert lines[-1] == (command if len(command) <= 80 else
                         "best.pt of each run: deepvision runs prune FOLDER (the folder above)")
    csv_row = (runs / "journal.csv").read_text().splitlines()
    header = csv_row[0].split(",")
    assert int(csv_row[1].split(",")[header.index("ckpt_prunable_bytes")]) == freed


def test_dry_run_lists_and_deletes_nothing(runs):
    run = RunDir(runs / "all")
    code, out, _ = run_main("runs", "prune", runs, "--dry-run")
    assert code == 0
    assert f"{runs / 'all'}: would delete epochs 1-4 (" in out and "1 run: would free " in out
    assert list(run.saved_epochs()) == [1, 2, 3, 4]


def test_prune_keeps_last_best_and_the_newest_n(runs):
    run = RunDir(runs / "all")
    before = run.checkpoint_disk_use()["total"]
    best_epoch = int(load_checkpoint(run.checkpoints / "best.pt")["epoch"])
    code, out, _ = run_main("runs", "prune", runs / "all", "--keep", "1", "--dry-run")
    dry = out.splitlines()
    for twice in ([runs / "all", runs / "all"], [runs / "all", runs]):  # one run, named twice: counted once
        code, out, _ = run_main("runs", "prune", *twice, "--keep", "1", "--dry-run")
        assert code == 0 and out.splitlines()[-1] == dry[-1] and out.count("would delete epochs 1-3") == 1, out
    code, out, _ = run_main("runs", "prune", runs / "all", "--keep", "1")
    assert code == 0 and f"{runs / 'all'}: deleted epochs 1-3 (" in out
    assert list(run.saved_epochs()) == [4]
    after = run.checkpoint_disk_use()["total"]
    from deepvision.runs.journal import format_bytes

    assert out.splitlines()[-1] == f"1 run: freed {format_bytes(before - after)}"
    assert int(load_checkpoint(run.checkpoints / "best.pt")["epoch"]) == best_epoch
    assert int(load_checkpoint(run.checkpoints / "last.pt")["epoch"]) == 4
    assert run.resolve_checkpoint(4).is_file()
    with pytest.raises(UserError, match=r"^epoch must be a whole number, got '4' \(a str\)$"):  # api.resume(epoch="4")
        run.resolve_checkpoint("4")
    # nothing older is left to prune: no advice in the journal
    _, out, _ = run_main("runs", "prune", runs, "--keep", "1")
    assert out.splitlines()[-1] == "1 run: freed 0 B"


def test_prune_discarded_folders_only_when_asked(runs):
    run = RunDir(runs / "all")
    aside = run.checkpoints / "discarded-20260101-000000"
    aside.mkdir()
    shutil.copyfile(run.saved_epochs()[2], aside / "lenet-0002.pt")
    code, out, _ = run_main("runs", "prune", runs)
    assert code == 0 and aside.is_dir() and "set-aside" not in out
    code, out, _ = run_main("runs", "prune", runs, "--discarded")
    assert code == 0 and "1 set-aside file (" in out and not aside.exists()


def test_a_run_in_use_is_left_alone(runs):
    run = RunDir(runs / "all")
    holder = {"pid": os.getppid(), "host": socket.gethostname(), "since": "now", "command": "deepvision train"}
    (run.path / "run.lock").write_text(json.dumps(holder))
    code, _, err = run_main("runs", "prune", runs)
    assert code == 2 and "is in use by `deepvision train`" in err
    assert list(run.saved_epochs()) == [1, 2, 3, 4]


def test_bad_targets_are_one_line(runs, tmp_path):
    assert run_main("runs", "prune")[0] == 2
    code, _, err = run_main("runs", "prune", tmp_path / "nowhere")
    assert code == 2 and "run directory or folder of runs not found" in err
    import os

    os.mkfifo(tmp_path / "ff")
    code, _, err = run_main("runs", "prune", tmp_path / "ff")
    assert code == 2 and f"{tmp_path / 'ff'} is a FIFO, not a run directory or folder of runs" in err
    code, _, err = run_main("runs", tmp_path / "ff")
    assert code == 2 and f"{tmp_path / 'ff'} is a FIFO, not a runs folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_main("runs", "prune", tmp_path / "empty")
    assert code == 2 and "neither a run directory nor a folder of runs" in err
    code, _, err = run_main("runs", "prune", runs, "--keep", "-1")
    assert code == 2 and "--keep must be 0 or more" in err


def test_discarded_prune_never_follows_a_planted_link(tmp_path):
    """A discarded-* folder that is a symbolic link is refused in one line; a link inside a discarded
    folder is removed as a link, its target untouched."""
    run_path = tmp_path / "run"
    (run_path / "checkpoints").mkdir(parents=True)
    (run_path / "config.yaml").write_text("model: {name: lenet}\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.pt").write_bytes(b"precious")
    (run_path / "checkpoints" / "discarded-20260101").symlink_to(victim)
    code, _, err = run_main("runs", "prune", run_path, "--discarded")
    assert code == 2
    assert "symbolic link" in err and "Traceback" not in err
    assert (victim / "thesis.pt").read_bytes() == b"precious"

    (run_path / "checkpoints" / "discarded-20260101").unlink()
    inner = run_path / "checkpoints" / "discarded-20260102"
    inner.mkdir()
    (inner / "old.pt").write_bytes(b"x")
    (inner / "link.pt").symlink_to(victim / "thesis.pt")
    (inner / "sub").symlink_to(victim)
    doomed, _ = RunDir(run_path).prune(discarded=True)
    assert sorted(p.name for p in doomed) == ["link.pt", "old.pt", "sub"]
    assert not inner.exists()
    assert (victim / "thesis.pt").read_bytes() == b"precious"


def test_a_best_pt_linking_to_a_periodic_file_keeps_it_and_linked_runs_are_not_pruned(runs, tmp_path):
    """best.pt made a symbolic link to an epoch's file keeps that file (best.pt never dangles, the bytes
    reported are the bytes freed); a link to a run inside a runs folder is not followed by prune, as
    `runs` does not list it."""
    run = RunDir(runs / "all")
    saved = run.saved_epochs()
    best = run.checkpoints / "best.pt"
    best.unlink()
    best.symlink_to(saved[2].name)
    linked = tmp_path / "other"
    linked.mkdir()
    (linked / "all").symlink_to(runs / "all")
    code, _, err = run_main("runs", "prune", linked)
    assert code == 2 and "a link to a run is not followed: name the run itself" in err
    assert run.saved_epochs().keys() == saved.keys()
    code, out, _ = run_main("runs", "prune", linked / "all", "--dry-run")  # named itself: the user's choice
    assert code == 0 and f"{linked / 'all'} (a link to {(runs / 'all').resolve()}): would delete" in out
    code, out, err = run_main("runs", "prune", runs / "all")
    assert code == 0, err
    assert list(run.saved_epochs()) == [2] and best.resolve() == saved[2].resolve()  # the linked epoch stays
    assert load_checkpoint(best)["epoch"] == 2 and "(0 B)" not in out


def test_files_of_another_name_beside_the_checkpoints_are_not_the_runs(runs):
    """A user's copy (`mybackup-0002.pt`) or any `NAME-NNNN.pt` beside the run's periodic checkpoints is not
    one of them: prune leaves it and deletes only the run's own files."""
    run = RunDir(runs / "all")
    own = run.saved_epochs()
    prefix = own[1].name.rsplit("-", 1)[0]
    shutil.copy(own[2], run.checkpoints / "mybackup-0002.pt")
    (run.checkpoints / "notes-2026.pt").write_text("notes\n")
    shutil.copy(own[2], run.checkpoints / f"{prefix}-00002.pt")  # not a name the run writes
    (run.checkpoints / f"{prefix}-0099.pt").write_text("x\n")  # the run's name, but no checkpoint
    assert run.saved_epochs() == own
    code, out, err = run_main("runs", "prune", runs / "all")
    assert code == 0 and "2026" not in out, err
    assert (run.checkpoints / "mybackup-0002.pt").is_file() and (run.checkpoints / "notes-2026.pt").is_file()
    assert sorted(p.name for p in run.checkpoints.glob(f"{prefix}-*.pt")) == [f"{prefix}-00002.pt",
                                                                            f"{prefix}-0099.pt"]


def test_runs_out_without_compare_is_refused(runs, tmp_path):
    code, out, err = run_main("runs", runs, "--out", tmp_path / "table.txt")
    assert (code, out) == (2, "") and "--out is for `runs compare`" in err and not (tmp_path / "table.txt").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--keep", "3"], "--keep applies to `runs prune` only, not to `runs [DIR]` (the table)"),
    (["--dry-run"], "--dry-run applies to `runs prune` only, not to `runs [DIR]` (the table)"),
    (["--metrics", "val_acc"], "--metrics applies to `runs compare` only, not to `runs [DIR]` (the table)"),
    (["compare", "A", "B", "--keep", "0"], "--keep applies to `runs prune` only, not to `runs compare`"),
    (["compare", "A", "B", "--wide"], "--wide applies to `runs [DIR]` (the table) only, not to `runs compare`"),
    (["prune", "R", "--metrics", "val_acc"], "--metrics applies to `runs compare` only, not to `runs prune`"),
    (["prune", "R", "--markdown"], "--markdown applies to `runs [DIR]` (the table) only, not to `runs prune`"),
])
def test_an_option_of_another_mode_is_refused(tmp_path, argv, message):
    """Taken and ignored, it would go unnoticed (a listing given --dry-run would still write journal.csv)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    argv = [str(folder) if a in ("A", "B", "R") else a for a in argv]
    code, out, err = run_main("runs", *(argv if argv[0] in ("compare", "prune") else [folder, *argv]))
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err, err
    assert list(folder.iterdir()) == []


def test_a_checkpoint_linked_from_outside_the_run_frees_nothing(runs, tmp_path):
    """A hard link to a file elsewhere (a copy kept by hand) frees no byte when the run's name goes: the
    summary counted it as freed."""
    run = RunDir(runs / "all")
    saved = run.saved_epochs()
    kept = tmp_path / "keep.pt"
    total = run.checkpoint_disk_use()["total"]
    os.link(saved[1], kept)
    assert run.checkpoint_disk_use()["total"] == total - saved[1].stat().st_size  # the journal's figure too
    data = kept.read_bytes()
    best = int(load_checkpoint(run.checkpoints / "best.pt")["epoch"])
    alone = sum(p.stat().st_size for e, p in saved.items() if e not in (1, 4, best))  # 4 is last.pt's
    code, out, err = run_main("runs", "prune", runs / "all", "--keep", "0")
    assert code == 0, err
    from deepvision.runs.journal import format_bytes

    assert out.splitlines()[-1] == f"1 run: freed {format_bytes(alone)}"
    assert kept.read_bytes() == data


def _files(run: RunDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.checkpoints.iterdir()) if p.is_file()}


def test_the_default_prefix_applies_when_config_yaml_leaves_it_out(runs):
    """config.yaml without checkpoint.prefix names its files by the default prefix (the model name): a
    user's `backup-0007.pt` beside them is not the run's and stays."""
    run = RunDir(runs / "all")
    own = run.saved_epochs()
    shutil.copy(own[1], run.checkpoints / "backup-0007.pt")
    text = run.config_path.read_text()
    run.config_path.write_text(text.replace("  prefix: lenet\n", ""))
    assert "prefix" not in run.config_path.read_text() and run.saved_epochs() == own
    code, out, err = run_main("runs", "prune", runs / "all")
    assert code == 0 and f"{runs / 'all'}: deleted epochs 1-4 (" in out, err
    assert (run.checkpoints / "backup-0007.pt").is_file()


def test_a_run_whose_config_yaml_cannot_be_read_is_refused_before_any_run_is_pruned(runs, tmp_path):
    """Its checkpoint names are unknown: prune refuses the run in one line, and prunes no other run given
    with it; reading takes any prefix, but two files for one epoch are refused."""
    shutil.copytree(runs / "all", runs / "good")
    run, good = RunDir(runs / "all"), RunDir(runs / "good")
    shutil.copy(run.saved_epochs()[1], run.checkpoints / "mycopy-0001.pt")
    text = run.config_path.read_text()
    run.config_path.write_text(text.replace("  prefix: lenet\n", "  prefix: [lenet\n"))
    before, others = _files(run), _files(good)
    code, out, err = run_main("runs", "prune", runs)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"the checkpoint files of {run.path} cannot be told from others: " in err
    assert "restore config.yaml (its checkpoint.prefix names them)" in err
    assert _files(run) == before and _files(good) == others
    with pytest.raises(UserError, match=r"^lenet-0001.pt and mycopy-0001.pt in .* both hold epoch 1, and .*"
                                        r"config.yaml, which names the run's checkpoint prefix, cannot be read"):
        run.saved_epochs()


def test_without_best_pt_prune_keeps_the_best_epoch_that_run_json_records(runs):
    run = RunDir(runs / "all")
    state = run.read_state()
    state["best_epoch"] = 2
    run.write_state(state)
    (run.checkpoints / "best.pt").unlink()
    kept = run.saved_epochs()[2].read_bytes()
    code, out, err = run_main("runs", "prune", runs / "all")
    assert code == 0 and f"{runs / 'all'}: deleted epochs 1, 3-4 (" in out, err
    assert list(run.saved_epochs()) == [2] and run.saved_epochs()[2].read_bytes() == kept
