"""The run directory: everything a user finds after training.

    <out>/<name>/
        config.yaml          fully resolved config
        preprocess.json      the evaluation transform (predict/evaluate use it)
        labels.txt           class names, one per line
        history.csv          one row per epoch
        test_metrics.json    the test split scored after training (train.test)
        test_history.csv     the test split scored every train.test_every epochs
        train.log            speedometer and epoch lines (MXNet-compatible format)
        run.json             status and the segments (start, resumes) of the run
        checkpoints/<prefix>-NNNN.pt, last.pt, best.pt
        plots/               loss and accuracy curves
        eval/                evaluation reports
        tensorboard/         event files (when tensorboard is installed)

Why one module of ~840 lines: RunDir is the only code that writes, links, prunes and rewinds a run's
files; keeping it whole keeps every write under the same link and atomicity rules.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import deepvision.data.detection.loader
import deepvision.data.sources  # noqa: F401  (registers the built-in data sources)
from deepvision.config.io import build_config, config_to_yaml, read_yaml
from deepvision.config.schema import MAX_EPOCHS, Config
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.fileio import atomic_path, atomic_write_text, move, not_a_folder, open_regular_file, special_kind
from deepvision.runs.checkpoint import atomic_save, load_checkpoint
from deepvision.runs.history import HISTORY_FIELDS
from deepvision.runs.lock import LOCK_NAME, RunLock, is_stale, read_holder
from deepvision.safeload import (
    MAX_TEXT_BYTES,
    LimitError,
    ParseError,
    check_class_names,
    check_file_size,
    plain_float,
    printable,
    read_bytes,
    read_json,
    shown_value,
)

CONFIG_MARK = "# written by deepvision (change settings with --set); settings digest: "
RUN_ID_MARK = "; run id: "  # follows the digest on config.yaml's first line
_RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
MAX_HISTORY_BYTES = 64 * 2**20  # a row per epoch: a detector's 40 columns for 100,000 epochs is ~40 MB

# what run.json's "status" may say (training writes the first five, `import` the sixth); "crashed" and
# "killed" are read from a "running" run whose process is gone
RUN_STATUSES = ("starting", "running", "interrupted", "failed", "finished", "imported")

FATAL_ERROR = "Fatal Python error:"  # how faulthandler starts its report of a native crash
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", re.M)  # a line written by the run itself

_CKPT = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d{4,})\.pt$")


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- locations -------------------------------------------------------------------------
    config_path = property(lambda self: self.path / "config.yaml")
    preprocess_path = property(lambda self: self.path / "preprocess.json")
    labels_path = property(lambda self: self.path / "labels.txt")
    history_path = property(lambda self: self.path / "history.csv")
    test_metrics_path = property(lambda self: self.path / "test_metrics.json")
    test_history_path = property(lambda self: self.path / "test_history.csv")
    log_path = property(lambda self: self.path / "train.log")
    state_path = property(lambda self: self.path / "run.json")
    checkpoints = property(lambda self: self.folder("checkpoints", create=False))
    plots = property(lambda self: self.folder("plots", create=False))
    eval_dir = property(lambda self: self.folder("eval", create=False))
    tensorboard_dir = property(lambda self: self.folder("tensorboard"))

    def check_folders(self) -> None:
        """Refuse a link or a file planted in place of any of the run's sub-folders, before a command that
        writes into some of them (a resume) changes anything."""
        for name in ("checkpoints", "plots", "eval", "tensorboard"):
            self.folder(name, create=False)

    def folder(self, *parts: str, create: bool = True) -> Path:
        """The run's sub-folder `parts` (e.g. "eval", "test-best"), created when missing (with `create`).
        Every level that exists must be a real folder: a symbolic link planted in the run (or a file in
        a folder's place) is refused in one line, so no write can land outside the run through it."""
        path = self.path
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise UserError(f"{path} is a symbolic link; refusing to write through it (make it a real "
                                f"folder of the run)")
            if path.exists() and not path.is_dir():
                raise UserError(f"{path} is not a folder; refusing to write into it (move the file away)")
            if create:
                try:
                    path.mkdir(exist_ok=True)
                except OSError as exc:
                    raise UserError(f"cannot create {path}: {exc.strerror or exc}") from None
        return path

    # -- creation / opening ----------------------------------------------------------------
    @classmethod
    def create(cls, out: str | Path, name: str, exist_ok: bool = False, made: list[Path] | None = None) -> RunDir:
        """Make <out>/<name>, or <out>/<name>-2, -3 ... when taken (Ultralytics-style). `made`: the folder's path
        is appended before it is made, so a stop at any moment leaves nothing its caller does not know of."""
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".deepvision-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"output directory {out} is not writable ({exc.strerror or exc}); "
                            f"choose another with --out") from None
        name = unicodedata.normalize("NFC", name)  # 'café' in either Unicode spelling is one name
        spelled = {unicodedata.normalize("NFC", n): n for n in os.listdir(out)}
        path, k = out / name, 2
        while not exist_ok and ((path.exists() and not _abandoned_start(path))
                                or spelled.get(path.name, path.name) != path.name):
            path = out / f"{name}-{k}"
            k += 1
        if made is not None:
            made.append(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.folder("checkpoints")
        run.folder("plots")
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(not_a_folder(run.path, "run directory"))
        if not run.has_config():
            raise UserError(f"{run.path} is not a deepvision run directory (no config.yaml)")
        return run

    # -- config, preprocessing, labels ---------------------------------------------------------
    def write_config(self, cfg: Config, run_id: str | None = None) -> None:
        """config.yaml, its first line a comment holding a digest of the settings below it, so that a resume
        can tell a hand edit (which the checkpoint's settings would replace) from the file it wrote, and the
        run id (`run_id`, else run.json's), so that the run keeps its identity when run.json is lost."""
        body = config_to_yaml(cfg)
        run_id = run_id or self.run_id
        tag = f"{RUN_ID_MARK}{run_id}" if isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) else ""
        atomic_write_text(self.config_path, f"{CONFIG_MARK}{_digest(body)}{tag}\n{body}")

    def config_edited(self) -> dict[str, Any] | None:
        """config.yaml's settings when they were changed by hand after deepvision wrote the file; None when
        they were not, or when the file carries no digest line (written by an earlier version, or removed)."""
        if not self.has_config():
            return None
        text = read_bytes(self.config_path, "config.yaml", MAX_TEXT_BYTES).decode("utf-8-sig", "replace")
        first, _, body = text.partition("\n")
        if not first.startswith(CONFIG_MARK) or first[len(CONFIG_MARK):].partition(";")[0].strip() == _digest(body):
            return None
        return read_yaml(self.config_path)

    def read_config(self, overrides: list[str] | None = None) -> Config:
        self.has_config()
        return build_config(read_yaml(self.config_path), overrides)

    def has_config(self) -> bool:
        """Whether config.yaml is there; UserError when something other than a regular file is in its place."""
        return self.regular(self.config_path, "delete it (`deepvision resume` rewrites it from the last checkpoint)")

    @staticmethod
    def regular(path: Path, fix: str) -> bool:
        """Whether one of the run's files is there (a regular file, or a link to one): False when it is
        absent; a FIFO, folder, device or dangling link in its place is a UserError saying what it is and
        `fix`, raised before anything opens it (a FIFO would block the reader)."""
        try:
            kind = special_kind(os.stat(path).st_mode)
        except FileNotFoundError:
            if not os.path.lexists(path):
                return False
            kind = "a link that leads nowhere"
        except OSError as exc:
            raise UserError(f"{path} cannot be read: {exc.strerror or exc}") from None
        if kind is not None:
            raise UserError(f"{path} is not a regular file ({kind}); {fix}")
        return True

    def write_preprocess(self, pre: Preprocess) -> None:
        atomic_write_text(self.preprocess_path, json.dumps(pre.to_dict(), indent=2) + "\n")

    def read_preprocess(self) -> Preprocess:
        self.regular(self.preprocess_path, "re-run training or restore it")  # a FIFO is named once, never opened
        try:
            return Preprocess.from_dict(read_json(self.preprocess_path, "preprocess.json"))
        except LimitError:
            raise
        except ParseError as exc:
            raise UserError(f"{exc}; re-run training or restore it") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{self.preprocess_path} is missing or damaged; re-run training or restore it") from None
        except UserError as exc:  # a value out of range
            raise UserError(f"{self.preprocess_path}: {exc}") from None

    def write_labels(self, classes: list[str]) -> None:
        check_class_names([str(c) for c in classes], str(self.labels_path))
        atomic_write_text(self.labels_path, "".join(f"{c}\n" for c in classes))

    def has_labels(self) -> bool:
        """Whether labels.txt is there; UserError when something other than a regular file is in its place."""
        return self.regular(self.labels_path, "delete it (the checkpoint's class names are used then) or restore it")

    def read_labels(self) -> list[str]:
        if not self.has_labels():
            raise UserError(f"{self.labels_path} is missing")
        try:
            text = read_bytes(self.labels_path, "class list", MAX_TEXT_BYTES).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UserError(f"{self.labels_path} is not UTF-8 text; re-run training or restore it") from None
        except OSError as exc:
            raise UserError(f"cannot read {self.labels_path}: {exc.strerror or exc}") from None
        names = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # Windows and old Mac line ends
        if names and names[-1] == "":
            names.pop()  # the newline that ends the last name
        check_class_names(names, str(self.labels_path))
        return names

    # -- run state -----------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        """run.json ({} before it is written); a damaged one is a one-line error naming it."""
        fix = "restore it or delete it (its status and segment list are lost then)"
        if not self.regular(self.state_path, fix):
            return {}
        try:
            state = read_json(self.state_path, "run.json")
        except FileNotFoundError:
            return {}
        except LimitError:
            raise
        except ParseError as exc:  # names what is wrong (a 5,000-digit number, a cut file)
            raise UserError(f"{exc}; {fix}") from None
        except (OSError, UserError):
            state = None
        problem = "not a JSON object" if not isinstance(state, dict) else _state_problem(state)
        if problem:
            raise UserError(f"{self.state_path} is damaged ({problem}); {fix}")
        return state

    @property
    def run_id(self) -> str | None:
        """The identity checkpoints of this run carry (set when the run is created)."""
        if not hasattr(self, "_run_id"):
            self._run_id = self.read_state().get("run_id") or self.config_run_id()
        return self._run_id

    def config_run_id(self) -> str | None:
        """The run id config.yaml's first line records (None in a file written before it did, or edited):
        the run's identity when run.json is gone."""
        try:
            if not self.has_config():
                return None
            with open(self.config_path, "rb") as f:
                first = f.readline(1024).decode("utf-8-sig", "replace")
        except (OSError, UserError):
            return None
        head, sep, run_id = first.partition(RUN_ID_MARK)
        run_id = run_id.strip()
        return run_id if head.startswith(CONFIG_MARK) and sep and _RUN_ID.fullmatch(run_id) else None

    def status(self) -> str:
        """run.json's status, except that a "running" run whose process is gone reads "crashed" when train.log
        ends in the fatal-error report of a native crash, else "killed" (SIGKILL, the OOM killer, power loss)."""
        state = self.read_state()
        status = state.get("status", "unknown")
        if status not in RUN_STATUSES:
            return "unknown"  # a damaged or hand-edited run.json: its text is not shown as a status
        if status == "running":
            holder = read_holder(self.path / LOCK_NAME)
            if holder is None or is_stale(holder):
                return "crashed" if self.crash_report() else "killed"
        return status

    def crash_report(self) -> str | None:
        """The first line of the fatal-error report that ends train.log ("Fatal Python error: Segmentation
        fault"), or None when the log ends in a line of the run's own. A FIFO or folder in train.log's place
        is a UserError (opening a FIFO would wait for a writer for ever)."""
        if not self.regular(self.log_path, "delete it (training starts a new train.log)"):
            return None
        try:
            with open_regular_file(self.log_path) as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        at = tail.rfind(FATAL_ERROR)
        if at < 0 or _LOG_LINE.search(tail, at):
            return None
        return tail[at:].splitlines()[0].strip()

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = self.read_state()
        state.update(changes)
        self.write_state(state)
        return state

    # -- history ---------------------------------------------------------------------------------
    def write_history(self, rows: list[dict[str, Any]], fields: list[str] | None = None,
                      path: Path | None = None) -> None:
        """history.csv (or another per-epoch table at `path`, e.g. test_history.csv) with `fields` as
        columns (default: the classification schema)."""
        fields = fields or HISTORY_FIELDS
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in fields})
        atomic_write_text(path or self.history_path, buf.getvalue())

    def read_history(self, path: Path | None = None) -> list[dict[str, Any]]:
        path = path or self.history_path
        if not self.regular(path, "delete it (`deepvision resume` rewrites it)"):
            if path == self.history_path:
                self._check_history_epochs([], missing=True)
            return []
        check_file_size(path, "history", MAX_HISTORY_BYTES)
        rows = []
        problem = None
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's save adds a BOM
                reader = csv.reader(f)
                header = next(reader, [])
                twice = sorted(name for name, n in Counter(header).items() if n > 1)  # linear: headers may be long
                if header and ("epoch" not in header or twice):  # with a column twice, one value would be lost
                    raise ValueError(f"line 1: the header names {printable(repr(twice[0])[:40])} twice" if twice
                                     else "line 1: the header has no epoch column")
                for line, cells in enumerate(reader, 2):
                    if len(cells) != len(header):  # the writer gives every row every column
                        raise ValueError(f"line {line}: {len(cells)} cells under a header of {len(header)}")
                    row = dict(zip(header, cells))
                    epoch = row["epoch"]  # what int() takes beyond ASCII digits is no epoch either
                    if not (epoch.isascii() and epoch.isdigit()):
                        raise ValueError(f"line {line}: epoch '{printable(str(row['epoch'])[:20])}' is not a "
                                         f"whole number")
                    rows.append({k: _parse(k, v) for k, v in row.items()})
        except csv.Error as exc:
            problem = f"line {reader.line_num}: not readable as CSV ({exc})"
        except (UnicodeDecodeError, ValueError) as exc:
            problem = str(exc) if str(exc).startswith("line ") else exc.__class__.__name__
        if problem is None:
            problem = _bad_cell(rows)
        if problem is None and path == self.history_path:
            problem = _history_problem(rows)
        if problem is not None:
            if path != self.history_path:
                raise UserError(f"{path} is damaged ({problem}); delete it")
            raise UserError(f"{self.history_path} is damaged ({problem}); every checkpoint holds the "
                            f"history: `deepvision resume` rewrites it")
        if path == self.history_path:
            self._check_history_epochs(rows)
        return rows

    def _check_history_epochs(self, rows: list[dict[str, Any]], missing: bool = False) -> None:
        """Refuse a history.csv whose last epoch is not run.json's epochs_done (another run's history copied in,
        or another run's run.json, or an old copy), naming both. While a run trains (and when its process
        died) history.csv may be one epoch ahead: it is written just before run.json. A history with no
        epoch (header only, empty or `missing`) ends where the run began: epoch 0, or the epoch an imported
        run's weights came with (its checkpoint holds no history)."""
        try:
            state = self.read_state()
        except UserError:  # a damaged run.json is named where it is read
            return
        done = state.get("epochs_done")
        last = rows[-1]["epoch"] if rows else self._first_epoch(state)
        if done is None or last == done or (last == done + 1 and state.get("status") not in ("finished", "imported")):
            return
        held, why = ((f"ends at epoch {last}", "one of them is another run's or an old copy; ") if rows else
                     ("is missing" if missing else "holds no epoch", ""))
        raise UserError(f"{self.history_path} {held} but {self.state_path} says {done} epoch(s) were done: {why}"
                        f"restore the run's own (every checkpoint holds the history, and `deepvision resume` "
                        f"rewrites history.csv)")

    @staticmethod
    def _first_epoch(state: dict[str, Any]) -> int:
        """The epoch a run's history starts after: 0, or an imported run's epoch (run.json's first segment)."""
        segments = state.get("segments") or [{}]
        start = segments[0].get("start_epoch") if "imported_from" in segments[0] else 0
        return start if isinstance(start, int) and not isinstance(start, bool) else 0

    def write_test_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_text(self.test_metrics_path, json.dumps(metrics, indent=2, allow_nan=False) + "\n")

    def read_test_metrics(self) -> dict[str, Any] | None:
        """test_metrics.json's numbers (see `read_report`), or None when the run has none."""
        return self.read_report(self.test_metrics_path, "test_metrics.json")

    @staticmethod
    def read_report(path: Path, what: str = "evaluation report") -> dict[str, Any] | None:
        """The finite numbers of a JSON report (test_metrics.json, an evaluation's metrics.json), nested
        objects kept the same way, and its words (split, checkpoint, monitor); None when it is missing or
        unreadable: it is a report, not state, so a damaged one only leaves its numbers out (shown as
        '-'), and text or lists in a number's place are left out likewise."""
        try:
            data = read_json(path, what)
        except (OSError, UserError):
            return None
        return _numbers(data) if isinstance(data, dict) else None

    def wrote(self, report: dict[str, Any]) -> bool:
        """Whether a report (`read_report`: an evaluation's metrics.json, test_metrics.json) was written for
        this run: its run id is the run's, so a report copied from another run, or written into this run's
        folder by `evaluate OTHER --out`, is not. A report without a run id (an earlier release) is taken by
        the run folder it names, one naming none as the run's."""
        theirs, ours = report.get("run_id"), self.run_id
        if theirs is not None and ours is not None:
            return theirs == ours
        named = Path(str(report.get("run", ""))).name
        return named in ("", ".", "..") or unicodedata.normalize("NFC", named) == unicodedata.normalize(
            "NFC", self.path.name)

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_path(self, prefix: str, epoch: int) -> Path:
        path = self.checkpoints / f"{prefix}-{epoch:04d}.pt"
        if path.resolve().parent != self.checkpoints.resolve():
            raise UserError(f"checkpoint.prefix {prefix!r} would write outside {self.checkpoints}; use a plain name")
        return path

    def has_checkpoints(self) -> bool:
        return (self.checkpoints / "last.pt").is_file() or bool(self.saved_epochs())

    def saved_epochs(self) -> dict[int, Path]:
        """The run's periodic checkpoints by epoch: `<prefix>-NNNN.pt` with the run's prefix (`checkpoint_prefix`),
        so a file of another name placed beside them (a user's copy, `backup-0002.pt`) is never taken for one
        (nor deleted by retention or `runs prune`). When config.yaml cannot be read any prefix is taken for
        reading, and two files for one epoch are refused in one line."""
        prefix = self._checkpoint_prefix()
        found: dict[int, Path] = {}
        if self.checkpoints.is_dir():
            for p in sorted(self.checkpoints.iterdir()):
                m = _CKPT.match(p.name)
                # the name the run writes (no extra leading zeros), holding a torch.save file (a zip)
                if (m and (prefix is None or m["prefix"] == prefix) and m["epoch"] == f"{int(m['epoch']):04d}"
                        and _is_zip(p)):
                    epoch = int(m["epoch"])
                    if epoch in found:
                        raise UserError(f"{found[epoch].name} and {p.name} in {self.checkpoints} both hold epoch "
                                        f"{epoch}, and {self.config_path}, which names the run's checkpoint prefix, "
                                        f"cannot be read; restore config.yaml")
                    found[epoch] = p
        return dict(sorted(found.items()))

    def checkpoint_prefix(self) -> str:
        """The prefix of the run's periodic checkpoints: config.yaml's checkpoint.prefix, else its default (the
        model name); UserError when config.yaml cannot be read."""
        try:
            cfg = self.read_config()
        except UserError as exc:
            raw: Any = None
            with contextlib.suppress(UserError, OSError):
                raw = read_yaml(self.config_path).get("checkpoint")
            prefix = raw.get("prefix") if isinstance(raw, dict) else None
            if isinstance(prefix, str) and prefix:  # a setting elsewhere is bad: the prefix is still the run's
                return prefix
            raise UserError(f"the checkpoint files of {self.path} cannot be told from others: {str(exc)[:200]}; "
                            f"restore config.yaml (its checkpoint.prefix names them)") from None
        return cfg.checkpoint_prefix()

    def _checkpoint_prefix(self) -> str | None:
        try:
            return self.checkpoint_prefix()
        except UserError:
            return None

    def resolve_checkpoint(self, epoch: int | None = None, which: str = "last") -> Path:
        """Checkpoint of `epoch`, or last.pt / best.pt; UserError listing what exists otherwise. Without
        best.pt, the weights are named in one line (run.json's best epoch, when it is saved), never taken
        from another epoch; the newest epoch stands in only when run.json records that no epoch was best."""
        if epoch is None:
            path = self.checkpoints / f"{which}.pt"
            if self.regular(path, "delete it or restore it (or name a saved epoch with --epoch)"):
                return path
            saved = self.saved_epochs()
            if not saved:
                raise UserError(f"{self.path} holds no checkpoints yet")
            state = self.read_state()
            if which == "best" and (not state or state.get("best_epoch") is not None):
                raise UserError(self._missing_best(state.get("best_epoch"), saved))
            return saved[max(saved)]
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise UserError(f"epoch must be a whole number, got {shown_value(epoch)}")
        saved = self.saved_epochs()
        if epoch in saved:
            return saved[epoch]
        last = self.checkpoints / "last.pt"
        if checkpoint_epoch(last) == epoch:  # with checkpoint.period > 1 the newest epoch may live in last.pt only
            return last
        have = ", ".join(map(str, saved)) or "none"
        raise UserError(f"epoch {epoch} was never saved in {self.checkpoints}; saved epochs: {have}")

    def _missing_best(self, best: int | None, saved: dict[int, Path]) -> str:
        where = f"{self.checkpoints / 'best.pt'} is missing"
        have = ", ".join(map(str, saved))
        if best is None:
            return (f"{where}, and run.json, which records the best epoch, is gone too; name the weights with "
                    f"--epoch N (saved epochs: {have})")
        if best in saved:
            return (f"{where}; run.json records epoch {best} as the best, saved as {saved[best].name}: name it with "
                    f"--epoch {best} (or restore best.pt as a copy of it)")
        return (f"{where}, and the best epoch {best} (run.json) was not kept; name the weights with --epoch N "
                f"(saved epochs: {have})")

    def check_alias(self, path: Path, held: int) -> None:
        """Refuse last.pt or best.pt, taken by default, when the run's record says another epoch: a best.pt
        holding another epoch than run.json's best_epoch, a last.pt older than a saved epoch's file. Both
        are named, with the --epoch that picks each."""
        if path.parent != self.checkpoints or path.name not in ("best.pt", "last.pt"):
            return
        if path.name == "best.pt":
            best = self.read_state().get("best_epoch")
            if best is not None and best != held:
                saved = self.saved_epochs()
                kept = f" ({saved[best].name})" if best in saved else ""
                raise UserError(f"{path} holds epoch {held} but run.json records epoch {best}{kept} as the best; "
                                f"name the weights with --epoch {best} or --epoch {held} (or restore best.pt)")
            return
        saved = self.saved_epochs()
        newest = max(saved, default=None)
        if newest is not None and newest > held:
            raise UserError(f"{path} holds epoch {held} but the run saved epoch {newest} ({saved[newest].name}); "
                            f"name the weights with --epoch {held} or --epoch {newest}")

    # -- writing checkpoints: the only code that creates, links, prunes and rewinds them ------------------
    def save_checkpoint(self, payload: dict[str, Any], epoch: int, *, prefix: str, periodic: bool, best: bool,
                        keep: int | None = None, protect: Iterable[int] = ()) -> Path | None:
        """Write `payload` as last.pt; link it as `<prefix>-NNNN.pt` when `periodic` (then prune to the
        newest `keep` of those plus the `protect`ed epochs) and as best.pt when `best`. Returns the
        periodic file, if one was made."""
        last = self.checkpoints / "last.pt"
        atomic_save(payload, last)
        path = None
        if periodic:
            path = self.checkpoint_path(prefix, epoch)
            link_or_copy(last, path)
            self.prune_checkpoints(keep, protect)
        if best:
            link_or_copy(last, self.checkpoints / "best.pt")
        return path

    def rewind(self, epoch: int, source: Path, best_epoch: int | None) -> None:
        """Make the checkpoints describe epoch `epoch` before a resume from `source`: later periodic
        checkpoints (and a best.pt or last.pt from a later epoch) go to checkpoints/discarded-<time>/,
        last.pt becomes `source`, best.pt the best epoch up to `epoch` (`best_epoch`, when saved)."""
        later = {e: p for e, p in self.saved_epochs().items() if e > epoch}
        best, last = self.checkpoints / "best.pt", self.checkpoints / "last.pt"
        moved = {p: p.name for p in later.values()}
        for alias in (best, last):
            at = checkpoint_epoch(alias)  # read once: loading verifies the whole file
            if (at or 0) > epoch and alias != source:
                moved[alias] = f"{alias.stem}-epoch{at}.pt"
        if moved:
            aside = self.folder("checkpoints", f"discarded-{time.strftime('%Y%m%d-%H%M%S')}")
            for p, name in moved.items():
                move(p, aside / name)
        if source != last:
            link_or_copy(source, last)
        if not best.is_file() and best_epoch is not None:
            saved = self.saved_epochs()
            if best_epoch in saved:
                link_or_copy(saved[best_epoch], best)
            elif best_epoch == epoch:
                link_or_copy(source, best)

    # -- retention and disk use (checkpoint.keep; the journal's and the summary's disk figures) ---------------
    def prune_checkpoints(self, keep: int | None, protect: Iterable[int] = ()) -> list[int]:
        """Delete periodic checkpoints beyond the newest `keep` (None keeps all), sparing the epochs in
        `protect`; last.pt and best.pt are separate links and stay. Returns the deleted epochs."""
        if not keep:
            return []
        saved = self.saved_epochs()
        spared = set(protect)
        doomed = [e for e in list(saved)[:-keep] if e not in spared]
        for e in doomed:
            saved[e].unlink(missing_ok=True)
        return doomed

    def checkpoint_disk_use(self) -> dict[str, int]:
        """Bytes under checkpoints/ (hard links counted once): {"total", "discarded", "files"}; "discarded"
        is the part in discarded-*/ folders left by resumes from earlier epochs. A file also linked from
        outside the run is not counted: deleting the run would not free it (as `bytes_freed`)."""
        inodes: dict[tuple[int, int], list[int]] = {}  # names here, links in all, size, set aside
        files = 0
        if self.checkpoints.is_dir():
            # files in checkpoints/ itself first: a discarded file linked to a kept one is not counted as discarded
            for p in sorted(self.checkpoints.rglob("*.pt"), key=lambda p: (p.parent != self.checkpoints, str(p))):
                try:
                    st = p.lstat()  # a link counts as itself: its target may lie outside the run
                except OSError:
                    continue
                files += 1
                key = (st.st_dev, st.st_ino)
                inodes.setdefault(key, [0, st.st_nlink, st.st_size, p.parent != self.checkpoints])[0] += 1
        own = [entry for entry in inodes.values() if entry[0] >= entry[1]]
        return {"total": sum(e[2] for e in own), "discarded": sum(e[2] for e in own if e[3]), "files": files}

    def prunable(self, keep: int = 0, discarded: bool = False) -> list[Path]:
        """The files `prune` deletes: periodic checkpoints but the newest `keep` (last.pt and best.pt
        stay: they are the run's own; without best.pt the file of run.json's best epoch stays in its place,
        without last.pt the newest), and with `discarded` every file in discarded-*/ folders. No periodic
        file when config.yaml, which names them, cannot be read (`prune` refuses such a run)."""
        own = self.saved_epochs() if self._checkpoint_prefix() is not None else {}
        spared = set()
        if own and not (self.checkpoints / "best.pt").is_file():
            with contextlib.suppress(UserError):
                spared.add(self.read_state().get("best_epoch"))
        if own and not (self.checkpoints / "last.pt").is_file():
            spared.add(max(own))
        saved = [p for e, p in own.items() if e not in spared]
        # a best.pt or last.pt that is a symbolic link to a periodic file keeps that file (never left dangling)
        aliases = {os.path.realpath(p) for p in (self.checkpoints / "best.pt", self.checkpoints / "last.pt")
                   if p.is_symlink()}
        doomed = [p for p in saved[: max(0, len(saved) - keep)] if os.path.realpath(p) not in aliases]
        if discarded and self.checkpoints.is_dir():
            for d in sorted(self.checkpoints.glob("discarded-*")):
                if d.is_symlink():
                    raise UserError(f"{d} is a symbolic link; refusing to delete through it (remove the "
                                    f"link itself if the folder is no longer wanted)")
                if not d.is_dir():
                    continue
                # os.walk does not follow linked sub-folders; a linked file is unlinked, never its target
                doomed += sorted(Path(top) / name for top, dirs, names in os.walk(d)
                                 for name in names + [x for x in dirs if (Path(top) / x).is_symlink()])
        return doomed

    def prune(self, keep: int = 0, discarded: bool = False, dry_run: bool = False) -> tuple[list[Path], int]:
        """Delete `prunable(keep, discarded)` under the run's lock (a training run is left alone).
        Returns the files and the bytes freed (hard links to kept files free nothing)."""
        if keep < 0:
            raise UserError(f"--keep must be 0 or more, got {keep}")
        self.checkpoint_prefix()  # a run whose checkpoint names cannot be read is refused, never pruned by guess
        doomed = self.prunable(keep, discarded)
        freed = bytes_freed(doomed)
        if dry_run or not doomed:
            return doomed, freed
        with RunLock(self.path):
            for p in doomed:
                p.unlink(missing_ok=True)
            if discarded:  # the folders hold nothing but empty sub-folders now
                for d in self.checkpoints.glob("discarded-*"):
                    if (d.is_dir() and not d.is_symlink()
                            and not any(names for _, _, names in os.walk(d))):
                        shutil.rmtree(d)
        return doomed, freed


