"""The journal as a new user reads it: 80 columns with long run names, schedules summarised,
the best epoch's rank-1/rank-5 (rank-5 left out with <= 5 classes), checkpoint disk use; retention helpers."""

from __future__ import annotations

import os

import pytest

from deepvision.config import build_config
from deepvision.config.schema import CheckpointConfig
from deepvision.engine.schedules import Schedule
from deepvision.errors import UserError
from deepvision.runs.history import describe_lrs, lr_steps
from deepvision.runs.journal import journal, render_table, to_markdown
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config

LONG = ("resnet18-photos-lr0.01-cosine", "search-momentum0.9-wd5e-4-b64")  # 29 characters
LONGEST = "a-run-name-far-too-long-for-eighty-columns-lr0.01-momentum0.9-wd5e-4"


def fake_run(out, name, schedule, epochs, classes=10, best_at=None, status="finished", ckpts=3):
    """A run directory as training leaves it (config, labels, history, run.json, checkpoint files)."""
    cfg = tiny_config(epochs)
    cfg["schedule"] = schedule
    cfg = build_config(cfg)
    cfg.model.num_classes = classes
    run = RunDir.create(out, name)
    run.write_config(cfg)
    run.write_labels([f"c{i}" for i in range(classes)])
    sched = Schedule(cfg.schedule, cfg.optim.lr, epochs)
    rows = []
    for e in range(epochs):
        acc = 0.9 if e + 1 == best_at else 0.5 + e / (4 * epochs)
        rows.append({"epoch": e + 1, "lr": sched(e), "train_loss": 1 / (e + 1), "train_acc": acc, "train_top5": 0.9,
                     "val_loss": 1 / (e + 2), "val_acc": acc, "val_top5": 0.95 if e + 1 == best_at else 0.93,
                     "samples_per_s": 1000.0, "seconds": 10.0})
    run.write_history(rows)
    run.write_state({"status": status})
    for e in range(epochs - ckpts + 1, epochs + 1):
        (run.checkpoints / f"lenet-{e:04d}.pt").write_bytes(b"PK\x03\x04" + b"x" * 999_996)  # begins as a zip
    os.link(run.checkpoints / f"lenet-{epochs:04d}.pt", run.checkpoints / "last.pt")  # a link: counted once
    return run


@pytest.fixture
def runs(tmp_path):
    fake_run(tmp_path, LONG[0], {"name": "cosine"}, 8)
    fake_run(tmp_path, LONG[1], {"name": "piecewise", "ranges": ["1-50: 0.01", "51-65: 0.001", "66-70: 0.0001"]},
             70, best_at=60, status="interrupted")
    fake_run(tmp_path, "cats-dogs", {"name": "constant"}, 3, classes=2)
    return tmp_path


def test_schedules_are_summarised_and_only_steps_count():
    cosine = Schedule(build_config({"schedule": {"name": "cosine"}}).schedule, 0.05, 8)
    lrs = [cosine(e) for e in range(8)]
    assert describe_lrs(lrs, "cosine") == f"1-8: cosine 0.05→{lrs[-1]:.3g}"
    assert lr_steps(lrs) == []  # cosine moves every epoch: no step
    piecewise = [0.05, 0.05, 0.005, 0.005]
    assert describe_lrs(piecewise) == "1-2: 0.05; 3-4: 0.005" and lr_steps(piecewise) == [3]
    resumed = lrs[:5] + [0.001] * 3  # cosine, then a manual rate from epoch 6
    assert describe_lrs(resumed, "cosine") == f"1-5: cosine 0.05→{lrs[4]:.3g}; 6-8: 0.001"
    assert lr_steps(resumed) == [6]
    warm = [0.01, 0.03, 0.05, 0.05, 0.05]
    assert describe_lrs(warm) == "1-2: warm-up 0.01→0.03; 3-5: 0.05"


def test_journal_fits_80_columns_with_whole_names(runs, run_cli):
    code, out, err = run_cli("runs", runs)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in (*LONG, "cats-dogs"):
        assert any(name in line for line in lines), name  # whole, on one line
    assert "…" not in out
    assert "1-8: cosine" in out and "1-50: 0.01;" in out  # summarised, not one epoch per line
    assert len([line for line in lines if "cosine" in line or "0.05→" in line]) <= 2
    assert "stopped" in out  # the status column appears because one run was interrupted
    row = next(line for line in lines if line.startswith("cats-dogs"))
    assert row.split()[4:8] == ["66.67", "-", "3.0MB", "done"]  # 2 classes: no rank-5; 3 files of 1 MB (last.pt a link)


