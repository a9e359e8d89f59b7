"""`deepvision evaluate` on a classification run: the report folder as a whole."""

from __future__ import annotations

import shutil

import pytest
import torch

from deepvision.api import train
from deepvision.errors import Terminated
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    cfg = tiny_config(1, max_samples=60, test_fraction=0.5, test=None)
    return train(cfg, out=tmp_path_factory.mktemp("runs"), name="digits").run_dir


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize(("stop", "code"), [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_a_stop_while_the_report_is_written_leaves_no_half_report(digits_run, tmp_path, run_cli, monkeypatch,
                                                                   stop, code):
    """Ctrl+C or SIGTERM after the confusion matrix is drawn: the run gains no empty eval/ folder, a new
    --out is not created, and an earlier report stays as it was, whole."""
    from deepvision.evaluation import evaluate

    assert run_cli("evaluate", digits_run, "--out", tmp_path / "earlier")[0] == 0
    before = _contents(tmp_path / "earlier")
    assert {"metrics.json", "confusion_matrix.png", "predictions.csv"} <= set(before)

    def stopped(*args):
        raise stop

    monkeypatch.setattr(evaluate, "_predictions_csv", stopped)
    for out in (None, tmp_path / "earlier", tmp_path / "new" / "report"):
        got, _, err = run_cli("evaluate", digits_run, *(("--out", out) if out else ()))
        assert (got, err.count("\n")) == (code, 1)
    assert not (digits_run / "eval").exists()
    assert _contents(tmp_path / "earlier") == before and sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]


def test_a_detection_run_refuses_the_options_it_would_ignore_and_takes_its_batch_size(tmp_path, run_cli, monkeypatch):
    """--crops and --skip-corrupt have no meaning for a detection run's mAP (one view per image, every image read):
    refused in one line, nothing written; --batch-size sets the batches it is scored in."""
    from deepvision.evaluation import detection
    from tests.detection_helpers import built_fake, make_detection_run

    run = make_detection_run(tmp_path / "runs", built_fake(tmp_path, images=4, size=96, seed=2),
                             ["disc", "square", "triangle"])
    cases = [(("--crops", "10", "--batch-size", "1", "--skip-corrupt"), "--crops and --skip-corrupt", "go"),
             (("--skip-corrupt",), "--skip-corrupt", "goes"),
             (("--crops", "2"), "--crops", "goes")]
    for args, given, verb in cases:
        code, out, err = run_cli("evaluate", run, *args)
        assert (code, out) == (2, "") and err.splitlines() == [
            f"deepvision evaluate: error: {given} {verb} with classification runs; {run} is a detection run (one "
            f"view per image, every image read): leave {given} out"], err
    assert not (run / "eval").exists()
    sizes = []
    loader = detection.BatchLoader
    monkeypatch.setattr(detection, "BatchLoader", lambda source, batch, **kw: sizes.append(batch) or
                        loader(source, batch, **kw))
    assert run_cli("evaluate", run, "--batch-size", "1", "--out", tmp_path / "one")[0] == 0
    assert sizes == [1] and (tmp_path / "one" / "metrics.json").is_file()


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("edit", "named"), [
    (("split_seed: 42", "split_seed: 7"), "data.split_seed: 42 -> 7"),
    (("test_fraction: 0.5", "test_fraction: 0.3"), "data.test_fraction: 0.5 -> 0.3"),
])
def test_splits_drawn_otherwise_by_a_hand_edit_are_refused(digits_run, tmp_path, run_cli, edit, named):
    """config.yaml edited by hand (data.split_seed 42 -> 7): evaluate drew the splits again and scored a "test"
    split holding images the run trained on, as the run's test score."""
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    text = (copy / "config.yaml").read_text()
    assert edit[0] in text
    (copy / "config.yaml").write_text(text.replace(edit[0], edit[1], 1))
    before = _files(copy)
    for split in ((), ("--data", "test"), ("--data", "train")):
        code, out, err = run_cli("evaluate", copy, *split)
        assert (code, out) == (2, "") and err == (
            f"deepvision evaluate: error: {copy / 'config.yaml'} draws the run's splits otherwise than best.pt was "
            f"trained with ({named}), so they would hold images it trained on; undo the edit: a run's held-out "
            f"splits never change\n")
    assert _files(copy) == before
    (copy / "config.yaml").write_text(text)  # undone: scored as before
    assert run_cli("evaluate", copy)[0] == 0


