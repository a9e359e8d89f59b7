"""Run-level reliability cases (docs/data-reliability.md): each reproduces a way a run could be lost
or written outside itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch

from deepvision.api import evaluate, resume, train
from deepvision.config import build_config
from deepvision.engine.callbacks import Callback
from deepvision.engine.distributed import DistInfo
from deepvision.engine.resolve import resolve_run
from deepvision.engine.signals import StopRequested
from deepvision.engine.trainer import Trainer
from deepvision.errors import UserError
from deepvision.runs.journal import journal
from deepvision.runs.lock import RunLock
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def _run(tmp_path, name="r", epochs=2, **model):
    cfg = tiny_config(epochs, max_samples=160)
    cfg["model"] = {"name": "lenet", **model}
    return RunDir(train(cfg, out=tmp_path, name=name).run_dir)


def _snapshot(run: RunDir) -> dict[str, bytes]:
    return {str(p.relative_to(run.path)): p.read_bytes() for p in sorted(run.path.rglob("*")) if p.is_file()}


def test_a_run_is_locked_while_a_process_trains_in_it(tmp_path):
    run = _run(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdout.write('x'); sys.stdout.flush(); "
                               "time.sleep(60)"], stdout=subprocess.PIPE)
    holder.stdout.read(1)
    (run.path / "run.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                   "since": "now", "command": "deepvision train x.yaml"}))
    try:
        before = _snapshot(run)
        with pytest.raises(UserError, match=rf"in use by `deepvision train x.yaml` \(PID {holder.pid}"):
            resume(run.path, overrides=["train.epochs=3"])
        assert _snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    assert len(resume(run.path, overrides=["train.epochs=3"]).history) == 3
    assert not (run.path / "run.lock").exists()
    assert run.status() == "finished"


def test_the_lock_is_reentrant_and_released(tmp_path):
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
        RunLock(tmp_path).acquire()  # the same process may enter again
    assert not (tmp_path / "run.lock").exists()


def test_flipped_bytes_in_a_checkpoint_are_refused(tmp_path):
    run = _run(tmp_path)
    last = run.checkpoints / "last.pt"
    data = bytearray(last.read_bytes())
    for i in range(2000, 2050):
        data[i] ^= 0x5A
    last.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"last.pt is corrupt"):
        resume(run.path, overrides=["train.epochs=3"])
    with pytest.raises(UserError, match=r"last.pt is corrupt"):
        evaluate(run.path, which="last", quiet=True)


def test_a_foreign_checkpoint_is_refused_and_changes_nothing(tmp_path):
    lenet = _run(tmp_path, "lenet")
    other = _run(tmp_path, "other")  # same model, another run
    shutil.copy(other.checkpoints / "last.pt", lenet.checkpoints / "last.pt")
    before = _snapshot(lenet)
    with pytest.raises(UserError, match="belongs to another run"):
        resume(lenet.path, overrides=["train.epochs=3"])
    with pytest.raises(UserError, match="belongs to another run"):
        evaluate(lenet.path, which="last", quiet=True)
    assert _snapshot(lenet) == before


@pytest.mark.parametrize("section, key, value", [
    ("checkpoint", "prefix", "../../../x"), ("checkpoint", "prefix", "/tmp/x"), ("checkpoint", "prefix", "a\tb"),
    (None, "name", "a\nb"), (None, "name", ".."), (None, "name", "a\\b"), (None, "name", "x "), (None, "name", " "),
    ("checkpoint", "prefix", " ckpt")])
def test_names_that_would_escape_the_run_are_refused(section, key, value):
    cfg = tiny_config(1)
    if section:
        cfg[section] = {key: value}
    else:
        cfg[key] = value
    with pytest.raises(UserError, match="must be a plain (file|folder) name|^name: an empty value"):  # " ": empty
        build_config(cfg)


def test_a_checkpoint_config_with_an_escaping_prefix_is_refused(tmp_path):
    run = _run(tmp_path)
    ckpt = torch.load(run.checkpoints / "last.pt", weights_only=True)
    ckpt["config"]["checkpoint"]["prefix"] = "../../escaped"
    torch.save(ckpt, run.checkpoints / "last.pt")
    with pytest.raises(UserError, match="checkpoint.prefix must be a plain file name"):
        resume(run.path, overrides=["train.epochs=3"])
    assert not list(tmp_path.rglob("escaped*"))


def test_damaged_run_metadata_gives_one_line_and_the_journal_lists_the_rest(tmp_path, run_cli):
    good, bad = _run(tmp_path, "good"), _run(tmp_path, "bad")
    bad.state_path.write_text('["not", "an", "object"]')
    with pytest.raises(UserError, match="run.json is damaged"):
        resume(bad.path, overrides=["train.epochs=3"])
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["good"]["status"] == "finished" and rows["bad"]["status"].startswith("damaged: ")
    good.history_path.write_bytes(bytes(range(256)) * 4)
    code, _, err = run_cli("plot", good.path)
    assert code == 2 and "history.csv is damaged" in err and "Traceback" not in err


def test_killed_start_up_and_killed_runs_are_detected(tmp_path):
    dead = tmp_path / "r"
    (dead / "checkpoints").mkdir(parents=True)
    (dead / "run.json").write_text('{"status": "starting"}')
    assert RunDir.create(tmp_path, "r").path == dead  # the name is not used up by a start-up that died
    run = _run(tmp_path, "k")
    state = run.read_state()
    state["status"] = "running"  # as left by SIGKILL: no live process holds the run
    run.write_state(state)
    assert run.status() == "killed"


class _StopAt(Callback):
    main_only = False

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_batch_end(self, epoch: int, batch: int) -> None:
        if (epoch, batch) == self.at:
            self.trainer.stop.signum = signal.SIGINT


def test_an_interrupt_in_the_first_epoch_prints_a_command_that_works(tmp_path, run_cli):
    cfg = build_config(tiny_config(2, max_samples=160))
    run = RunDir.create(tmp_path, "first")
    run.write_state({"status": "running", "run_id": "abc"})
    resolved = resolve_run(cfg)
    run.write_config(resolved.cfg)
    trainer = Trainer(resolved, run, dist=DistInfo(), device=torch.device("cpu"), callbacks=[_StopAt(0, 1)])
    with pytest.raises(StopRequested) as stop:
        trainer.fit()
    assert stop.value.epochs_done == 0 and not run.has_checkpoints()
    assert "no epoch was completed" in run.log_path.read_text()
    code, out, err = run_cli("resume", run.path)  # the command the interrupt printed
    assert code == 0, err
    assert len(run.read_history()) == 2 and run.read_state()["segments"][-1]["restart"] is True


def test_unreadable_data_fails_loudly_with_one_line_and_a_listing(tmp_path, run_cli):
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "all_bad", n_per_class=4, size=16)
    for p in (tmp_path / "all_bad").rglob("*.png"):
        p.write_bytes(b"not an image")
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path), "train": "all_bad", "val": None, "test": None,
                    "image_size": 16, "channels": 1, "batch_size": 4, "workers": 0, "skip_corrupt": True}}
    with pytest.raises(UserError, match=r"all 8 train samples are unreadable .*skipped.txt\); nothing to train"):
        train(cfg, out=tmp_path / "runs", name="bad")
    make_image_folder(tmp_path / "some_bad", n_per_class=10, size=16)
    (tmp_path / "some_bad" / "vertical" / "vertical_003.png").write_bytes(b"")
    cfg["data"]["train"] = "some_bad"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-epoch UserWarning any more: one line in the log instead
        result = train(cfg, out=tmp_path / "runs", name="ok")
    assert "skipped 1 of 20 train samples" in (result.run_dir / "train.log").read_text()
    assert (result.run_dir / "skipped.txt").read_text().split("\t")[2].strip().endswith("vertical_003.png")


def test_disk_full_without_a_previous_file_does_not_claim_one_is_intact(tmp_path, monkeypatch):
    import errno

    from deepvision.runs.checkpoint import atomic_save

    def full_disk(obj, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError) as err:
        atomic_save({"x": 1}, tmp_path / "new.pt")
    assert "No space left on device" in str(err.value) and "intact" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_offers_the_skip_it_suggests(tmp_path, run_cli):
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data", n_per_class=6, size=16)
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path / "data"), "train": ".", "val": None, "test": None,
                    "image_size": 16, "channels": 1, "batch_size": 4, "workers": 0}}
    run = train(cfg, out=tmp_path / "runs", name="e").run_dir
    (tmp_path / "data" / "vertical" / "vertical_002.png").write_bytes(b"")
    code, _, err = run_cli("evaluate", run, "--data", tmp_path / "data")
    assert code == 2 and "vertical_002.png" in err
    code, out, err = run_cli("evaluate", run, "--data", tmp_path / "data", "--skip-corrupt")
    assert code == 0, err
    assert json.loads((run / "eval" / "data-best" / "metrics.json").read_text())["samples"] == 11
    assert [line for line in err.splitlines() if "skipped" in line] == [
        f"[WARN] skipped 1 unreadable sample(s) of 12 (--skip-corrupt; first: "
        f"{tmp_path / 'data' / 'vertical' / 'vertical_002.png'}); scored the rest"], err
    # the run's data.max_skipped_fraction (0.1) bounds what --skip-corrupt leaves out, as in training
    for name in ("vertical_003.png", "vertical_004.png"):
        (tmp_path / "data" / "vertical" / name).write_bytes(b"")
    code, _, err = run_cli("evaluate", run, "--data", tmp_path / "data", "--skip-corrupt", "--out", tmp_path / "e")
    assert code == 2 and err.count("\n") == 1 and "3 of 12 " in err, err
    assert "more than data.max_skipped_fraction=0.1; repair or remove those files" in err
    assert not (tmp_path / "e").exists()
    for image in (tmp_path / "data").rglob("*.png"):
        image.write_bytes(b"")
    code, _, err = run_cli("evaluate", run, "--data", tmp_path / "data", "--skip-corrupt", "--out", tmp_path / "e")
    assert code == 2 and err.count("\n") == 1
    assert "no sample of the" in err and "every one was unreadable and skipped" in err
    assert not (tmp_path / "e").exists()


def test_runs_compare_refuses_an_out_file_in_a_folder_that_does_not_exist(tmp_path, run_cli):
    import shutil

    run = _run(tmp_path / "runs", "a", epochs=1)
    other = tmp_path / "runs" / "b"
    shutil.copytree(run.path, other)  # a second run to compare with (one run named twice is refused)
    missing = tmp_path / "nonexistent" / "deeper" / "c.png"
    code, out, err = run_cli("runs", "compare", run.path, other, "--out", missing)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"the folder {missing.parent} does not exist" in err and f"mkdir -p {missing.parent}" in err
    assert not (tmp_path / "nonexistent").exists()  # nothing created
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("runs", "compare", run.path, other, "--out", tmp_path / "afile" / "c.png")
    assert code == 2 and "is not a folder" in err
    (tmp_path / "dir.png").mkdir()
    code, _, err = run_cli("runs", "compare", run.path, other, "--out", tmp_path / "dir.png")
    assert code == 2 and "is a folder" in err
    code, out, err = run_cli("runs", "compare", run.path, other, "--out", tmp_path / "c.png")
    assert code == 0, err
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_compare_never_writes_over_a_file_of_a_compared_run(tmp_path, run_cli):
    run = _run(tmp_path / "runs", "a", epochs=1)
    other = tmp_path / "b"
    shutil.copytree(run.path, other)
    (other / "eval").mkdir(exist_ok=True)
    (other / "eval" / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n a report")
    (tmp_path / "link.png").symlink_to(other / "eval" / "confusion_matrix.png")
    (run.path / "sample.png").write_bytes(b"\x89PNG\r\n\x1a\n a sample")
    before = _snapshot(run), _snapshot(RunDir(other))
    run_cli("runs", tmp_path / "runs")  # the training's output is read here
    for target in (run.path / "sample.png", tmp_path / "runs" / "a" / ".." / "a" / "sample.png", tmp_path / "link.png"):
        code, out, err = run_cli("runs", "compare", run.path, other, "--out", target)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"deepvision runs: error: --out {target} is an input of this command "), err
        assert "choose another output file" in err
    assert (_snapshot(run), _snapshot(RunDir(other))) == before
    code, out, err = run_cli("runs", "compare", run.path, other, "--out", run.path / "compare.png")
    assert code == 0, err  # a new file may go anywhere


def test_runs_on_a_read_only_folder_says_journal_csv_was_not_written(tmp_path, run_cli, monkeypatch):
    import errno
    import tempfile

    runs = tmp_path / "runs"
    _run(runs, "a", epochs=1)
    code, out, err = run_cli("runs", runs)
    assert code == 0 and err == "" and (runs / "journal.csv").is_file()
    (runs / "journal.csv").unlink()
    runs.chmod(0o555)
    try:
        if os.access(runs, os.W_OK):  # root ignores the mode: make the write fail as a read-only mount would
            def read_only(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))

            monkeypatch.setattr(tempfile, "mkstemp", read_only)
        code, out, err = run_cli("runs", runs)
        monkeypatch.undo()
    finally:
        runs.chmod(0o755)
    assert code == 0 and "1 run in" in out and "\na " in out  # the runs are still listed
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepvision runs: warning: could not write ")
    assert "journal.csv" in lines[0] and ("Read-only file system" in lines[0] or "Permission denied" in lines[0])
    assert not (runs / "journal.csv").exists()


@pytest.mark.parametrize("field, value", [("best_epoch", [1]), ("segments", None), ("epochs_done", "2"),
                                          ("segments", [1, 2])])
def test_run_json_fields_of_the_wrong_type_are_damage_before_anything_changes(tmp_path, run_cli, field, value):
    from tests.runs.test_journal_table import fake_run

    fake_run(tmp_path, "good", {"name": "constant"}, 2)
    bad = fake_run(tmp_path, "bad", {"name": "constant"}, 2)
    bad.write_state({"status": "finished", "run_id": "x", "epochs_done": 2, "segments": [], field: value})
    before = _snapshot(bad)
    with pytest.raises(UserError, match=rf"run.json is damaged \({field} is .*, not "):
        resume(bad.path, overrides=["train.epochs=3"])
    assert _snapshot(bad) == before  # config.yaml not rewritten
    code, out, err = run_cli("runs", tmp_path, "--wide")
    assert code == 0 and "Traceback" not in err and "good" in out
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["good"]["status"] == "finished" and rows["bad"]["status"].startswith("damaged: ")


def test_a_checkpoint_with_nan_weights_is_refused_by_every_loader(tmp_path, run_cli):
    """A run whose best.pt holds NaN (a valid zip: its checksums pass) names the weight in one line
    for predict, evaluate and export instead of answering "nan%"; an earlier epoch still loads."""
    from PIL import Image

    run = _run(tmp_path, epochs=2)
    best = run.path / "checkpoints" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    for tensor in ckpt["model_state"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    best.unlink()  # best.pt may share its file with an epoch's checkpoint
    torch.save(ckpt, best)
    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    before = _snapshot(run)
    for args in (["predict", run.path, tmp_path / "x.png"], ["evaluate", run.path],
                 ["export", run.path, "--out", tmp_path / "m.onnx"]):
        code, _, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"checkpoint {best}: weight 'features.0.weight' holds NaN or infinite values" in err
    assert _snapshot(run) == before and not (tmp_path / "m.onnx").exists()
    code, _, err = run_cli("predict", run.path, tmp_path / "x.png", "--epoch", "1")
    assert code == 0 and "nan" not in err, err


def test_finite_weights_that_overflow_and_bad_weight_files_are_refused(tmp_path, run_cli):
    """Weights finite but huge (every output inf or NaN) end predict and evaluate in one line instead of
    "nan%" and a report; a --weights file with NaN, or integer tensors where the model holds floats, is
    refused as run checkpoints are."""
    from PIL import Image

    run = _run(tmp_path, epochs=1)
    best = run.path / "checkpoints" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    for tensor in ckpt["model_state"].values():
        if tensor.is_floating_point():
            tensor.fill_(3e38)
    best.unlink()
    torch.save(ckpt, best)
    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    for args in (["predict", run.path, tmp_path / "x.png"], ["evaluate", run.path],
                 ["export", run.path, "--out", tmp_path / "m.onnx"]):
        code, out, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "nan%" not in out, err
        assert "the model's output holds NaN or infinite values (its weights overflow float32" in err
    assert not (run.path / "eval").exists() and not (tmp_path / "m.onnx").exists()
    state = {k: v.clone() for k, v in ckpt["model_state"].items()}
    state["features.0.weight"].fill_(float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    code, _, err = run_cli("classify", "--model", "lenet", "--weights", tmp_path / "nan.pt", tmp_path / "x.png")
    assert code == 2 and f"weights file {tmp_path / 'nan.pt'}: weight 'features.0.weight' holds NaN" in err
    state["features.0.weight"] = torch.zeros_like(state["features.0.weight"], dtype=torch.int64)
    torch.save(state, tmp_path / "int.pt")
    code, _, err = run_cli("classify", "--model", "lenet", "--weights", tmp_path / "int.pt", tmp_path / "x.png")
    assert code == 2 and "tensor 'features.0.weight' holds torch.int64 where the model holds torch.float32" in err


def test_a_checkpoint_with_negative_batchnorm_variances_is_refused(tmp_path):
    from deepvision.models.weights import check_weights_finite

    state = {"bn.weight": torch.ones(3), "bn.running_var": torch.tensor([1.0, -0.5, 2.0])}
    with pytest.raises(UserError, match=r"^ckpt: weight 'bn.running_var' holds negative variances; fix it$"):
        check_weights_finite(state, "ckpt", "fix it")
    check_weights_finite({"bn.running_var": torch.ones(3)}, "ckpt", "fix it")


def test_a_number_too_long_for_json_is_named_in_run_and_preprocess_files(tmp_path, run_cli):
    """A 5,000-digit number in run.json or preprocess.json is named as such, not as "not a JSON object"
    (run.json is one) or "missing" (preprocess.json is there)."""
    run = _run(tmp_path, epochs=1)
    state = run.state_path.read_text()
    run.state_path.write_text(state.replace('"epochs_done": 1', '"epochs_done": ' + "9" * 5000))
    code, _, err = run_cli("resume", run.path, "--set", "train.epochs=2")
    assert code == 2 and len(err.splitlines()) == 1 and "an integer of 5,000 digits" in err
    run.state_path.write_text(state)
    pre = run.preprocess_path.read_text()
    run.preprocess_path.write_text(pre.replace('"channels": 1', '"channels": ' + "9" * 5000))
    code, _, err = run_cli("evaluate", run.path)
    assert code == 2 and len(err.splitlines()) == 1 and "preprocess.json is not valid JSON: an integer of 5,000" in err


def test_labels_reordered_against_the_checkpoint_and_outputs_in_the_data_are_refused(tmp_path, run_cli):
    """labels.txt with two names swapped would relabel every answer (the checkpoint stores the names it was
    trained with); names given to numbered classes stay allowed. A report or runs comparison lands
    outside the run's data and names each run once."""
    from PIL import Image

    run = _run(tmp_path, epochs=1)
    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    names = run.labels_path.read_text().splitlines()
    assert names == [str(i) for i in range(10)]  # digits: numbered classes may be given names
    run.labels_path.write_text("\n".join(["zero", *names[1:]]) + "\n")
    code, out, err = run_cli("predict", run.path, tmp_path / "x.png")
    assert code == 0, err
    run.labels_path.write_bytes("\r\n".join(names).encode() + b"\r\n")  # saved on Windows: the same names
    assert run.read_labels() == names
    run.labels_path.write_bytes("\r".join(names).encode() + b"\r")  # old Mac line ends
    assert run.read_labels() == names
    swapped = [*names]
    swapped[2], swapped[7] = "7", "2"  # the numbers themselves moved: digit 2 would be answered as 7
    run.labels_path.write_text("\n".join(swapped) + "\n")
    code, out, err = run_cli("predict", run.path, tmp_path / "x.png")
    assert (code, out) == (2, "") and "labels.txt line 3 names '7' but the checkpoint was trained with '2'" in err
    from deepvision.runs.checkpoint import load_checkpoint

    best = run.path / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    ckpt["classes"] = [f"c{i}" for i in range(10)]
    best.unlink()
    torch.save(ckpt, best)
    run.labels_path.write_text("\n".join(["c0", "c1", "c3", "c2", *[f"c{i}" for i in range(4, 10)]]) + "\n")
    code, out, err = run_cli("predict", run.path, tmp_path / "x.png")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "labels.txt line 3 names 'c3' but the checkpoint was trained with 'c2' there" in err
    code, _, err = run_cli("runs", "compare", run.path, run.path.parent / "." / run.path.name, "--out",
                           tmp_path / "c.png")
    assert code == 2 and "names the run" in err and "again; name each run once" in err