def test_wide_and_chosen_columns(runs, run_cli):
    code, out, _ = run_cli("runs", runs, "--wide")
    assert code == 0 and max(len(line) for line in out.splitlines()) > 80
    assert "samples" not in out and "img/s" in out and "last r1" in out
    code, out, _ = run_cli("runs", runs, "--columns", "name,best_epoch")
    header = out.splitlines()[1].split()
    assert code == 0 and header == ["run", "best"]
    assert any(line.split() == [LONG[1], "60"] for line in out.splitlines())
    code, _, err = run_cli("runs", runs, "--columns", "name,speed")
    assert code == 2 and "unknown journal column 'speed'" in err and err.count("\n") == 1
    for given, item in ((",", "column 1 of 2"), ("name,,best_epoch", "column 2 of 3")):  # the default table was shown
        code, out, err = run_cli("runs", runs, "--columns", given)
        assert (code, out) == (2, "") and err == f"deepvision runs: error: --columns: {item} is empty (two commas " \
                                                 f"in a row, or one at an end)\n"


def test_markdown_reports_the_best_epoch(runs):
    rows = {r["name"]: r for r in journal(runs)}
    row = rows[LONG[1]]
    assert row["best_epoch"] == 60 and row["best_val_acc"] == 0.9 and row["last_val_acc"] < 0.9
    md = to_markdown(list(rows.values()))
    assert f"| {LONG[1]} | lenet | 70 | 1-50: 0.01; 51-65: 0.001; 66-70: 0.0001 | 90.00 | 95.00 |" in md
    assert "| cats-dogs | lenet | 3 | 1-3: 0.05 | 66.67 | - |" in md
    assert rows["cats-dogs"]["best_val_top5"] is None and rows["cats-dogs"]["ckpt_bytes"] == 3_000_000


def test_table_without_rank5_or_unfinished_runs_drops_those_columns(tmp_path):
    fake_run(tmp_path, "cats-dogs", {"name": "constant"}, 3, classes=2)
    text = render_table(journal(tmp_path))
    header = text.splitlines()[0].split()
    assert "r5" not in header and "status" not in header and "all runs finished" in text


def test_retention_keeps_the_newest_and_the_protected(tmp_path):
    run = RunDir.create(tmp_path, "r")
    for e in range(1, 10):
        (run.checkpoints / f"lenet-{e:04d}.pt").write_bytes(b"PK\x03\x04")  # a zip's first bytes
    assert run.prune_checkpoints(None) == [] and len(run.saved_epochs()) == 9  # null keeps every one
    assert run.prune_checkpoints(3, protect={2}) == [1, 3, 4, 5, 6]
    assert list(run.saved_epochs()) == [2, 7, 8, 9]
    assert CheckpointConfig().keep == "auto"  # the profile decides
    assert build_config({}).checkpoint.keep == 2
    assert build_config({"profile": "reference"}).checkpoint.keep == 5
    assert build_config({"profile": "reference", "checkpoint": {"keep": 3}}).checkpoint.keep == 3
    assert build_config({"checkpoint": {"keep": None}}).checkpoint.keep is None


def test_a_name_longer_than_the_table_is_folded_whole(tmp_path):
    fake_run(tmp_path, LONGEST, {"name": "constant"}, 2)
    text = render_table(journal(tmp_path))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    first = next(i for i, line in enumerate(lines) if line.startswith(LONGEST[:10]))
    pieces = [lines[first].split()[0]]
    for line in lines[first + 1:]:
        if line[:1] in ("", " ") or "".join(pieces) == LONGEST:
            break
        pieces.append(line.split()[0])
    assert len(pieces) > 1 and all(p.endswith("-") for p in pieces[:-1])  # folded after a '-'
    assert "".join(pieces) == LONGEST  # every character kept