def test_a_hand_edited_sample_limit_is_refused(digits_run, tmp_path, run_cli):
    """data.max_samples edited in config.yaml: no training image enters the test split (it is carved before the
    limit), but a report over other samples would be listed as the run's test score."""
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    text = (copy / "config.yaml").read_text()
    assert "max_samples: 60" in text
    (copy / "config.yaml").write_text(text.replace("max_samples: 60", "max_samples: 20", 1))
    before = _files(copy)
    code, out, err = run_cli("evaluate", copy)
    assert (code, out) == (2, "") and err == (
        f"deepvision evaluate: error: {copy / 'config.yaml'} draws the run's splits otherwise than best.pt was "
        f"trained with (data.max_samples: 60 -> 20), its test score would be over other samples; undo the edit: "
        f"a run's held-out splits never change\n")
    assert _files(copy) == before


def test_a_split_edit_of_a_detection_run_is_refused(trained_detection_run, tmp_path, run_cli):
    copy = tmp_path / "det"
    shutil.copytree(trained_detection_run, copy)
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text.replace("split_seed: 42", "split_seed: 7", 1))
    before = _files(copy)
    code, out, err = run_cli("evaluate", copy)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "(data.split_seed: 42 -> 7)" in err, err
    assert _files(copy) == before


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_split_name_that_is_also_a_path_here_is_refused(digits_run, tmp_path, run_cli, monkeypatch, kind):
    """`evaluate RUN --data test` in a folder holding ./test scored the run's own test split without a word
    about the folder; `--data ./test` names the folder."""
    monkeypatch.chdir(tmp_path)
    if kind == "folder":
        (tmp_path / "test" / "zero").mkdir(parents=True)
    else:
        (tmp_path / "test").write_text("x.png 0\n")
    before = _files(digits_run)
    code, out, err = run_cli("evaluate", digits_run, "--data", "test", "--out", tmp_path / "report")
    assert (code, out) == (2, "") and err == (
        f"deepvision evaluate: error: 'test' is the run's test split and a {kind} in this folder; give --data "
        f"./test for the {kind}, or evaluate from another folder for the split\n")
    assert _files(digits_run) == before and not (tmp_path / "report").exists()
    code, _, err = run_cli("evaluate", digits_run, "--data", "./test", "--out", tmp_path / "report")
    assert "is the run's test split" not in err  # the path is read as the data (and found wanting here)
    monkeypatch.chdir(digits_run)  # no ./test here: the run's own split
    assert run_cli("evaluate", digits_run, "--data", "test", "--out", tmp_path / "report")[0] == 0


def test_out_never_replaces_another_runs_report_nor_writes_into_another_run(digits_run, tmp_path, run_cli):
    """`evaluate A --out B/eval/test-best` would replace run B's report and `runs` would show A's score as B's:
    a folder inside another run, or one holding a report another run wrote, is refused before any work; the
    run's own reports are replaced as before, and `runs` shows best.pt's score, never --last's."""
    import json
    import shutil

    from deepvision.runs.journal import journal

    runs = tmp_path / "runs"
    other = shutil.copytree(digits_run, runs / "other", ignore=shutil.ignore_patterns("eval"))
    code, _, err = run_cli("evaluate", other)
    assert code == 0, err
    own = other / "eval" / "test-best"
    before = _contents(own)
    report = json.loads(before["metrics.json"])
    assert report["run_id"] == json.loads((other / "run.json").read_text())["run_id"]
    for out in (own, other / "eval" / "new", other):
        code, _, err = run_cli("evaluate", digits_run, "--out", out)
        assert code == 2 and err.count("\n") == 1 and f"is inside the run {other}, not {digits_run}" in err
    assert _contents(own) == before and sorted(p.name for p in (other / "eval").iterdir()) == ["test-best"]

    theirs = tmp_path / "reports" / "x"
    theirs.mkdir(parents=True)
    for written in ({**report, "run_id": "0123456789abcdef"},  # another run's id; an earlier release's report
                    {k: v for k, v in report.items() if k != "run_id"} | {"run": str(tmp_path / "elsewhere")}):
        (theirs / "metrics.json").write_text(json.dumps(written, indent=2))
        code, _, err = run_cli("evaluate", digits_run, "--out", theirs)
        assert code == 2 and err.count("\n") == 1 and f"--out {theirs} holds the report of another run" in err
        assert sorted(p.name for p in theirs.iterdir()) == ["metrics.json"]
    (theirs / "metrics.json").write_text(json.dumps({**report, "run_id": json.loads(
        (digits_run / "run.json").read_text())["run_id"]}, indent=2))  # its own earlier report: replaced
    assert run_cli("evaluate", digits_run, "--out", theirs)[0] == 0

    code, _, err = run_cli("evaluate", other, "--last")
    assert code == 0, err
    last = json.loads((other / "eval" / "test-last" / "metrics.json").read_text())
    last["rank1"] = 0.01  # marked, so that the journal's number shows which report it took
    (other / "eval" / "test-last" / "metrics.json").write_text(json.dumps(last))
    (row,) = journal(runs)
    assert row["test_acc"] == report["rank1"]


