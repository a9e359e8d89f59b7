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