def test_disk_use_counts_links_once_and_names_what_resumes_set_aside(tmp_path):
    from deepvision.runs.journal import checkpoint_note

    run = fake_run(tmp_path, "r", {"name": "constant"}, 3, ckpts=2)  # lenet-0002, lenet-0003 = last.pt
    aside = run.checkpoints / "discarded-20260101-000000"
    aside.mkdir()
    os.link(run.checkpoints / "lenet-0002.pt", aside / "linked.pt")  # the same bytes as a kept file
    (aside / "lenet-0004.pt").write_bytes(b"x" * 500_000)
    assert run.checkpoint_disk_use() == {"total": 2_500_000, "discarded": 500_000, "files": 5}
    assert checkpoint_note(run.path, indent="  ") == (
        "  checkpoints: 2.5 MB (last.pt, epochs 2-3; checkpoint.keep 2)\n"
        "    of which 500 kB set aside by resumes in checkpoints/discarded-*/\n"
        "    1.5 MB of it is older epochs; to keep only last.pt and best.pt:\n"
        f"    deepvision runs prune {run.path} --discarded")


MIXED = [  # a classification and a detection journal in one table (rows as `journal` makes them)
    {"name": "emotion_vgg_e4", "epochs": 75, "status": "finished",
     "lr_schedule": "1-40: 0.01; 41-60: 0.001; 61-75: 0.0001",
     "best_val_acc": 0.6712, "best_val_top5": 0.99, "best_epoch": 70, "monitor": "val_acc", "best_value": 0.6712,
     "test_acc": 0.66, "test_value": 0.66, "ckpt_bytes": 45_000_000, "classes": 6},
    {"name": "detection_synthetic", "epochs": 40, "status": "finished", "lr_schedule": "1-40: cosine 0.002→0.00000123",
     "monitor": "val_map50", "best_value": 0.9012, "best_epoch": 38, "test_map50": 0.9123, "test_map": 0.61,
     "test_value": 0.9123, "ckpt_bytes": 689_000_000},
    {"name": "transfer_finetune", "epochs": 12, "status": "finished", "lr_schedule": "1-12: cosine 0.01→0.000546",
     "best_val_acc": 0.95, "monitor": "val_acc", "best_value": 0.95, "ckpt_bytes": 28_000_000, "classes": 2},
]


def test_mixed_tasks_keep_names_and_numbers_whole():
    lines = render_table(MIXED).splitlines()
    assert max(map(len, lines)) <= 80
    for row in MIXED:
        assert any(line.startswith(row["name"] + " ") for line in lines), row["name"]  # never folded
    text = "\n".join(lines)
    for number in ("0.002→0.00000123", "0.01→0.000546", "41-60: 0.001;", "61-75: 0.0001"):
        assert number in text  # schedule lines break between ranges and words, never inside a number
    head = lines[:2]
    assert head[0].split() == ["val", "val", "val", "test"] and head[1].split()[-4:] == ["r5", "best", "mAP50", "ckpt"]


def test_wide_shows_each_metric_once():
    from deepvision.runs.journal import header, wide_columns

    columns = wide_columns(MIXED)
    assert "best_value" in columns and "test_value" not in columns  # test mAP50 / test r1 have their own
    titles = [header(k, MIXED) for k in columns]
    assert len(titles) == len(set(titles))
    detection_only = [MIXED[1]]
    titles = [header(k, detection_only) for k in wide_columns(detection_only)]
    assert titles.count("test mAP50") == 1 and "val mAP50" in titles
    classification_only = [MIXED[0]]
    assert not {"best_value", "test_value"} & set(wide_columns(classification_only))


def test_journal_csv_replaces_only_a_journal_and_needs_runs(tmp_path, run_cli):
    mine = "date,experiment,notes\n2026-11-01,baseline,my precious lab notes\n"
    empty = tmp_path / "norun"
    empty.mkdir()
    code, out, err = run_cli("runs", empty)
    assert code == 0 and "no runs under" in out and err == "" and not (empty / "journal.csv").exists()
    (empty / "journal.csv").write_text(mine)
    code, out, err = run_cli("runs", empty)
    assert code == 0 and err == "" and (empty / "journal.csv").read_text() == mine

    runs = tmp_path / "runs"
    fake_run(runs, "cats-dogs", {"name": "constant"}, 3, classes=2)
    (runs / "journal.csv").write_text(mine)
    code, out, err = run_cli("runs", runs)
    assert code == 0 and "cats-dogs" in out  # the table is still printed
    assert err.count("\n") == 1 and "is not a deepvision journal; left as it is" in err
    assert (runs / "journal.csv").read_text() == mine
    (runs / "journal.csv").unlink()
    code, out, err = run_cli("runs", runs)
    assert code == 0 and err == ""
    written = (runs / "journal.csv").read_text()
    assert written.startswith("name,model,data,epochs,") and "cats-dogs" in written
    (runs / "journal.csv").write_text("name,epochs,path\nold,1,x\n")  # an older release's journal
    code, out, err = run_cli("runs", runs)
    assert code == 0 and err == "" and (runs / "journal.csv").read_text() == written


