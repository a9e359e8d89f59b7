"""Image and video inputs of predict, detect and classify: a FIFO or device is named as such, never opened."""

from __future__ import annotations

import os

import pytest

from deepvision.errors import UserError
from deepvision.inference.batching import expand_images
from deepvision.inference.detect import expand_sources
from deepvision.inference.predict import predict_images


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "v.mp4"
    os.mkfifo(path)
    return path


def test_detect_refuses_a_fifo_video(fifo):
    with pytest.raises(UserError) as exc:
        expand_sources([fifo])
    assert str(exc.value) == (f"image or video {fifo} is a FIFO, not a regular file; "
                              "give an image or video file, or a folder of images")


def test_classify_refuses_a_fifo_image(fifo):
    with pytest.raises(UserError, match=r"is a FIFO, not a regular file; give an image file or a folder"):
        expand_images([fifo])


def test_predict_refuses_a_fifo_before_loading_the_run(tmp_path, fifo):
    # the run folder does not exist: the image is checked first, so the FIFO is what is reported
    with pytest.raises(UserError) as exc:
        predict_images(tmp_path / "no-run", [fifo])
    assert str(exc.value) == (f"image {fifo} is a FIFO, not a regular file; "
                              "give an image file (JPEG, PNG, BMP, GIF, TIFF or WebP)")


def test_detect_and_classify_read_the_photos_of_a_linked_folder(tmp_path):
    """A linked sub-folder of an input folder is searched like any folder, never left out without a word;
    a link back to a folder holding the input (a loop) is refused naming it."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "ext").mkdir()
    for path in (tmp_path / "photos" / "a.jpg", tmp_path / "ext" / "b.jpg", tmp_path / "ext" / "c.png"):
        path.write_bytes(b"x")
    (tmp_path / "photos" / "more").symlink_to(tmp_path / "ext")
    found = [tmp_path / "photos" / n for n in ("a.jpg", "more/b.jpg", "more/c.png")]
    assert expand_images([tmp_path / "photos"]) == found
    assert expand_sources([tmp_path / "photos"]) == [(p, "image") for p in found]
    (tmp_path / "ext" / "up").symlink_to(tmp_path)
    for expand in (expand_images, expand_sources):
        with pytest.raises(UserError, match=f"^{tmp_path / 'photos' / 'more' / 'up'} is a link to {tmp_path}, which "
                                            f"holds {tmp_path / 'photos'}: following it would never end; remove the "
                                            f"link$"):
            expand([tmp_path / "photos"])


def test_missing_inputs_still_say_not_found(tmp_path):
    with pytest.raises(UserError, match="image or video not found: "):
        expand_sources([tmp_path / "none.jpg"])
    with pytest.raises(UserError, match="image not found: "):
        predict_images(tmp_path / "no-run", [tmp_path / "none.png"])


@pytest.mark.parametrize("top", [-3, 0, 2.5, True, "5"])
def test_api_predict_checks_top_in_the_library(tmp_path, top):
    """The Python API refuses what the CLI refuses, before the run loads (no torch.topk error)."""
    from deepvision import api

    with pytest.raises(UserError, match=r"^top must be a whole number, at least 1, got "):
        api.predict(tmp_path / "no-run", [tmp_path / "none.png"], top=top)


def test_api_predict_takes_one_path_as_one_image(tmp_path):
    from deepvision import api

    with pytest.raises(UserError, match=f"^image not found: {tmp_path / 'x.png'}; give an image file"):
        api.predict(tmp_path / "no-run", str(tmp_path / "x.png"))


EPOCH = r"^epoch must be a whole number from 0 to 100,000, got "


@pytest.mark.parametrize("call, message", [
    (lambda api, p: api.import_mxnet(p / "net", "99999"), EPOCH + r"'99999' \(a str\)$"),
    (lambda api, p: api.import_mxnet(p / "net", 99999.0), EPOCH + r"99999.0 \(a float\)$"),
    (lambda api, p: api.import_mxnet(p / "net", -1), EPOCH + "-1$"),
    (lambda api, p: api.import_mxnet(p / "net", 2**63), EPOCH + "9223372036854775808$"),
    (lambda api, p: api.import_mxnet(p / "net", True), EPOCH + r"True \(a bool\)$"),
    (lambda api, p: api.export(p / "run", opset="13"),
     r"^--opset \(an ONNX opset version\) must be a whole number from 7 to 99, got '13' \(a str\)$"),
    (lambda api, p: api.evaluate(p / "run", batch_size="4"),
     r"^--batch-size must be a whole number from 1 to 65,536, got '4' \(a str\)$"),
    (lambda api, p: api.evaluate(p / "run", crops="10"), r"^--crops must be 1, 2 or 10, got '10' \(a str\)$"),
    (lambda api, p: api.evaluate(p / "run", crops=3), r"^--crops must be 1, 2 or 10, got 3$"),
    (lambda api, p: api.evaluate(p / "run", crops=10.0), r"^--crops must be 1, 2 or 10, got 10.0 \(a float\)$"),
])
def test_api_whole_number_arguments_are_checked_in_the_library(tmp_path, call, message):
    """Wrong-typed numbers are one UserError naming the argument, before any file is read."""
    from deepvision import api

    with pytest.raises(UserError, match=message):
        call(api, tmp_path)


@pytest.mark.parametrize("command", [
    ["classify", "--model", "tv:resnet18", "x.jpg"],
    ["features", "lenet", "imgs", "--out", "f.h5"],
    ["detect", "model.pt", "x.jpg"],
    ["orientation", "apply", "model", "imgs", "--out", "o"],
])
def test_batch_sizes_are_bounded_like_evaluate(run_cli, tmp_path, command):
    """One batch of 100 million images would hold a whole folder at once: every --batch-size takes
    1 to 65,536, as evaluate's does, checked before anything is read."""
    code, _, err = run_cli(*command, "--batch-size", "100000000")
    prog = " ".join(command[:2]) if command[0] == "orientation" else command[0]  # a nested command names itself
    assert code == 2 and err.strip() == (f"deepvision {prog}: error: --batch-size must be a whole number from 1 "
                                         f"to 65,536, got 100000000")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("argv", [
    ("classify", "--model", "lenet", "{d}/imgs"),
    ("features", "lenet", "{d}/imgs", "--out", "{d}/o.h5"),
    ("emotion", "{d}/no-run", "--image", "{d}/imgs/cls"),
    ("orientation", "dataset", "{d}/imgs", "{d}/od"),
])
def test_a_fifo_named_like_an_image_inside_a_folder_is_named(tmp_path, run_cli, argv):
    """Every command that reads a folder of images names a FIFO among them instead of leaving it out."""
    from PIL import Image

    (tmp_path / "imgs" / "cls").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "imgs" / "cls" / "ok.jpg")
    fifo = tmp_path / "imgs" / "cls" / "pipe.jpg"
    os.mkfifo(fifo)
    code, out, err = run_cli(*(a.format(d=tmp_path) for a in argv))
    assert code == 2 and out == ""
    # the folder named is the one searched: the class folder for features and emotion, else the input
    searched = fifo.parent if argv[0] in ("features", "emotion") else tmp_path / "imgs"
    assert err.strip().endswith(f"{fifo} is a FIFO, not an image file; remove it from {searched} "
                                "(only regular files are read as images)")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "od").exists()
