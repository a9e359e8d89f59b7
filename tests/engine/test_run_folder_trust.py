"""Run-folder writes that an attacker could redirect or split: train.log through a planted symlink or a
FIFO, class names with newlines in labels.txt."""

from __future__ import annotations

import os

import pytest

from deepvision.engine.reporting import Reporter, open_log
from deepvision.errors import UserError
from deepvision.runs.rundir import RunDir


def test_train_log_is_not_written_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").symlink_to(victim)
    with pytest.raises(UserError, match=r"train.log is a symbolic link; deepvision does not write through links"):
        Reporter(run / "train.log")
    assert victim.read_text() == "precious\n"


def test_train_log_is_not_appended_through_a_hard_link(tmp_path):
    """A hard link planted at RUN/train.log (O_NOFOLLOW does not see it) would put the log into the
    other file: refused, that file unchanged."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    os.link(victim, run / "train.log")
    with pytest.raises(UserError, match=r"train.log has 2 links \(a hard link to a file elsewhere\)"):
        Reporter(run / "train.log")
    assert victim.read_text() == "precious\n"


def test_train_log_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "train.log")
    with pytest.raises(UserError, match="is not a regular file"):
        open_log(tmp_path / "train.log")


def test_train_log_appends_to_a_regular_file(tmp_path):
    (tmp_path / "train.log").write_text("first\n")
    with open_log(tmp_path / "train.log") as f:
        f.write("second\n")
    assert (tmp_path / "train.log").read_text() == "first\nsecond\n"


@pytest.mark.parametrize("name", ["cat\ndog", "a\rb", "tab\there", "", "line\u2028sep"])
def test_labels_refuse_names_that_would_split_labels_txt(tmp_path, name):
    run = RunDir(tmp_path)
    with pytest.raises(UserError, match="holds a control character"):
        run.write_labels(["ok", name])
    assert not run.labels_path.exists()
    run.write_labels(["ok", "chat noir", "Ünïcode ok"])
    assert run.read_labels() == ["ok", "chat noir", "Ünïcode ok"]


def test_folder_source_refuses_a_class_folder_with_a_newline(tmp_path):
    import deepvision.data.sources  # noqa: F401 - registers every source, as the CLI does
    from deepvision.config.schema import DataConfig
    from deepvision.data.builtin_sources import folder_source

    for name in ("cat", "dog\nhorse"):
        (tmp_path / name).mkdir()
    with pytest.raises(UserError, match=r"class name 'dog\\nhorse' is empty or holds a control character"):
        folder_source(DataConfig(source="folder", root=str(tmp_path), train="."), ["."])


def test_a_runs_folder_inside_the_data_folder_is_refused_before_anything_is_made(tmp_path, run_cli):
    """train --out DATA (a folder source's root) would list the new run as a class and its plots as images."""
    import yaml

    from tests.helpers import make_image_folder, tiny_config

    data = make_image_folder(tmp_path / "imgs", n_per_class=4, size=28)
    cfg = tiny_config(1, source="folder", root=str(data), train=".", val=".", val_fraction=0.0, channels=1,
                      batch_size=4, workers=0)
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(cfg))
    before = sorted(p.name for p in data.iterdir())
    for out in (data, data / "horizontal" / "runs"):
        code, stdout, err = run_cli("train", tmp_path / "f.yaml", "--out", out)
        assert (code, stdout) == (2, "") and err.count("\n") == 1, err
        assert f"--out {out} is inside the data folder {data}" in err
    assert sorted(p.name for p in data.iterdir()) == before and not (data / "horizontal" / "runs").exists()
    cfg["data"]["train"] = "train"  # the default: root itself when it holds the class folders
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", tmp_path / "f.yaml", "--out", data / "horizontal" / "runs")
    assert code == 2 and f"is inside the data folder {data}" in err, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data / "horizontal" / "more").symlink_to(elsewhere)  # a linked folder is read as part of the class
    code, _, err = run_cli("train", tmp_path / "f.yaml", "--out", elsewhere / "runs")
    assert code == 2 and f"is inside the data folder {data}'s linked folder {data / 'horizontal' / 'more'}" in err, err
    (data / "horizontal" / "more").unlink()
    cfg["data"]["train"] = "."
    cfg["train"]["max_steps"] = 1
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", tmp_path / "f.yaml", "--out", tmp_path / "runs")
    assert code == 0, err