def test_best_epoch_skips_a_nan_accuracy(tmp_path):
    run = fake_run(tmp_path, "diverged", {"name": "constant"}, 3, classes=10)
    rows = run.read_history()
    for row, acc in zip(rows, (float("nan"), 0.8, 0.5)):
        row["val_acc"] = acc
    run.write_history(rows)
    (row,) = journal(tmp_path)
    assert row["best_val_acc"] == 0.8 and row["best_epoch"] == 2 and row["best_value"] == 0.8


def test_text_in_a_history_metric_marks_the_run_damaged(tmp_path, run_cli):
    good = fake_run(tmp_path, "good", {"name": "constant"}, 2)
    bad = fake_run(tmp_path, "bad", {"name": "constant"}, 2)
    text = bad.history_path.read_text().splitlines()
    cells = text[2].split(",")
    cells[text[0].split(",").index("val_acc")] = "\x1b[2Jx"
    bad.history_path.write_text("\n".join([*text[:2], ",".join(cells)]) + "\n")
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["good"]["best_val_acc"] is not None
    assert rows["bad"]["status"].startswith("damaged: ") and "line 3: val_acc" in rows["bad"]["status"]
    code, out, err = run_cli("runs", tmp_path, "--wide")
    assert code == 0 and "good" in out and "\x1b" not in out
    for args in (("plot", bad.path), ("runs", "compare", bad.path, good.path)):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and "history.csv is damaged" in err
        assert "'\\x1b[2Jx' is not a number" in err


@pytest.mark.parametrize("value", ["inf", "1e300", "1.5", "-0.1", "-inf"])
def test_an_accuracy_outside_0_to_1_marks_the_run_damaged(tmp_path, run_cli, value):
    """history.csv keeps accuracies as fractions (0.8 is 80%): 'inf' or 1e300 is no accuracy, so the run
    is damaged like one with text there (its cells show '-'); NaN (not measured) is still read."""
    fake_run(tmp_path, "good", {"name": "constant"}, 2)
    bad = fake_run(tmp_path, "bad", {"name": "constant"}, 2)
    text = bad.history_path.read_text().splitlines()
    cells = text[2].split(",")
    cells[text[0].split(",").index("val_acc")] = value
    bad.history_path.write_text("\n".join([*text[:2], ",".join(cells)]) + "\n")
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["bad"]["status"].startswith("damaged: ") and rows["bad"].get("best_val_acc") is None
    assert f"line 3: val_acc '{float(value)}' is not an accuracy from 0 to 1" in rows["bad"]["status"]
    assert rows["good"]["best_val_acc"] is not None
    cells[text[0].split(",").index("val_acc")] = "nan"
    bad.history_path.write_text("\n".join([*text[:2], ",".join(cells)]) + "\n")
    assert bad.read_history()[1]["val_acc"] != bad.read_history()[1]["val_acc"]  # NaN, read


def test_a_damaged_runs_long_reason_keeps_every_row_within_80_columns(tmp_path, run_cli):
    """The status cell says 'damaged'; the reason (a path and a sentence) is wrapped below the table."""
    fake_run(tmp_path, "good", {"name": "constant"}, 2)
    bad = fake_run(tmp_path, "a-damaged-run-with-a-long-name", {"name": "constant"}, 2)
    text = bad.history_path.read_text().splitlines()
    cells = text[2].split(",")
    cells[text[0].split(",").index("val_acc")] = "x" * 300
    bad.history_path.write_text("\n".join([*text[:2], ",".join(cells)]) + "\n")
    code, out, err = run_cli("runs", tmp_path)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    row = next(line for line in lines if line.startswith("a-damaged-run"))
    assert row.split()[-1] == "damaged"
    note = "".join(line.strip() for line in lines[lines.index(row) + 1:]).replace(" ", "")
    reason = f"a-damaged-run-with-a-long-name: {bad.history_path} is damaged (line 3: val_acc '{'x' * 17}...' is "
    assert (reason + "not a number)").replace(" ", "") in note
    code, wide, _ = run_cli("runs", tmp_path, "--wide")
    assert code == 0 and "damaged: " in wide  # --wide: as wide as it needs, the reason in its cell