def test_another_runs_checkpoint_is_named_as_such_before_the_split_check(digits_run, tmp_path, run_cli):
    """best.pt replaced by another run's: evaluate blamed an edit of config.yaml that never happened."""
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    best = copy / "checkpoints" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    ckpt["run_id"] = "f" * 32
    ckpt["config"]["data"]["val_fraction"] = 0.5  # its splits differ too: the run id is what is named
    torch.save(ckpt, best)
    code, out, err = run_cli("evaluate", copy)
    assert (code, out) == (2, "") and err.startswith(
        f"deepvision evaluate: error: {best} belongs to another run (run id ffffffff, this run is "), err


def test_a_detection_run_is_not_scored_on_its_dataset_rebuilt_since(trained_detection_run, tmp_path, run_cli):
    """The run's dataset rebuilt from other annotations (same class names) drew other splits, and the test split
    held images the run trained on: scored and listed as the run's test score. The run records its split files;
    a copy of them elsewhere is the run's data, a rebuild is refused until it is rebuilt as it was; a run trained
    before the record is compared with nothing."""
    from deepvision.datasets.detection import build_dataset, make_fake
    from deepvision.datasets.detection.build import read_annotations
    from tests.detection_helpers import run_on_a_copy_of_its_data

    copy, root = run_on_a_copy_of_its_data(trained_detection_run, tmp_path)
    recorded = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)["data_splits"]
    assert set(recorded["splits"]) == {"train", "test"}  # val is carved from train (data.val_fraction)
    assert run_cli("evaluate", copy, "--out", tmp_path / "moved")[0] == 0  # the same split files, moved
    shutil.copytree(root.parent, tmp_path / "kept")
    fake = make_fake(tmp_path / "other", "voc", images=12, size=96, seed=4)
    build_dataset(read_annotations("voc", fake.build_args[1:]), root)  # rebuilt from other annotations, in place
    before = _files(copy), _files(root.parent)
    train = recorded["splits"]["train"]
    for command, args in (("evaluate", ()), ("detection evaluate", ()), ("evaluate", ("--data", "test"))):
        code, out, err = run_cli(*command.split(), copy, *args)
        assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(
            f"deepvision {command}: error: the train split of "
            f"{root} is not the one best.pt was trained with (split 'train', {train['images']} images, sha256 "
            f"{train['sha256'][:12]} -> split 'train', "), err
        assert err.endswith("the dataset was rebuilt or edited since, and the run's held-out splits may hold images "
                            "it trained on; rebuild it as it was, or score other data with --data DIR: a run's "
                            "held-out splits never change\n"), err
    assert (_files(copy), _files(root.parent)) == before
    assert run_cli("evaluate", copy, "--data", root, "--out", tmp_path / "scored")[0] == 0  # other data, so named
    ckpt = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)
    del ckpt["data_splits"]  # a run trained before the record: nothing to compare with
    torch.save(ckpt, tmp_path / "best.pt")
    shutil.copy(copy / "checkpoints" / "best.pt", tmp_path / "recorded.pt")
    shutil.copy(tmp_path / "best.pt", copy / "checkpoints" / "best.pt")
    assert run_cli("evaluate", copy, "--out", tmp_path / "old")[0] == 0
    shutil.copy(tmp_path / "recorded.pt", copy / "checkpoints" / "best.pt")
    shutil.rmtree(root.parent)
    shutil.copytree(tmp_path / "kept", root.parent)  # rebuilt as it was
    assert run_cli("evaluate", copy, "--out", tmp_path / "again")[0] == 0


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    from tests.helpers import make_image_folder

    root = make_image_folder(tmp_path_factory.mktemp("data") / "images", n_per_class=15, size=16)
    cfg = tiny_config(1, source="folder", root=str(root), train=".", test=None, val_fraction=0.2,
                      test_fraction=0.2, batch_size=8)
    cfg["model"]["in_channels"] = 3
    return train(cfg, out=tmp_path_factory.mktemp("runs"), name="folder").run_dir, root


