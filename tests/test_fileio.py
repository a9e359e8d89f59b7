"""fileio.atomic_path / PendingFile: the one way files are replaced."""

from __future__ import annotations

import errno
import os

import pytest

from deepvision.errors import UserError
from deepvision.fileio import PendingFile, atomic_path, file_mode


def test_the_target_appears_whole_with_the_usual_permissions(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old" and tmp.parent == tmp_path and tmp.name.startswith(".a.txt.")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == file_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_an_error_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    full = r"could not write .*a\.txt: No space left on device; the previous file is intact — free some space"
    with pytest.raises(UserError, match=full), atomic_path(target, hint=" — free some space"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_pending_file_commits_or_discards(tmp_path):
    pending = PendingFile(tmp_path / "r.rec", ".partial")
    assert pending.tmp.name.endswith(".partial") and pending.tmp.exists()
    pending.tmp.write_bytes(b"x")
    pending.discard()
    assert not list(tmp_path.iterdir())
    pending = PendingFile(tmp_path / "r.rec")
    pending.tmp.write_bytes(b"y")
    pending.commit()
    assert (tmp_path / "r.rec").read_bytes() == b"y" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(UserError, match="could not write"):
        PendingFile(tmp_path / "missing" / "r.rec")


def test_output_folder_removes_only_the_empty_folders_it_created(tmp_path):
    from deepvision.fileio import output_folder

    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "old" / "a" / "b") as out:
        assert out.is_dir()
        raise RuntimeError("failed")
    assert (tmp_path / "old").is_dir() and list((tmp_path / "old").iterdir()) == []
    with pytest.raises(RuntimeError), output_folder(tmp_path / "x" / "y") as out:
        (tmp_path / "x" / "written.txt").write_text("kept")
        raise RuntimeError("failed")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["written.txt"]
    with output_folder(tmp_path / "ok" / "z") as out:
        pass
    assert out.is_dir()


def test_output_folder_discards_on_a_stop_an_extension_turned_into_an_import_error(tmp_path):
    """A SIGTERM landing while a compiled extension imports arrives as "ImportError: initialization failed"
    raised from it: still a stop, so what the block added goes; a plain ImportError keeps the written files."""
    from deepvision.errors import Terminated
    from deepvision.fileio import output_folder

    for stop, kept in ((Terminated, []), (None, ["half.png"])):
        out = tmp_path / str(stop)
        out.mkdir()
        with pytest.raises(ImportError), output_folder(out, discard_on_stop=True):
            (out / "half.png").write_text("half")
            try:
                if stop is not None:
                    raise stop
            finally:
                raise ImportError("initialization failed")
        assert sorted(p.name for p in out.iterdir()) == kept


def test_output_folder_removes_the_empty_sub_folders_a_failed_build_made(tmp_path):
    """images/cat/ made by a build that failed before its first image goes with --out; in a folder the user
    had, only what the build made goes (their empty folder and their files stay)."""
    from deepvision.fileio import output_folder, output_subfolder

    with pytest.raises(RuntimeError), output_folder(tmp_path / "new") as out:
        output_subfolder(out, "images/cat")
        output_subfolder(out, "images/dog")
        raise RuntimeError("failed")
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    (mine / "empty").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), output_folder(mine) as out:
        output_subfolder(out, "images/cat")
        output_subfolder(out, "lists")
        (out / "lists" / "train.lst").write_text("written before the failure")
        raise RuntimeError("failed")
    assert sorted(p.name for p in mine.iterdir()) == ["empty", "lists", "notes.txt"]
    assert [p.name for p in (mine / "lists").iterdir()] == ["train.lst"]