def test_report_values_that_are_not_numbers_show_as_a_dash(tmp_path, run_cli):
    import json

    run = fake_run(tmp_path, "r", {"name": "constant"}, 2)
    report = run.folder("eval", "test-best") / "metrics.json"
    report.write_text(json.dumps({"rank1": "abc", "rank5": 0.9, "crops": [1]}))
    run.test_metrics_path.write_text(json.dumps({"test_acc": [0.9]}))
    (row,) = journal(tmp_path)
    assert row["test_acc"] is None and row["test_top5"] == 0.9
    code, out, err = run_cli("runs", tmp_path, "--columns", "name,test_acc")
    assert code == 0 and err == "" and ["r", "-"] in [line.split() for line in out.splitlines()]


@pytest.mark.parametrize("report", [{"rank1": 1.5, "rank5": 0.9}, {"rank1": -0.2, "rank5": 0.9},
                                    {"rank1": 0.8, "rank5": 0.9, "cross_entropy": -1.0}])
def test_report_accuracies_outside_0_to_1_and_negative_losses_show_as_a_dash(tmp_path, run_cli, report):
    """A report holds fractions from 0 to 1 and losses from 0, as history.csv does: a hand-edited 150% is
    left out (no run writes it), never shown as the run's test accuracy."""
    import json

    run = fake_run(tmp_path, "r", {"name": "constant"}, 2)
    (run.folder("eval", "test-best") / "metrics.json").write_text(json.dumps(report))
    run.test_metrics_path.write_text(json.dumps({"test_acc": 1.5, "test_map50": -0.1}))
    (row,) = journal(tmp_path)
    assert row["test_top5"] == 0.9 and row["test_acc"] == (0.8 if report["rank1"] == 0.8 else None)
    assert row.get("test_map50") is None
    code, out, err = run_cli("runs", tmp_path, "--columns", "name,test_acc")
    assert code == 0 and "150.00" not in out and "-20.00" not in out


def test_a_top5_below_top1_is_impossible_in_history_and_reports(tmp_path, run_cli):
    """Top-5 counts every top-1 hit (both come from one top-k), and mAP@[.5:.95] never exceeds mAP@.5: a
    history row breaking this marks the run damaged; a report's pair is left out ('-'), never shown."""
    import json

    bad = fake_run(tmp_path, "bad", {"name": "constant"}, 2)
    text = bad.history_path.read_text().splitlines()
    cells = text[2].split(",")
    cells[text[0].split(",").index("val_top5")] = "0.1"
    bad.history_path.write_text("\n".join([*text[:2], ",".join(cells)]) + "\n")
    report = fake_run(tmp_path, "report", {"name": "constant"}, 2)
    (report.folder("eval", "test-best") / "metrics.json").write_text(json.dumps({"rank1": 0.88, "rank5": 0.1}))
    report.test_metrics_path.write_text(json.dumps({"test_map50": 0.004, "test_map": 0.9}))
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert "line 3: val_top5 '0.1' is below the top-1 accuracy" in rows["bad"]["status"]
    assert rows["report"].get("test_acc") is None and rows["report"].get("test_top5") is None
    assert rows["report"].get("test_map") is None and rows["report"].get("test_map50") is None
    code, out, _ = run_cli("runs", tmp_path, "--columns", "name,test_acc,test_top5")
    assert code == 0 and "88.00" not in out and "10.00" not in out