def test_reports_never_land_in_the_runs_own_data(tmp_path, run_cli):
    import yaml

    from tests.helpers import make_image_folder

    data = make_image_folder(tmp_path / "imgs", n_per_class=4, size=28)
    cfg = tiny_config(1, source="folder", root=str(data), train=".", val_fraction=0.25, channels=1, batch_size=4,
                      workers=0)
    cfg["train"]["max_steps"] = 1
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(cfg))
    assert run_cli("train", tmp_path / "f.yaml", "--out", tmp_path / "runs", "--name", "two")[0] == 0
    before = sorted(p.name for p in (data / "vertical").iterdir())
    for args in (("evaluate", tmp_path / "runs" / "two", "--out", data / "vertical"),
                 ("stl10", "report", tmp_path / "runs" / "two", "--out", data)):
        code, out, err = run_cli(*args)
        assert (code, out) == (2, "") and "is inside the data folder" in err, err
    assert sorted(p.name for p in (data / "vertical").iterdir()) == before


@pytest.mark.parametrize("pid", [99999999999999999999, 0, -1, 1.5, True, "12"])
def test_a_lock_naming_no_possible_process_is_stale(pid):
    """A PID beyond C's long ended resume and runs prune in an OverflowError traceback; 0 and -1 (a process
    group, every process) held the run for ever; 1.5 and true were read as PID 1."""
    import socket

    from deepvision.runs.lock import is_stale

    assert is_stale({"pid": pid, "host": socket.gethostname()})
    assert not is_stale({"pid": os.getpid(), "host": socket.gethostname()})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("run_id", 5, "its run_id is '5', not a run id"),
    ("epoch", -3, "its epoch is '-3', not a whole number from 0 to 100,000"),
    ("epoch", 10**30, "its epoch is '1000000000000000000000000000000', not a whole number"),
    ("epoch", 1.5, "its epoch is '1.5', not a whole number"),
])
def test_checkpoint_fields_of_the_wrong_type_or_range_are_named(tmp_path, field, value, message):
    """run_id 5 ended every loader in a TypeError traceback; epoch 10**30 was reported as the epoch scored."""
    from deepvision.runs.checkpoint import FORMAT, load_checkpoint

    path = tmp_path / "c.pt"
    torch.save({"format": FORMAT, "model_state": {}, "run_id": "ab12", "epoch": 1, field: value}, path)
    with pytest.raises(UserError, match=rf"^{path}: {message}"):
        load_checkpoint(path)