def test_a_classification_run_is_not_scored_on_splits_carved_from_changed_data(folder_run, tmp_path, run_cli):
    """Images added to the class folders since training made test_fraction carve other images, and the "test"
    split scored as the run's held images it trained on. The run records its splits' members: the same images
    elsewhere are the run's data, added images are refused; a run trained before the record is compared with
    nothing."""
    from tests.helpers import make_image_folder

    run_dir, root = folder_run
    copy, data = tmp_path / "run", tmp_path / "moved" / "images"
    shutil.copytree(run_dir, copy)
    shutil.copytree(root, data)
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text.replace(f"root: {root}\n", f"root: {data}\n", 1))
    recorded = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)["data_splits"]
    assert {r: s["count"] for r, s in recorded["splits"].items()} == {"train": 18, "val": 6, "test": 6}
    assert run_cli("evaluate", copy, "--out", tmp_path / "same")[0] == 0  # the same images, moved
    for image in make_image_folder(tmp_path / "more", n_per_class=10, size=16, seed=3).rglob("*.png"):
        shutil.copy(image, data / image.parent.name / f"new_{image.name}")
    before = _files(copy), _files(data)
    for args, role in (((), "test"), (("--data", "test"), "test"), (("--data", "val"), "val")):
        code, out, err = run_cli("evaluate", copy, *args)
        old = recorded["splits"][role]
        assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(
            f"deepvision evaluate: error: the {role} split of {data} is not the one best.pt was trained with "
            f"({old['count']} images, sha256 {old['sha256'][:12]} -> "), err
        assert err.endswith("images were added, moved or replaced since, and the run's held-out splits may hold "
                            "images it trained on; score other data with --data PATH: a run's held-out splits "
                            "never change\n"), err
    assert (_files(copy), _files(data)) == before
    assert run_cli("evaluate", copy, "--data", data, "--out", tmp_path / "other")[0] == 0  # other data, so named
    ckpt = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)
    del ckpt["data_splits"]  # a run trained before the record: nothing to compare with
    torch.save(ckpt, copy / "checkpoints" / "best.pt")
    assert run_cli("evaluate", copy, "--out", tmp_path / "old")[0] == 0


def test_a_label_beyond_the_runs_classes_names_its_record_or_file_as_the_data_does(digits_run, tmp_path, run_cli):
    """A record file's label beyond the run's classes was "sample 3" (counted from 1) where every record message
    says "record 2 (id ...) at byte offset ..." (from 0): the record is named that one way; a list's image by its
    file."""
    import numpy as np
    from PIL import Image

    from deepvision.data.records.header import IRHeader, pack_header
    from deepvision.datasets.records import RecordWriter

    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((8, 8), 90, np.uint8)).save(tmp_path / name)
    body = (tmp_path / "a.png").read_bytes()
    with RecordWriter(tmp_path / "x_val.rec") as w:
        offsets = [w.write(pack_header(IRHeader(0, float(label), 100 + k, 0), body), 100 + k)
                   for k, label in enumerate((0, 1, 12, 3))]
    (tmp_path / "l.lst").write_text("0\t0\ta.png\n1\t12\tb.png\n")
    before = _contents(tmp_path)
    for data, name in ((tmp_path / "x_val.rec", f"{tmp_path / 'x_val.rec'}: record 2 (id 102) at byte offset "
                                                f"{offsets[2]}"),
                       (tmp_path / "l.lst", tmp_path / "b.png")):
        code, out, err = run_cli("evaluate", digits_run, "--data", data, "--out", tmp_path / "eval")
        assert code == 2 and err == (f"deepvision evaluate: error: {name} has label 12, but the run has 10 classes "
                                     f"(labels 0..9); it was labelled for another model\n"), (out, err)
    assert _contents(tmp_path) == before and not (tmp_path / "eval").exists()