def test_a_history_whose_epochs_disagree_with_run_json_marks_the_run_damaged(tmp_path, run_cli):
    """Another run's history.csv copied in (or another run's run.json): `runs` marks the run damaged and `plot`
    and `runs compare` refuse it, naming both files; a live or killed run's history may be one epoch ahead."""
    good = fake_run(tmp_path, "good", {"name": "constant"}, 3)
    good.write_state({"status": "finished", "epochs_done": 3})
    bad = fake_run(tmp_path, "h1", {"name": "constant"}, 3)
    bad.write_state({"status": "finished", "epochs_done": 3})
    other = fake_run(tmp_path.parent / f"{tmp_path.name}-other", "a", {"name": "constant"}, 1)
    bad.history_path.write_bytes(other.history_path.read_bytes())
    before = bad.history_path.read_bytes()
    message = (f"{bad.history_path} ends at epoch 1 but {bad.state_path} says 3 epoch(s) were done: one of them is "
               f"another run's or an old copy")
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["h1"]["status"].startswith(f"damaged: {message}") and rows["h1"].get("best_val_acc") is None
    assert rows["good"]["status"] == "finished" and rows["good"]["epochs"] == 3
    code, out, err = run_cli("runs", tmp_path)
    assert code == 0 and err == "" and "epoch(s) were done" in " ".join(out.split())
    for args in (("plot", bad.path), ("runs", "compare", bad.path, good.path)):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and message in err
    assert bad.history_path.read_bytes() == before and not any(bad.plots.iterdir())
    bad.write_state({"status": "running", "epochs_done": 0})  # history.csv is written just before run.json
    assert [r["epoch"] for r in bad.read_history()] == [1]
    bad.write_state({"status": "finished", "epochs_done": 0})
    with pytest.raises(UserError, match="ends at epoch 1 but"):
        bad.read_history()


@pytest.mark.parametrize("emptied", ["header", "zero bytes", "missing"])
def test_a_history_without_epochs_of_a_run_that_did_epochs_marks_it_damaged(tmp_path, run_cli, emptied):
    """A history.csv emptied to its header, to 0 bytes or deleted, of a run whose run.json says 3 epochs were
    done, disagrees as one ending at epoch 2 does: `runs` marks it damaged (never 0 epochs beside its scores),
    `plot` and `runs compare` refuse it in one line, and the file is left as it was."""
    good = fake_run(tmp_path, "good", {"name": "constant"}, 3)
    bad = fake_run(tmp_path, "bad", {"name": "constant"}, 3)
    bad.write_state({"status": "finished", "epochs_done": 3})
    if emptied == "missing":
        bad.history_path.unlink()
    else:
        bad.history_path.write_text("" if emptied == "zero bytes" else bad.history_path.read_text().split("\n")[0])
    before = bad.history_path.read_bytes() if emptied != "missing" else None
    held = "is missing" if emptied == "missing" else "holds no epoch"
    message = f"{bad.history_path} {held} but {bad.state_path} says 3 epoch(s) were done: restore the run's own"
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["bad"]["status"].startswith(f"damaged: {message}") and rows["bad"].get("epochs") is None
    assert rows["good"]["status"] == "finished" and rows["good"]["epochs"] == 3
    code, out, err = run_cli("runs", tmp_path)
    assert code == 0 and err == "" and "damaged" in out and "3 epoch(s) were done" in " ".join(out.split())
    for args in (("plot", bad.path), ("runs", "compare", bad.path, good.path)):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and message in err
    if before is None:
        assert not bad.history_path.exists()
    else:
        assert bad.history_path.read_bytes() == before
    assert not any(bad.plots.iterdir()) and not (tmp_path / "compare.png").exists()


def test_a_run_with_no_epoch_yet_or_an_imported_one_is_listed_without_history(tmp_path):
    """No epoch done (a run just started) and an imported run (its history starts after the epoch its weights
    came with) have no history rows and are listed; an imported run with epochs done since, and none in
    its history, is damaged."""
    new = fake_run(tmp_path, "new", {"name": "constant"}, 1)
    new.write_history([])
    new.write_state({"status": "interrupted", "epochs_done": 0})
    imported = fake_run(tmp_path, "imported", {"name": "constant"}, 1)
    imported.history_path.unlink()
    segments = [{"start_epoch": 5, "imported_from": "model.params"}]
    imported.write_state({"status": "imported", "epochs_done": 5, "segments": segments})
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["new"]["status"] == "interrupted" and rows["new"]["epochs"] == 0
    assert rows["imported"]["status"] == "imported" and rows["imported"]["epochs"] == 0
    imported.write_history([])  # resumed: history.csv is rewritten (the checkpoint holds none) before an epoch ends
    imported.write_state({"status": "interrupted", "epochs_done": 5, "segments": segments})
    assert imported.read_history() == []
    imported.write_state({"status": "finished", "epochs_done": 7, "segments": segments})
    with pytest.raises(UserError, match="holds no epoch but .* says 7 epoch"):
        imported.read_history()