def test_a_run_name_in_another_unicode_spelling_is_taken(tmp_path):
    """'café' precomposed and as macOS spells it (e + U+0301) were two folders that `runs` listed as two
    identical rows; the second is now café-2, as a second run of one name is."""
    from deepvision.runs.rundir import RunDir

    (tmp_path / "cafe\u0301").mkdir()
    (tmp_path / "cafe\u0301" / "config.yaml").write_text("name: x\n")  # a run started under that spelling
    second = RunDir.create(tmp_path, "caf\u00e9")
    (second.path / "config.yaml").write_text("name: x\n")
    third = RunDir.create(tmp_path, "cafe\u0301")
    assert [second.path.name, third.path.name] == ["caf\u00e9-2", "caf\u00e9-3"]


def test_best_pt_missing_or_of_another_epoch_is_named_not_replaced(tmp_path, run_cli):
    """Without best.pt the loaders name run.json's best epoch (--epoch N) instead of taking the newest file;
    a best.pt holding another epoch than run.json's best is refused naming both; nothing changes."""
    from PIL import Image

    run = _run(tmp_path, epochs=2)
    best_epoch = run.read_state()["best_epoch"]
    saved = run.saved_epochs()
    best = run.checkpoints / "best.pt"
    best.unlink()
    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    before = _snapshot(run)
    for args in (["evaluate", run.path], ["predict", run.path, tmp_path / "x.png"],
                 ["export", run.path, "--out", tmp_path / "m.onnx"]):
        code, _, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert (f"{best} is missing; run.json records epoch {best_epoch} as the best, saved as "
                f"{saved[best_epoch].name}: name it with --epoch {best_epoch}") in err
    assert _snapshot(run) == before and not (tmp_path / "m.onnx").exists()
    code, _, err = run_cli("predict", run.path, tmp_path / "x.png", "--epoch", best_epoch)
    assert code == 0, err
    other = 3 - best_epoch
    shutil.copyfile(saved[other], best)  # a copy of the other epoch, same run id
    before = _snapshot(run)
    code, _, err = run_cli("evaluate", run.path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"{best} holds epoch {other} but run.json records epoch {best_epoch} ({saved[best_epoch].name}) as "
            f"the best; name the weights with --epoch {best_epoch} or --epoch {other}") in err
    assert _snapshot(run) == before
    state = run.read_state()
    run.state_path.unlink()  # no record of the best epoch: best.pt is taken as it is
    best.unlink()
    with pytest.raises(UserError, match=r"best.pt is missing, and run.json, which records the best epoch, is gone "
                                        r"too; name the weights with --epoch N \(saved epochs: 1, 2\)$"):
        evaluate(run.path, quiet=True)
    state["best_epoch"] = None  # run.json says no epoch was best: the newest weights, as training scored them
    run.write_state(state)
    assert evaluate(run.path, quiet=True)


