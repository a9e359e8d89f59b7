"""The one evaluation transform: image files of every kind decode to identical model inputs on every path."""

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from deepvision.config.schema import AugmentConfig
from deepvision.data.preprocess import Preprocess, open_image
from deepvision.data.tensor_loader import BatchAugment
from deepvision.data.transforms import SampleTransform
from deepvision.errors import UserError


def photo(w=48, h=36):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_same_tensor_on_predict_loader_and_tensor_paths(tmp_path):
    pre = Preprocess(channels=3, size=(28, 28), resize=32, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    path = tmp_path / "x.png"
    photo().save(path)
    by_predict = pre.load(path)  # predict / deployment
    by_loader = SampleTransform(pre, AugmentConfig(rand_crop=True, rand_mirror=True), training=False)(
        open_image(path, 3))  # evaluation through worker loaders: augmentation is never applied
    resized = open_image(path, 3).resize((42, 32), Image.BILINEAR)  # short side 32 (48x36 -> 42x32)
    stored = torch.from_numpy(np.array(resized)).permute(2, 0, 1)[None]
    by_tensor = BatchAugment(AugmentConfig(rand_crop=True), (28, 28)).center(stored)[0]  # in-memory eval path
    assert torch.equal(by_predict, by_loader)
    assert torch.equal(by_predict, by_tensor)
    x = pre.normalize(by_predict)
    expected = (by_predict.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / 0.2
    torch.testing.assert_close(x, expected)


def test_image_modes_convert_correctly(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white background
    assert np.array(open_image(rgba, 3))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # CMYK red
    assert np.array(open_image(cmyk, 3))[0, 0].tolist() == [255, 0, 0]
    gray16 = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert np.array(open_image(gray16, 1)).max() == 255
    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 0, 255] * 256)
    assert np.array(open_image(pal, 3))[0, 0].tolist() == [0, 0, 255]
    assert open_image(photo(), 1).mode == "L"


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "black")
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    shown = open_image(buf.getvalue(), 3)
    assert shown.size == (20, 40)
    assert np.array(shown)[2, 10].mean() > 200  # the band is now on top


def test_unreadable_input():
    with pytest.raises(UserError, match="cannot read image as an image"):
        open_image(b"definitely not an image", 3)


@pytest.mark.parametrize(("scale", "mean", "std"), [
    (1e308, [], []), (1 / 255, [], [1e-308]), (1 / 255, [1e300], [1e-10]), (1.0, [], [1e-11]),
])
def test_a_map_of_pixels_to_inputs_that_would_overflow_is_refused(scale, mean, std):
    with pytest.raises(UserError, match=r"\(data\.scale, data\.mean, data\.std\) map pixel values 0\.\.255 "
                                        r"beyond \+-1e\+12"):
        Preprocess(channels=1, size=(8, 8), scale=scale, mean=mean, std=std)


@pytest.mark.parametrize(("scale", "std"), [(1e-300, []), (1e-46, []), (1e-30, [1e20]), (1e-20, []), (1e-6, [])])
def test_a_map_that_collapses_every_pixel_to_one_input_is_refused(scale, std):
    # scale 1e-300 underflowed float32: the demo trained on blank images at chance, predict answered alike
    with pytest.raises(UserError, match=r"maps pixel values 0\.\.255 to inputs less than 0\.001 apart \(every "
                                        r"image would look blank\)$"):
        Preprocess(channels=1, size=(8, 8), scale=scale, std=std)
    Preprocess(channels=1, size=(8, 8), scale=1e-5)  # small, but black and white still differ by 0.00255


def test_the_usual_maps_are_kept():
    for scale, mean, std in ((1 / 255, [], []), (1.0, [123.7, 116.3, 103.5], [58.4, 57.1, 57.4]),
                             (1 / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), (1 / 127.5, [1.0], [1.0])):
        Preprocess(channels=3, size=(8, 8), scale=scale, mean=mean, std=std)


