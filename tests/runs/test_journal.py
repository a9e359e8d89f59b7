from deepvision.api import train
from deepvision.runs.journal import journal, to_markdown
from tests.helpers import tiny_config


def test_journal_reports_the_schedule_actually_used(tmp_path):
    cfg = tiny_config(4, max_samples=200)
    cfg["schedule"] = {"name": "piecewise", "ranges": ["1-2: 0.05", "3-4: 0.005"]}
    train(cfg, out=tmp_path, name="piecewise")
    rows = journal(tmp_path)
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "piecewise" and row["epochs"] == 4 and row["status"] == "finished"
    assert row["lr_schedule"] == "1-2: 0.05; 3-4: 0.005"
    assert 0 <= row["best_val_acc"] <= 1 and row["best_epoch"] in (1, 2, 3, 4)
    assert row["samples_per_s"] > 0 and row["s_per_epoch"] > 0
    assert "| piecewise | lenet | 4 | 1-2: 0.05; 3-4: 0.005 |" in to_markdown(rows)


def test_runs_compare_overlays_curves(tmp_path, run_cli):
    for lr in ("0.05", "0.01"):
        cfg = tiny_config(2, max_samples=200)
        cfg["optim"]["lr"] = float(lr)
        train(cfg, out=tmp_path, name=f"lr{lr}")
    code, out, err = run_cli("runs", "compare", tmp_path / "lr0.05", tmp_path / "lr0.01", "--out", tmp_path / "c.png")
    assert code == 0, err
    from PIL import Image

    assert Image.open(tmp_path / "c.png").size[0] > 1000  # two panels side by side
    code, _, err = run_cli("runs", "compare", tmp_path / "lr0.05")
    assert code == 2 and "at least two" in err
    code, _, err = run_cli("runs", "compare", tmp_path / "lr0.05", tmp_path / "lr0.01", "--metrics", "val_acc", "f1")
    assert code == 2 and "unknown metric 'f1'" in err
