"""Where an output may go: never over an input, into another command's folder or a folder of images."""

from __future__ import annotations

import errno
import os
import re

import pytest

from deepvision.errors import UserError
from deepvision.placement import require_own_folder


def test_an_output_that_is_an_input_is_refused(tmp_path):
    from deepvision.placement import refuse_output_over_inputs

    (tmp_path / "a.txt").write_text("a")
    os.link(tmp_path / "a.txt", tmp_path / "hard.txt")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    for out in ("a.txt", "hard.txt", "link.txt"):
        with pytest.raises(UserError, match="is an input of this command"):
            refuse_output_over_inputs(tmp_path / out, [tmp_path / "missing", tmp_path / "a.txt"])
    refuse_output_over_inputs(tmp_path / "new.txt", [tmp_path / "a.txt"])  # not there yet: fine
    refuse_output_over_inputs(tmp_path / "a.txt", [tmp_path / "hard-other.txt"])


def test_an_output_folder_is_new_empty_or_the_commands_own(tmp_path):
    require_own_folder(tmp_path / "new", "results.csv", "image,label", "cmd")
    (tmp_path / "empty").mkdir()
    require_own_folder(tmp_path / "empty", "results.csv", "image,label", "cmd")
    own = tmp_path / "own"
    own.mkdir()
    (own / "results.csv").write_text("image,label\na.png,cat\n")
    (own / "a.png").write_bytes(b"x")
    require_own_folder(own, "results.csv", "image,label", "cmd")
    (own / "results.csv").write_text("image,rank,class\n")  # another command's table of the same name
    with pytest.raises(UserError, match=f"^--out {own} holds files but no results.csv of an earlier cmd"):
        require_own_folder(own, "results.csv", "image,label", "cmd")
    os.mkfifo(own / "fifo.csv")
    with pytest.raises(UserError, match="holds files but no fifo.csv of an earlier cmd"):
        require_own_folder(own, "fifo.csv", "image,label", "cmd")  # never opened for reading
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=f"^--out {tmp_path / 'file'} is a file, not a folder"):
        require_own_folder(tmp_path / "file", "results.csv", "image,label", "cmd")


def test_only_a_figure_deepvision_drew_is_replaced_and_reports_stay_out_of_image_folders(tmp_path, run_cli):
    """`models show --diagram photo.png`, `runs compare --out photo.png` and `mean --out coco.json` replaced a
    data set's photo or annotation file; evaluate's figures joined another data set's class folder."""
    from PIL import Image

    from deepvision.placement import drawn_by_matplotlib, refuse_folder_of_images, refuse_replacing

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(photos / "p.png")
    before = (photos / "p.png").read_bytes()
    code, _, err = run_cli("models", "show", "lenet", "--diagram", photos / "p.png")
    assert code == 2 and f"--diagram {photos / 'p.png'} exists and is not a diagram models show drew" in err
    assert (photos / "p.png").read_bytes() == before
    for suffix in (".png", ".svg", ".pdf", ".jpg"):
        path = tmp_path / f"lenet{suffix}"
        for _ in range(2):  # its own figure: drawn again
            code, _, err = run_cli("models", "show", "lenet", "--diagram", path)
            assert code == 0 and drawn_by_matplotlib(path), err
    (tmp_path / "coco.json").write_text('{"images": []}')
    with pytest.raises(UserError, match="coco.json exists and is not a mean file; choose a new file name"):
        refuse_replacing(tmp_path / "coco.json", lambda p: False, "a mean file")
    with pytest.raises(UserError, match=r"holds images \(p.png, ...\); the report's figures would join them"):
        refuse_folder_of_images(photos, ["confusion_matrix.png"])
    refuse_folder_of_images(tmp_path / "lenet-report", ["confusion_matrix.png"])  # new folder


def test_a_figure_replaces_only_its_own_kind_and_never_joins_a_folder_of_images(tmp_path, run_cli):
    """`models show --diagram RUN/plots/accuracy.png` replaced a run's accuracy plot (any matplotlib figure
    passed), and `--diagram DATA/cat/d.png` put a diagram among a data set's photos of cats."""
    from PIL import Image

    from deepvision.runs.plots import plot_history

    plot = plot_history([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "train_acc": 0.5, "val_acc": 0.4}],
                        tmp_path / "plots")[0]
    before = plot.read_bytes()
    code, out, err = run_cli("models", "show", "lenet", "--diagram", plot)
    assert (code, out) == (2, "") and "exists and is not a diagram models show drew" in err
    assert plot.read_bytes() == before
    (tmp_path / "data" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "cat" / "a.jpg")
    code, out, err = run_cli("models", "show", "lenet", "--diagram", tmp_path / "data" / "cat" / "d.png")
    assert (code, out) == (2, "") and "would be drawn among the images of" in err and "(a.jpg, ...)" in err
    assert sorted(p.name for p in (tmp_path / "data" / "cat").iterdir()) == ["a.jpg"]
    code, _, err = run_cli("models", "show", "lenet", "--diagram", tmp_path / "d.png")  # beside figures only
    assert code == 0, err