def test_written_whole_lands_every_file_at_the_end_or_none(tmp_path):
    """A report written through written_whole: on success its files replace the earlier report's name by name
    (a file it no longer writes goes, the user's own file stays); a stop or a failure midway leaves the folder as
    it was, and a new folder (with its new parents) not there at all."""
    from deepvision.errors import Terminated
    from deepvision.fileio import written_whole

    out = tmp_path / "report"
    out.mkdir()
    for name, text in (("metrics.json", "old"), ("curves.png", "old"), ("notes.txt", "mine")):
        (out / name).write_text(text)
    for stop in (Terminated, KeyboardInterrupt, UserError):
        with pytest.raises(stop), written_whole(out, last="metrics.json", stale=["metrics.json", "curves.png"]) as tmp:
            (tmp / "table.csv").write_text("new")
            raise stop("stopped while writing")
        assert {p.name: p.read_text() for p in out.iterdir()} == {"metrics.json": "old", "curves.png": "old",
                                                                  "notes.txt": "mine"}
    with written_whole(out, last="metrics.json", stale=["metrics.json", "curves.png"]) as tmp:
        (tmp / "metrics.json").write_text("new")
        (tmp / "table.csv").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"metrics.json": "new", "table.csv": "new",
                                                              "notes.txt": "mine"}
    with pytest.raises(Terminated), written_whole(tmp_path / "eval" / "new") as tmp:
        (tmp / "metrics.json").write_text("half")
        raise Terminated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_stop_during_written_whole_moves_is_held_until_every_file_landed(tmp_path, monkeypatch):
    """Ctrl+C arriving while the finished files are moved into place is raised after the last one: the folder
    holds the whole new report, never half of it."""
    import signal

    from deepvision import fileio

    real_move, calls = fileio.move, []

    def move_then_ctrl_c(src, dst):
        calls.append(os.path.basename(dst))
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # delivered at once: held, not raised here
        real_move(src, dst)

    monkeypatch.setattr(fileio, "move", move_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt), fileio.written_whole(tmp_path / "out", last="metrics.json") as tmp:
        for name in ("metrics.json", "a.csv", "b.png"):
            (tmp / name).write_text(name)
    assert calls == ["a.csv", "b.png", "metrics.json"]  # the table marking the folder lands last
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.csv", "b.png", "metrics.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_written_whole_moves_files_of_sub_folders_and_refuses_a_planted_link(tmp_path):
    """Drawings in sub-folders (agegender's PHOTO/face0_age.png) join an earlier run's sub-folder; a link planted
    at one is refused before any file moves, and the folder stays as it was."""
    from deepvision.fileio import written_whole

    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "old.png").write_text("old")
    with written_whole(out, last="results.csv") as tmp:
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        for name in ("a/new.png", "b/new.png", "results.csv"):
            (tmp / name).write_text("new")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a/new.png", "a/old.png", "b/new.png", "results.csv"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "c").symlink_to(elsewhere)
    with pytest.raises(UserError, match="is a link"), written_whole(out) as tmp:
        (tmp / "c").mkdir()
        (tmp / "results.csv").write_text("newer")
        (tmp / "c" / "new.png").write_text("new")
    assert (out / "results.csv").read_text() == "new" and not list(elsewhere.iterdir())
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c", "results.csv"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, UserError])
def test_a_pending_file_made_with_parents_removes_them_when_discarded(tmp_path, stop):
    """`--out new/sub/f.h5` stopped or failed leaves no new/ (a folder that was there stays)."""
    from deepvision.fileio import atomic_path

    with pytest.raises(stop), atomic_path(tmp_path / "new" / "sub" / "f.h5", parents=True) as tmp:
        tmp.write_bytes(b"half")
        raise stop("stopped")
    assert list(tmp_path.iterdir()) == []
    pending = PendingFile(tmp_path / "new" / "f.h5", parents=True)
    pending.commit()
    assert (tmp_path / "new" / "f.h5").is_file()
    pending = PendingFile(tmp_path / "new" / "more" / "g.h5", parents=True)
    pending.discard()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["f.h5"]


def test_split_lists_that_cannot_be_written_leave_no_out_folder(tmp_path):
    """cars lists / imagenet lists write through write_split_lists: a refused list leaves no folder."""
    from deepvision.data.lst import ListEntry
    from deepvision.datasets.listing import write_split_lists

    bad = {"train": [ListEntry(0, (1.0,), "b\tc.jpg")], "val": [ListEntry(0, (0.0,), "a.jpg")]}
    with pytest.raises(UserError, match=r"holds a tab or a line break"):
        write_split_lists(tmp_path / "lists" / "cars", bad, "cars lists")
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_is_refused_as_text_without_blocking(tmp_path):
    from deepvision.fileio import open_regular_text

    os.mkfifo(tmp_path / "f")
    with pytest.raises(OSError, match="not a regular file"):
        open_regular_text(tmp_path / "f")
    (tmp_path / "t.csv").write_text("a,b\r\n1,2\r\n")
    with open_regular_text(tmp_path / "t.csv") as f:
        assert f.read() == "a,b\r\n1,2\r\n"


