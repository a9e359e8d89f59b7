"""Ctrl+C / SIGTERM during training: clean exit, completed epochs kept, resume continues exactly."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from deepvision.api import resume, train
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def config(tmp_path):
    cfg = tiny_config(5, batch_size=16, max_samples=600)
    cfg["train"]["log_every"] = 1
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_resume_matches(tmp_path, sig):
    cfg, path = config(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "train", str(path), "--out", str(out), "--name", "x"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = out / "x" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until epoch 2 (0-based 1) is under way
        if log.is_file() and "Epoch[1] Batch [3]" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert f"deepvision resume {out / 'x'}" in stderr
    run = RunDir(out / "x")
    done = load_checkpoint(run.checkpoints / "last.pt")["epoch"]
    assert 1 <= done < 5
    assert len(run.read_history()) == done
    assert run.read_state()["status"] == "interrupted"
    assert "interrupted at batch" in run.log_path.read_text()
    resumed = resume(run.path)
    reference = train(cfg, out=tmp_path / "ref", name="ref")
    keys = ["lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in reference.history]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_training_with_loader_workers_cleanly(tmp_path, sig):
    """timeout, systemd and `kill -- -PGID` signal every process of the group: the loader's worker processes
    die with the trainer's signal, which ends as the same graceful stop, not a worker error."""
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "train", n_per_class=40, size=16)
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1000, "log_every": 1, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path), "train": "train", "val": None, "test": None,
                    "val_fraction": 0.25, "image_size": 16, "batch_size": 8, "workers": 2}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "train", str(path), "--out", str(out), "--name", "x"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = out / "x" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # the workers persist from epoch 1 on
        if log.is_file() and "Epoch[1] Batch [2]" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr, stderr
    run = RunDir(out / "x")
    assert run.read_state()["status"] == "interrupted"
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] >= 1


@pytest.mark.parametrize("error", [RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated."),
                                   FileNotFoundError(2, "No such file or directory")])
def test_a_stop_while_the_test_split_is_scored_keeps_the_saved_epoch(tmp_path, monkeypatch, run_cli, error):
    """A signal to the process group while the test split is scored after the last epoch ends the test
    loader's workers: the epoch is saved, so the run stopped after it (not "before any epoch"), and the advice
    is to score the test split (a resume would find nothing left to train). A worker that died while handing
    over a batch's shared memory leaves its socket gone: FileNotFoundError, which ended as a failed run."""
    from deepvision.engine.callbacks import holdout

    def cut_short(self, *args):  # what torch raises when a loader worker died with the trainer's SIGTERM
        self.trainer.stop.signum = signal.SIGTERM
        raise error

    monkeypatch.setattr(holdout.TestEvaluator, "score", cut_short)
    cfg = tiny_config(1, max_samples=200, test_fraction=0.2, test=None)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", path, "--out", tmp_path / "runs", "--name", "t")
    run = RunDir(tmp_path / "runs" / "t")
    assert code == 143 and "Traceback" not in err, err
    assert f"training stopped after 1 completed epoch, before the test split was scored; score it with:\n" \
           f"  deepvision evaluate {run.path}\n" in err
    assert run.read_state()["status"] == "interrupted" and run.read_state()["epochs_done"] == 1
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == 1 and len(run.read_history()) == 1


def _stop_at_first_test_batch(monkeypatch, sig):
    """Request a stop (as the signal handler does) once the first batch of a test scoring is done; returns the
    batches scored after a saved epoch."""
    from deepvision.engine.trainer import Trainer

    score, seen = Trainer.score, []

    def scoring(self, loader, model=None, on_batch=None, after_epoch=None):
        def batch_done(i):
            seen.append(i)
            on_batch(i)
            self.stop.signum = sig

        return score(self, loader, model, batch_done if after_epoch is not None else on_batch, after_epoch)

    monkeypatch.setattr(Trainer, "score", scoring)
    return seen


@pytest.mark.parametrize("sig,workers", [(signal.SIGINT, 0), (signal.SIGTERM, 0), (signal.SIGINT, 2)])
def test_a_stop_while_the_test_split_is_scored_after_the_last_epoch_ends_the_scoring(tmp_path, monkeypatch, run_cli,
                                                                                      sig, workers):
    """A Ctrl+C or SIGTERM that only the trainer sees (no loader worker dies of it) while the test split is
    scored after the last epoch: the scoring stops at the next batch, no test_metrics.json, the run interrupted."""
    seen = _stop_at_first_test_batch(monkeypatch, sig)
    cfg = tiny_config(2, max_samples=200, test_fraction=0.2, test=None, batch_size=8, workers=workers)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli("train", path, "--out", tmp_path / "runs", "--name", "t")
    run = RunDir(tmp_path / "runs" / "t")
    assert code == 128 + sig and "Traceback" not in err, err
    assert seen == [1]  # 5 test batches: the stop ended the scoring at the next one
    assert "stopped after epoch 2 was saved, before the test split was scored" in out + err
    assert f"training stopped after 2 completed epochs, before the test split was scored; score it with:\n" \
           f"  deepvision evaluate {run.path}\n" in err
    assert run.read_state()["status"] == "interrupted" and run.read_state()["epochs_done"] == 2
    assert not run.test_metrics_path.exists() and "done:" not in out
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == 2 and len(run.read_history()) == 2