def bytes_freed(doomed: list[Path]) -> int:
    """What deleting `doomed` gives back to the disk: a file's bytes only when every name of it goes (a hard
    link to a kept checkpoint, or to a file outside the run, frees nothing)."""
    inodes: dict[tuple[int, int], list[int]] = {}
    for p in doomed:
        with contextlib.suppress(OSError):
            st = p.lstat()  # a link counts as itself: its target may lie outside the run
            inodes.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size])[0] += 1
    return sum(size for names, links, size in inodes.values() if names >= links)


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") if path.is_file() else contextlib.nullcontext(None) as f:
            return f is not None and f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _abandoned_start(path: Path) -> bool:
    """A run directory whose start-up was killed before config.yaml existed: only the skeleton, no live
    lock. Its name is reused instead of being taken for ever."""
    if not path.is_dir() or (path / "config.yaml").exists():
        return False
    holder = read_holder(path / LOCK_NAME)
    if holder is not None and not is_stale(holder):
        return False
    skeleton = {"checkpoints", "plots", "run.json", LOCK_NAME, "train.log"}
    return all(p.name in skeleton and (p.is_file() or not any(p.iterdir())) for p in path.iterdir())


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch stored in a checkpoint file, or None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    try:
        return int(load_checkpoint(path)["epoch"])
    except (UserError, KeyError, ValueError):
        return None