@pytest.mark.parametrize("stop", ["Terminated", "KeyboardInterrupt"])
def test_a_stopped_generator_leaves_nothing_in_its_new_folder(tmp_path, stop):
    """A generator stopped mid-write (Ctrl+C, SIGTERM) or failing (a full disk) removes what it wrote: its
    own next run refused the half-written tree as "not empty". An empty folder the user made stays, empty,
    and a folder that holds something is refused first."""
    from deepvision import errors
    from deepvision.placement import new_output_folder

    exc = getattr(errors, stop, None) or KeyboardInterrupt
    for out, made in ((tmp_path / "new" / "fake", False), (tmp_path / "empty", True)):
        if made:
            out.mkdir()
        with pytest.raises(exc), new_output_folder(out) as folder:
            (folder / "images" / "a").mkdir(parents=True)
            (folder / "images" / "a" / "1.jpg").write_bytes(b"jpeg")
            (folder / "half.txt").write_text("half")
            raise exc
        assert (os.listdir(out) == []) if made else not (tmp_path / "new").exists()
    with pytest.raises(OSError), new_output_folder(tmp_path / "failed") as folder:
        (folder / "kept.txt").write_text("kept")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not (tmp_path / "failed").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists and is not empty"), new_output_folder(tmp_path / "full"):
        pass
    assert os.listdir(tmp_path / "full") == ["mine.txt"]


def test_a_full_disk_names_the_output_of_a_command_whose_error_names_no_file(tmp_path, run_cli, monkeypatch):
    """A write() to an open file that fails names no file: the line names the command's --out, and a
    generator leaves nothing of its half-written tree (its next run is not refused)."""
    from deepvision.apps.cars import fake

    real = fake.Image.Image.save
    calls = []

    def full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.EFBIG, "File too large")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fake.Image.Image, "save", full)
    code, out, err = run_cli("cars", "fake", "--out", tmp_path / "cars")
    assert code == 2 and err == f"deepvision cars fake: error: writing under {tmp_path / 'cars'}: File too large\n"
    assert len(calls) == 4 and os.listdir(tmp_path) == []


def test_an_output_folder_in_an_input_folder_is_refused(tmp_path):
    """An --out that is a folder of the inputs or lies inside one (through a link or a `..` detour too): the
    outputs, named as the inputs, would be read back as inputs next time. Files among the inputs, and
    folders beside the inputs, are no such folder."""
    from deepvision.placement import refuse_output_in_input_folders

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.png").write_bytes(b"x")
    (tmp_path / "link").symlink_to(photos)
    inputs = [photos / "a.png", tmp_path / "missing", photos]
    for out in (photos, tmp_path / "link", photos / "sub" / "..", photos / "sub", photos / "new" / "deeper",
                tmp_path / "link" / "new", tmp_path / "x" / ".." / "photos" / "n"):
        with pytest.raises(UserError, match=f"^--out {re.escape(str(out))} is inside the input folder {photos}; "
                                            f"its files would be read as part of it next time, so choose a "
                                            f"folder outside it$"):
            refuse_output_in_input_folders(out, inputs)
    with pytest.raises(UserError, match=f"^-o {photos / 'p.csv'} is inside the input folder {photos}; the next "
                                        f"command over that folder would read it as an input"):
        refuse_output_in_input_folders(photos / "p.csv", inputs, "-o", file=True)
    refuse_output_in_input_folders(tmp_path / "out", inputs)  # beside the photos: fine
    refuse_output_in_input_folders(photos / "sub", [photos / "a.png"])  # only folders given as inputs count


def test_an_output_inside_a_folder_linked_from_an_input_folder_is_refused(tmp_path):
    """A linked folder under an input folder is read as part of it: an --out inside the link's target would be
    read back next time, so it is refused naming the link; a folder beside the target is fine."""
    from deepvision.placement import refuse_output_in_input_folders

    (tmp_path / "photos").mkdir()
    (tmp_path / "ext" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "more").symlink_to(tmp_path / "ext")
    with pytest.raises(UserError, match=f"^--out {tmp_path / 'ext' / 'sub'} is inside {tmp_path / 'photos'}'s linked "
                                        f"folder {tmp_path / 'photos' / 'more'}; its files would be read as part of "
                                        f"it next time, so choose a folder outside it$"):
        refuse_output_in_input_folders(tmp_path / "ext" / "sub", [tmp_path / "photos"])
    refuse_output_in_input_folders(tmp_path / "out", [tmp_path / "photos"])