def test_evaluating_on_the_data_the_run_trained_from_is_said(tmp_path, run_cli):
    """`evaluate RUN --data FOLDER` on the run's own training folder scored training images without a word
    (training warns of a val split holding training images); the same folder through a link is said too."""
    import shutil

    from deepvision.api import train
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data", n_per_class=6, size=16)
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path / "data"), "train": ".", "val": None, "test": None,
                    "image_size": 16, "channels": 1, "batch_size": 4, "workers": 0}}
    run = train(cfg, out=tmp_path / "runs", name="t").run_dir
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    shutil.copytree(tmp_path / "data", tmp_path / "other")
    for given, said in ((tmp_path / "data", True), (tmp_path / "link", True), (tmp_path / "other", False)):
        code, out, err = run_cli("evaluate", run, "--data", given, "--out", tmp_path / f"e-{given.name}")
        assert code == 0, err
        warned = [line for line in out.splitlines() if line.startswith("[WARN]")]
        assert warned == ([f"[WARN] {given} is the data the run trained from ({tmp_path / 'data'}): its score does "
                           f"not measure generalisation"] if said else []), out


def test_evaluating_on_data_holding_the_runs_training_images_in_another_form_is_said(tmp_path, run_cli):
    """A folder run whose training split was carved out of its data, scored on that data; a list run scored on
    its images' folder, or on the record file packed from its training list: training images scored without
    a word. Other images of the same folder are not counted."""
    from deepvision.api import train
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data", n_per_class=10, size=16)
    data = {"image_size": 16, "channels": 1, "batch_size": 4, "workers": 0}
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path / "data"), "val": None, "test": None,
                    "val_fraction": 0.25, **data}}  # no train/ folder: the class folders at the root are train
    run = train(cfg, out=tmp_path / "runs", name="carved").run_dir
    total = len(list((tmp_path / "data").rglob("*.png")))
    (tmp_path / "link").symlink_to(tmp_path / "data", target_is_directory=True)
    for given in ("data", "link"):  # through a link to the folder too
        code, out, err = run_cli("evaluate", run, "--data", tmp_path / given, "--out", tmp_path / f"e1{given}")
        assert code == 0 and f"[WARN] {total - total // 4} of the {total} images of {tmp_path / given} are images " \
            f"the run trained on: its score does not measure generalisation" in out, (out, err)
    names = sorted(p.relative_to(tmp_path / "data") for p in (tmp_path / "data").rglob("*.png"))
    classes = sorted({p.parts[0] for p in names})
    (tmp_path / "t.lst").write_text("".join(f"{i}\t{classes.index(p.parts[0])}\t{p}\n" for i, p in
                                            enumerate(names[::2])))
    assert run_cli("im2rec", tmp_path / "t", tmp_path / "data")[0] == 0
    (tmp_path / "names.txt").write_text("".join(f"{c}\n" for c in classes))
    cfg["data"] = {"source": "lst", "train": str(tmp_path / "t.lst"), "val": None, "test": None,
                   "options": {"image_root": str(tmp_path / "data"), "labels": str(tmp_path / "names.txt")}, **data}
    run = train(cfg, out=tmp_path / "runs", name="listed").run_dir
    for given, said in ((tmp_path / "t.rec", f"t.rec is the data the run trained from ({tmp_path / 't.lst'})"),
                        (tmp_path / "data", f"{len(names[::2])} of the {total} images of {tmp_path / 'data'} are "
                                            f"images the run trained on")):
        code, out, err = run_cli("evaluate", run, "--data", given, "--out", tmp_path / f"e-{given.suffix}")
        assert code == 0 and f"[WARN] {tmp_path / said if said.startswith('t.') else said}" in out, (out, err)