def test_output_subfolder_refuses_a_planted_link_below_out(tmp_path):
    """Sub-folders of --out are made (a linked --out is the user's own choice); a link planted at a
    sub-folder, or a file where one goes, is one UserError and nothing lands in the link's target."""
    from deepvision.errors import UserError
    from deepvision.fileio import output_subfolder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = output_subfolder(tmp_path / "o", "a/b")
    assert made == tmp_path / "o" / "a" / "b" and made.is_dir() and not made.is_symlink()
    assert output_subfolder(tmp_path / "o", "a/b") == made  # already there: kept
    (tmp_path / "linked").symlink_to(elsewhere)
    assert output_subfolder(tmp_path / "linked", "c").resolve() == elsewhere / "c"
    (tmp_path / "o" / "face").symlink_to(elsewhere)
    with pytest.raises(UserError, match=r"^--out .*face is a link; deepvision never writes through a link"):
        output_subfolder(tmp_path / "o", "face/deep")
    (tmp_path / "o" / "a" / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(UserError, match="dangling is a link"):
        output_subfolder(tmp_path / "o", "a/dangling", option="--lists")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "o" / "file").write_text("x")
    with pytest.raises(UserError, match="file is a file where a folder goes"):
        output_subfolder(tmp_path / "o", "file")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["c"]


def test_a_torch_file_listing_a_member_twice_is_refused(tmp_path):
    """torch's reader takes the first of two members of one name, zipfile the last: a checkpoint whose zip
    lists a tensor's storage twice is refused in one line before torch reads it."""
    import warnings
    import zipfile

    import torch

    from deepvision.fileio import read_torch_file

    path = tmp_path / "last.pt"
    torch.save({"w": torch.zeros(3)}, path)
    storage = next(n for n in zipfile.ZipFile(path).namelist() if "/data/" in n)
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as zf:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name" warning
        zf.writestr(storage, torch.ones(3).numpy().tobytes())
    before = path.read_bytes()
    with pytest.raises(UserError, match=f"last.pt is corrupt \\(it holds the member '{storage}' twice\\); retrain"):
        read_torch_file(path, "checkpoint", "retrain")
    assert path.read_bytes() == before


@pytest.mark.parametrize("where", ["mkstemp", "replace"])
def test_a_ctrl_c_while_a_file_is_created_or_renamed_leaves_no_hidden_file(tmp_path, monkeypatch, where):
    """A stop that lands as the temporary file is made or renamed into place (a second Ctrl+C in training stops
    at once) waits for that step: the file is whole or absent, never a stray `.NAME.*.tmp` beside it."""
    import os
    import signal
    import tempfile

    from deepvision import fileio

    real = {"mkstemp": tempfile.mkstemp, "replace": os.replace}[where]

    def interrupted(*args, **kwargs):
        result = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(fileio.tempfile if where == "mkstemp" else fileio.os, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_text(tmp_path / "run.json", "{}\n")
    assert os.listdir(tmp_path) == ([] if where == "mkstemp" else ["run.json"])


def test_messages_name_files_where_they_land_not_in_hidden_work_folders(tmp_path):
    """A disk-full line names out/sheet.png and run/config.yaml, not the hidden folder being written."""
    from deepvision.fileio import public_names, written_whole

    with written_whole(tmp_path / "out") as work:
        assert public_names(f"could not write {work / 'sheet.png'}: No space left on device") == \
            f"could not write {tmp_path / 'out' / 'sheet.png'}: No space left on device"
    assert public_names("could not write .partial-ab12cd_4/a.png: x") == "could not write a.png: x"
    assert public_names("could not write /t/.ulk.import-3vz_pjv1/config.yaml: File too large") == \
        "could not write /t/ulk/config.yaml: File too large"
    assert public_names("could not write '/t/.ulk.import-3vz_pjv1': x") == "could not write '/t/ulk': x"
    for kept in ("/a/.partial-abc/y", "/a/b.import-1234abcd/c", "/a/x.partial-1234abcd/c"):  # not ours
        assert public_names(kept) == kept
