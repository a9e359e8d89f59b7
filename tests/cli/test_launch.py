"""--nproc-per-node: a whole number of processes in plain ASCII digits."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("text", ["0_2", "\u0662", "\uff12", "2.0", "two"])
def test_nproc_per_node_is_a_plain_whole_number(tmp_path, capsys, text):
    """int() reads '0_2' as 2 and other scripts' digits ('٢', full-width '２'): the launcher would start
    processes the command line does not show."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: lenet}\ndata: {source: digits, image_size: 28, channels: 1}\n")
    from deepvision.cli.main import main

    with pytest.raises(SystemExit) as stop:  # argparse's refusal
        main(["train", str(cfg), "--out", str(tmp_path / "runs"), "--nproc-per-node", text])
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == "" and err.count("\n") == 1, err
    assert f"--nproc-per-node: expected a whole number of processes, got {text!r}" in err, err
    assert not (tmp_path / "runs").exists()


def test_nproc_per_node_range_is_checked():
    import argparse

    from deepvision.cli.launch import nproc_type

    assert nproc_type("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match="expected 1 to 1024 processes, got 0"):
        nproc_type("0")