def link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` hold the same bytes as `src` (hard link when possible), atomically."""
    with atomic_path(dst) as tmp:
        tmp.unlink()  # the unique name is reserved; a hard link needs it free
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # shortest exact round-trip: history.csv reproduces the run's numbers bit for bit
    return v


_REPORT_TEXT = ("split", "data", "checkpoint", "monitor", "run", "run_id")  # report fields holding words, not numbers


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# report numbers that are fractions (accuracies, AP, mAP: 0 to 1) and losses (from 0), by key, as history cells
_FRACTION = re.compile(r"(^|_)(acc|top5|rank1|rank5|one_off|roc_auc|average_precision|ap|ap_11pt|map\w*)$")
_LOSS = re.compile(r"(^|_)(loss|cross_entropy)$")
_AT_MOST = (("rank1", "rank5"), ("test_acc", "test_top5"), ("map", "map50"), ("test_map", "test_map50"))


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The report's finite numbers (a fraction outside 0..1 or a negative loss left out, as no run writes
    them) and its words."""
    out: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            out[key] = _numbers(value)
        elif _finite(value):
            name = str(key)
            if not ((_FRACTION.search(name) and not 0 <= value <= 1) or (_LOSS.search(name) and value < 0)):
                out[key] = value
        elif key in _REPORT_TEXT and isinstance(value, str) and value.isprintable():
            out[key] = value
    for low, high in _AT_MOST:  # top-5 counts every top-1 hit; mAP@[.5:.95] averages APs at most AP@.5
        if isinstance(out.get(low), (int, float)) and isinstance(out.get(high), (int, float)) \
                and out[low] > out[high] + 1e-9:
            del out[low], out[high]
    return out


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# run.json fields the tools read, and the types they write (None: the field may be null)
_STATE_TYPES: dict[str, tuple[str, Any]] = {
    "run_id": ("text", lambda v: isinstance(v, str)),
    "created": ("text", lambda v: isinstance(v, str)),
    "epochs_done": ("a whole number", _whole),
    "best_epoch": ("a whole number or null", lambda v: v is None or _whole(v)),
    "segments": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)),
    "error": ("text", lambda v: isinstance(v, str)),
}


def _state_problem(state: dict[str, Any]) -> str | None:
    """Which of run.json's fields holds a value of a type the tools never write, or None."""
    for key, (kind, ok) in _STATE_TYPES.items():
        if key in state and not ok(state[key]):
            shown = printable(json.dumps(state[key]))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return f"{key} is {shown}, not {kind}"
    return None


ACCURACY_COLUMNS = ("_acc", "_top5")  # history columns holding a fraction of samples, 0 to 1
TIME_COLUMNS = ("seconds", "samples_per_s")  # wall time and throughput: never negative


def _bad_cell(rows: list[dict[str, Any]]) -> str | None:
    """The first history cell that is neither empty nor a number (every column but epoch is a number), or
    an accuracy (rank-1, rank-5: a fraction from 0 to 1) outside [0, 1]; NaN stays (not measured)."""
    for i, row in enumerate(rows, 2):  # line 1 is the header
        for key, value in row.items():
            if key == "epoch" or value is None:
                continue
            shown = printable(str(value))
            shown = shown if len(shown) <= 20 else shown[:17] + "..."
            if not isinstance(value, float):
                return f"line {i}: {printable(str(key))[:40]} '{shown}' is not a number"
            if key.endswith(ACCURACY_COLUMNS) and not (math.isnan(value) or 0.0 <= value <= 1.0):
                return f"line {i}: {printable(str(key))[:40]} '{shown}' is not an accuracy from 0 to 1"
            top1 = row.get(key[: -len("_top5")] + "_acc") if key.endswith("_top5") else None
            if isinstance(top1, float) and value < top1:  # both counted from one top-k: never below
                return f"line {i}: {printable(str(key))[:40]} '{shown}' is below the top-1 accuracy {top1:g}"
            if key in TIME_COLUMNS and not (math.isnan(value) or math.isfinite(value) and value >= 0):
                return f"line {i}: {key} '{shown}' is not a duration (a finite number from 0)"
    return None


def _history_problem(rows: list[dict[str, Any]]) -> str | None:
    """What makes history.csv's rows impossible for a run to have written, or None: training writes one
    row per epoch, counting up by one from epoch 1 (or the epoch a rewind kept), with the learning rate
    it used, a finite number (losses may be NaN when training diverged; the rate never is)."""
    previous = None
    for i, row in enumerate(rows, 2):  # line 1 is the header
        epoch, lr = row.get("epoch"), row.get("lr")
        if isinstance(epoch, int) and epoch > MAX_EPOCHS:
            return f"line {i}: epoch {epoch} is beyond the {MAX_EPOCHS:,} epochs a run may have"
        if not isinstance(epoch, int) or epoch < 1 or (previous is not None and epoch != previous + 1):
            after = f" after epoch {previous}" if previous is not None else ""
            return f"line {i}: epoch {epoch}{after}; the epochs count up by one"
        if lr is not None and not (isinstance(lr, float) and math.isfinite(lr) and lr >= 0):
            return f"line {i}: learning rate {lr} is not a finite number from 0"
        previous = epoch
    return None


def _parse(key: str, value: str) -> Any:
    if value == "" or value is None:
        return None
    if key == "epoch":
        return int(value)
    try:  # ASCII numbers only: float() reads '0.9_9' as 0.99 and '١' as 1
        return plain_float(value)
    except ValueError:
        return value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