def _report(run, folder, **fields):
    import json

    (run.folder("eval", folder) / "metrics.json").write_text(json.dumps({"run": str(run.path), **fields}))


def test_the_test_score_is_best_pts_never_another_checkpoints_or_another_runs(tmp_path):
    """`runs` shows best.pt's test score (test_metrics.json, or `evaluate`'s report of best.pt) beside the best
    epoch: a report of last.pt or of a saved epoch, of an earlier best.pt, or of another run (its run id, an
    earlier release's report naming another run folder, a test_metrics.json of another epoch count) is not it."""
    import json

    run = fake_run(tmp_path, "b3", {"name": "constant"}, 3, best_at=2)
    run.write_state({"status": "finished", "run_id": "aaaa1111", "epochs_done": 3, "best_epoch": 2})
    run.test_metrics_path.write_text(json.dumps({"split": "test", "run_id": "aaaa1111", "checkpoint": "best",
                                                 "epoch": 2, "epochs": 3, "test_acc": 0.7, "test_top5": 0.9}))
    ckpt = run.checkpoints
    _report(run, "test-last", run_id="aaaa1111", checkpoint=str(ckpt / "last.pt"), epoch=3, data="test", rank1=0.6)
    _report(run, "test-lenet-0003", run_id="aaaa1111", checkpoint=str(ckpt / "lenet-0003.pt"), epoch=3, rank1=0.6)
    _report(run, "test-best-2", run_id="aaaa1111", checkpoint=str(ckpt / "best.pt"), epoch=1, rank1=0.5)  # stale
    _report(run, "test-best-3", run_id="bbbb2222", checkpoint="runs/a/checkpoints/best.pt", epoch=2, rank1=0.88)
    (run.folder("eval", "test-best-4") / "metrics.json").write_text(json.dumps(  # an earlier release's report
        {"run": "runs/a", "checkpoint": "runs/a/checkpoints/best.pt", "epoch": 2, "rank1": 0.88}))
    (row,) = journal(tmp_path)
    assert (row["best_epoch"], row["test_acc"], row["test_top5"]) == (2, 0.7, 0.9)

    _report(run, "test-best", run_id="aaaa1111", checkpoint=str(ckpt / "best.pt"), epoch=2, rank1=0.75, rank5=0.95)
    (row,) = journal(tmp_path)
    assert (row["test_acc"], row["test_top5"]) == (0.75, 0.95)
    (run.eval_dir / "test-best" / "metrics.json").write_text(json.dumps(  # an earlier release's, of this run
        {"run": f"runs/{run.path.name}", "checkpoint": "best.pt", "epoch": 2, "rank1": 0.76}))
    assert journal(tmp_path)[0]["test_acc"] == 0.76

    for copied in ({"run_id": "bbbb2222"}, {"epochs": 1, "epoch": 1}, {"epoch": 1}):  # another run's, an old one
        run.eval_dir.joinpath("test-best", "metrics.json").unlink()
        trained = {"split": "test", "run_id": "aaaa1111", "checkpoint": "best", "epoch": 2, "epochs": 3,
                   "test_acc": 0.88}
        run.test_metrics_path.write_text(json.dumps({**trained, **copied}))
        (row,) = journal(tmp_path)
        assert row.get("test_acc") is None, copied
        _report(run, "test-best", checkpoint="best.pt", epoch=2, rank1=0.75)


def test_runs_compare_refuses_a_run_with_no_epoch_yet_as_plot_does(tmp_path, run_cli):
    """A run just started was drawn as a name in the legend without a curve, exit 0."""
    new = fake_run(tmp_path, "new", {"name": "constant"}, 1)
    new.write_history([])
    new.write_state({"status": "interrupted", "epochs_done": 0})
    done = fake_run(tmp_path, "done", {"name": "constant"}, 2)
    for args in (["plot", new.path], ["runs", "compare", done.path, new.path, "--out", tmp_path / "c.png"]):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and f"{new.history_path} holds no completed epoch yet" in err, err
    assert not (tmp_path / "c.png").exists()
    code, _, err = run_cli("runs", "compare", done.path, done.path.parent / "." / "done", "--out", tmp_path / "c.png")
    assert code == 2 and "names the run" in err