def test_a_stop_while_the_test_split_is_scored_between_epochs_keeps_the_saved_epoch(tmp_path, monkeypatch, run_cli):
    """train.test_every: a stop while the test split is scored after epoch 1 of 3 stops there; resume continues."""
    seen = _stop_at_first_test_batch(monkeypatch, signal.SIGTERM)
    cfg = tiny_config(3, max_samples=200, test_fraction=0.2, test=None, batch_size=8)
    cfg["train"]["test_every"] = 1
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli("train", path, "--out", tmp_path / "runs", "--name", "t")
    run = RunDir(tmp_path / "runs" / "t")
    assert code == 143 and seen == [1], err
    assert "stopped after epoch 1 was saved, before the test split was scored" in out + err
    assert f"training stopped after 1 completed epoch; resume with:\n  deepvision resume {run.path}" in err
    assert run.read_state()["status"] == "interrupted" and run.read_state()["epochs_done"] == 1
    assert not run.test_metrics_path.exists() and len(run.read_history()) == 1


@pytest.mark.parametrize("test_fraction", [0.2, 0.0])
def test_a_stop_as_the_run_ends_is_reported_and_the_run_is_complete(tmp_path, monkeypatch, run_cli, test_fraction):
    """A stop after the last epoch was saved and its test split scored (or with none to score), while the plots
    are written: one line and 130, the run finished (nothing of it was cut short; a resume finds nothing left)."""
    from deepvision.engine.callbacks import records

    def plot(self):
        self.trainer.stop.signum = signal.SIGINT

    monkeypatch.setattr(records.Plotter, "on_train_end", plot)
    cfg = tiny_config(1, max_samples=200, test_fraction=test_fraction, test=None)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli("train", path, "--out", tmp_path / "runs", "--name", "t")
    run = RunDir(tmp_path / "runs" / "t")
    assert code == 130 and "Traceback" not in err, err
    assert err == f"training stopped as it ended, after 1 completed epoch: the run is complete ({run.path})\n"
    assert run.read_state()["status"] == "finished" and "done:" not in out
    assert run.test_metrics_path.exists() == bool(test_fraction)


def test_sigterm_while_the_run_is_set_up_removes_the_new_run_folder(tmp_path):
    """The trainer's handler is installed when epochs start: a SIGTERM while the data was scanned ended in
    silence and left a run folder (run.json 'starting') that `runs` did not list."""
    from tests.helpers import make_image_folder, stop_group_when

    make_image_folder(tmp_path / "data", n_per_class=400, size=16)
    cfg = {"model": {"name": "lenet"}, "data": {"source": "folder", "root": str(tmp_path / "data"), "train": ".",
                                                "val_fraction": 0.1, "image_size": 16}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    state = tmp_path / "runs" / "s" / "run.json"
    code, err = stop_group_when(["train", path, "--out", tmp_path / "runs", "--name", "s"],
                                lambda: state.is_file() and '"starting"' in state.read_text(), signal.SIGTERM)
    assert code == 143 and "Traceback" not in err, err
    if "training stopped" in err:  # the stop came once epochs were about to start: an honest state
        assert "training stopped before any epoch completed; start it again with:" in err, err
        assert RunDir(tmp_path / "runs" / "s").read_state()["status"] == "interrupted"
    else:
        assert err == (f"deepvision train: terminated (SIGTERM); nothing was trained; the new run folder "
                       f"{tmp_path / 'runs' / 's'} was removed\n")
        assert not (tmp_path / "runs").exists()  # --out, which the command made, goes with it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("moment", ["fit", "_announce"])
def test_a_stop_before_fit_installs_its_handler_or_as_the_run_is_announced_marks_the_run_interrupted(
        tmp_path, run_cli, monkeypatch, sig, moment):
    """The moments between the run's files and the first epoch: the same stop as in epoch 0 (a Ctrl+C as the
    run's first line printed ended in a bare "interrupted")."""
    from deepvision.engine.trainer import Trainer

    _, path = config(tmp_path)
    method = getattr(Trainer, moment)

    def signalled(self):
        os.kill(os.getpid(), sig)
        return method(self)

    monkeypatch.setattr(Trainer, moment, signalled)
    code, _, err = run_cli("train", path, "--out", tmp_path / "runs", "--name", "x")
    assert code == 128 + sig and "training stopped before any epoch completed; start it again with:" in err, err
    assert RunDir(tmp_path / "runs" / "x").read_state()["status"] == "interrupted"


def test_a_second_ctrl_c_stops_at_once_and_later_signals_are_ignored_while_it_unwinds():
    """The second Ctrl+C raises KeyboardInterrupt; a third, or a SIGTERM from `timeout`, cannot cut its cleanup
    short; on leaving, the caller's handlers are back."""
    from deepvision.engine.signals import GracefulStop

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    cleaned = False
    with GracefulStop() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)
            cleaned = True
    assert cleaned
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_programs_started_while_a_stop_unwinds_are_not_ended_by_the_groups_further_signals():
    """A second signal to the process group reached the `pgrep` that joblib starts to end its workers'
    children: it died halfway and joblib printed two tracebacks before the stop's one line. Once a stop is
    under way, the programs its cleanup starts ignore SIGINT and SIGTERM (SIGKILL still ends them); on
    leaving, the caller's handlers are back and programs started later take signals again."""
    from deepvision.engine.signals import GracefulStop

    helper = ["sh", "-c", "kill -INT $$; kill -TERM $$; echo finished"]
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    done = None
    with GracefulStop():
        signal.raise_signal(signal.SIGINT)
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            done = subprocess.run(helper, capture_output=True, text=True)
            signal.raise_signal(signal.SIGINT)  # the process itself still finds its no-op
    assert (done.returncode, done.stdout) == (0, "finished\n"), done
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert subprocess.run(helper, capture_output=True).returncode == -signal.SIGINT