def test_a_resize_above_the_pixel_limit_is_refused_naming_the_image(tmp_path, monkeypatch):
    # a 2,000 x 1 image resized to a shorter side of 64 would be 128,000 x 64 = 8.2 M pixels: above a 1 M limit
    from deepvision.data.dataset_loader import DatasetSource

    monkeypatch.setenv("DEEPVISION_MAX_IMAGE_PIXELS", "1000000")
    wide = tmp_path / "wide.png"
    Image.new("L", (2000, 1), 7).save(wide)
    pre = Preprocess(channels=1, size=(32, 32), resize=64)
    with pytest.raises(UserError, match=r"wide\.png: a 2,000 x 1 image .* 128,000 x 64 = 8,192,000 pixels, "
                                        r"above the pixel limit of 1,000,000"):
        pre.load(wide)
    ok = io.BytesIO()
    Image.new("L", (200, 20)).save(ok, format="PNG")
    assert tuple(pre.load(ok.getvalue()).shape) == (1, 32, 32)  # 640 x 64: within the limit

    class Files:
        paths = [str(wide), "small.png"]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return (Image.open(wide) if i == 0 else Image.new("L", (40, 40))), i

    transform = SampleTransform(pre, None, training=False)
    with pytest.raises(UserError, match=r"cannot read .*wide\.png: a 2,000 x 1 image"):
        DatasetSource(Files(), transform).make(0, [0, 1])
    x, y, skipped = DatasetSource(Files(), transform, skip_errors=True).make(0, [0, 1])
    assert tuple(x.shape) == (1, 1, 32, 32) and y.tolist() == [1] and skipped == [str(wide)]


@pytest.mark.parametrize(("change", "message"), [
    ({"scale": "0.5"}, r"preprocess scale must be numbers, got '0.5' \(a str\)"),
    ({"scale": True}, r"preprocess scale must be numbers, got True \(a bool\)"),
    ({"mean": ["0.1"]}, r"preprocess mean must be numbers, got '0.1' \(a str\)"),
    ({"std": 0.5}, r"preprocess std must be a list of numbers, got 0.5 \(a float\)"),
    ({"crop": "maybe"}, r"preprocess crop must be true or false, got 'maybe' \(a str\)"),
    ({"crop": 1}, r"preprocess crop must be true or false, got 1"),
    ({"scale": -0.0039}, r"scale and std above 0 \(a negative one inverts the image\)"),
    ({"std": [-1.0]}, r"scale and std above 0"),
    ({"std": [0.0]}, r"scale and std above 0"),
])
def test_preprocess_values_of_the_wrong_type_are_refused(change, message):
    """A string that reads as a number, or as a yes, is not taken for one: it would change predictions."""
    with pytest.raises(UserError, match=message):
        Preprocess.from_dict({"channels": 1, "size": [28, 28], **change})
    assert Preprocess.from_dict({"channels": 1, "size": [28, 28], "scale": 0.5, "crop": True}).crop is True


@pytest.mark.parametrize(("key", "hint"), [
    ("interpolaton", " (did you mean: interpolation?)"), ("mean_file", " (did you mean: mean?)"), ("colour", ""),
])
def test_an_unknown_preprocess_key_is_refused_naming_the_closest(tmp_path, run_cli, key, hint):
    """A misspelled or foreign key in preprocess.json (or export metadata) was dropped: neither applied nor named."""
    from deepvision.runs.rundir import RunDir

    message = (f"preprocess key '{key}' is not a preprocessing setting{hint}; valid: channels, size, resize, scale, "
               f"mean, std, crop, interpolation")
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        Preprocess.from_dict({"channels": 1, "size": [28, 28], key: "bgr"})
    written = Preprocess(3, (32, 32), resize=36, mean=[0.5], std=[0.25], crop=True, interpolation="bicubic")
    run = RunDir(tmp_path)
    run.write_preprocess(written)  # what the project writes reads back, every field
    assert run.read_preprocess() == written
    text = json.dumps({**written.to_dict(), key: "bgr"})
    run.preprocess_path.write_text(text)
    with pytest.raises(UserError, match=f"^{re.escape(f'{run.preprocess_path}: {message}')}$"):
        run.read_preprocess()
    assert run.preprocess_path.read_text() == text