def test_a_run_without_run_json_still_refuses_another_runs_checkpoint(tmp_path, run_cli):
    """config.yaml records the run id, so deleting run.json (the advice for a damaged one) leaves the
    identity check in place; a config.yaml written before it did is compared on the run's settings."""
    from PIL import Image

    mine, theirs = _run(tmp_path, "mine"), _run(tmp_path, "theirs")
    run_id = mine.run_id
    assert mine.config_path.read_text().splitlines()[0].endswith(f"; run id: {run_id}")
    mine.state_path.unlink()
    assert RunDir(mine.path).run_id == run_id
    assert evaluate(mine.path, quiet=True)  # its own checkpoints load without run.json
    for name in ("best.pt", "last.pt"):
        (mine.checkpoints / name).unlink()
        shutil.copyfile(theirs.checkpoints / name, mine.checkpoints / name)
    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    before = _snapshot(mine)
    for args in (["evaluate", mine.path], ["predict", mine.path, tmp_path / "x.png"],
                 ["resume", mine.path, "--set", "train.epochs=3"]):
        code, _, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"belongs to another run (run id {theirs.run_id[:8]}, this run is {run_id[:8]})" in err
    assert _snapshot(mine) == before
    # a config.yaml without the id (written by an earlier version): the settings tell the runs apart
    first, rest = mine.config_path.read_text().split("\n", 1)
    mine.config_path.write_text(first.split(";")[0] + "\n" + rest)
    before = _snapshot(mine)
    for args, name in ((["evaluate", mine.path], "best.pt"), (["resume", mine.path, "--set", "train.epochs=3"],
                                                               "last.pt")):
        code, _, err = run_cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert (f"{mine.checkpoints / name} belongs to another run: it was trained with name theirs but "
                f"{mine.config_path} gives mine") in err
    assert _snapshot(mine) == before


def test_a_resume_without_run_json_keeps_the_run_id(tmp_path):
    run = _run(tmp_path, epochs=1)
    run_id = run.run_id
    run.state_path.unlink()
    resume(run.path, overrides=["train.epochs=2"])
    assert run.read_state()["run_id"] == run_id
    assert torch.load(run.checkpoints / "last.pt", weights_only=True)["run_id"] == run_id
