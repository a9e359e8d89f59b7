"""Every entry point decodes through `data.imageio`: the same awkward images give the same pixels, and
the same over-budget image the same refusal, on each of them (folder dataset, record loader with the
CPU and the nvJPEG path, `recordio.unpack_img`, predict's preprocess and the web server's upload)."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pytest
from PIL import Image

from deepvision.apps.serve.predictor import RejectedImage, decode_upload
from deepvision.data import RecordLoader
from deepvision.data.builtin_sources import ImageFileDataset
from deepvision.data.imageio import ENV_MAX_PIXELS, DecodeError, PixelLimitError, decode, decode_opencv
from deepvision.data.preprocess import Preprocess
from deepvision.data.records import IRHeader, pack_header, unpack_img
from deepvision.datasets.records import RecordWriter
from deepvision.errors import UserError
from tests.data.recordtools import noise_image

W, H = 24, 16  # every image below displays as 24 x 16


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def awkward_images() -> dict[str, bytes]:
    base = noise_image(3, (W, H))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 16 x 24, shown turned 90 degrees clockwise
    palette = Image.new("P", (W, H), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, W // 2, H))
    ramp = np.linspace(0, 65535, W * H).reshape(H, W).astype(np.uint16)
    rgba = np.dstack([np.asarray(base), np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))])
    return {
        "exif.jpg": _save(base.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif),
        "cmyk.jpg": _save(base.convert("CMYK"), "JPEG", quality=95),
        "gray16.png": _save(Image.fromarray(ramp), "PNG"),
        "palette_alpha.png": _save(palette, "PNG", transparency=0),
        "rgba.png": _save(Image.fromarray(rgba, "RGBA"), "PNG"),
        "plain.png": _save(base, "PNG"),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("awkward")
    data = awkward_images()
    for name, body in data.items():
        (root / name).write_bytes(body)
    rec = root / "all.rec"
    with RecordWriter(rec) as writer:
        for k, body in enumerate(data.values()):
            writer.write(pack_header(IRHeader(0, 0.0, k, 0), body), key=k)
    return root, data, rec


def test_every_entry_point_gives_the_same_pixels(images):
    root, data, rec = images
    names = list(data)
    reference = np.stack([decode(data[n], 3) for n in names])
    assert reference.shape == (len(names), H, W, 3)
    # the conversions themselves: EXIF turned upright, alpha on white, 16 bits scaled, palette colours
    upright = np.asarray(Image.open(io.BytesIO(data["exif.jpg"])).transpose(Image.Transpose.ROTATE_270))
    assert np.abs(reference[0].astype(int) - upright).max() <= 1
    assert reference[2, 0, 0].tolist() == [0, 0, 0] and reference[2, -1, -1].tolist() == [255, 255, 255]
    assert reference[3, 0, 0].tolist() == [0, 0, 255] and reference[3, 0, -1].tolist() == [255, 255, 255]
    base = np.asarray(noise_image(3, (W, H)))
    assert (reference[4, :, 0] == 255).all() and np.array_equal(reference[4, :, -1], base[:, -1])  # alpha 0, 255

    as_hwc = {
        "folder dataset": [np.asarray(ImageFileDataset([str(root / n)], [0], 3)[0][0]) for n in names],
        "predict": [Preprocess(3, (H, W)).load(root / n).permute(1, 2, 0).numpy() for n in names],
        "serve upload": [decode_upload(data[n], 3, 10**6) for n in names],
        "unpack_img": [unpack_img(pack_header(IRHeader(0, 0.0, 0, 0), data[n]), 1)[1][:, :, ::-1] for n in names],
        "packing (im2rec)": [decode_opencv(data[n], 1)[:, :, ::-1] for n in names],
    }
    for decoder, device in (("auto", None), ("nvjpeg", "cpu")):  # nvJPEG's path, faked on the CPU
        loader = RecordLoader(rec, len(names), size=(H, W), decoder=decoder, device=device, workers=0)
        (x, _), = list(loader)
        as_hwc[f"record loader ({decoder})"] = list(x.permute(0, 2, 3, 1).cpu().numpy())
    for entry, arrays in as_hwc.items():
        for name, got, want in zip(names, arrays, reference):
            assert np.array_equal(got, want), f"{entry} decodes {name} differently"


def test_every_entry_point_refuses_an_image_above_the_budget(images, monkeypatch):
    root, data, rec = images
    monkeypatch.setenv(ENV_MAX_PIXELS, str(W * H - 1))
    message = f"({W}x{H}|{H}x{W}) = {W * H} pixels is above the pixel limit of {W * H - 1}"  # stored size
    for name, body in data.items():
        path = root / name
        for entry in (partial(decode, body, 3), partial(decode, body, 1), partial(decode_opencv, body, -1),
                      partial(unpack_img, pack_header(IRHeader(0, 0.0, 0, 0), body))):
            with pytest.raises(PixelLimitError, match=message):
                entry()
        for entry in (partial(ImageFileDataset([str(path)], [0], 3).__getitem__, 0),
                      partial(Preprocess(3, (H, W)).load, path)):
            with pytest.raises(UserError, match=message):
                entry()
        with pytest.raises(RejectedImage) as refused:
            decode_upload(body, 3, W * H - 1)
        assert refused.value.status == 413 and "= 0.0 megapixels, above this server's limit" in refused.value.message
    for decoder, device in (("auto", None), ("nvjpeg", "cpu")):
        loader = RecordLoader(rec, len(data), size=(H, W), decoder=decoder, device=device, workers=0,
                              skip_corrupt=True)
        with pytest.warns(UserWarning, match="skipped 6 unreadable sample"):
            assert sum(len(y) for _, y in loader) == 0
        assert len(loader.skips.epoch) == len(data)
        assert all("above the pixel limit of 383" in why for why in loader.skips.epoch)


def test_header_reads_follow_the_limit_in_force(images, monkeypatch):
    """image_size (detection index building) reads headers with Pillow, whose bomb check is process-wide:
    a smaller limit used earlier must not make later images unreadable."""
    from deepvision.data.imageio import image_size

    root, data, _ = images
    monkeypatch.setenv(ENV_MAX_PIXELS, "100")
    with pytest.raises(PixelLimitError):
        decode(data["rgba.png"], 3)
    assert image_size(root / "rgba.png") is None  # 384 pixels, above the limit: not readable now
    monkeypatch.delenv(ENV_MAX_PIXELS)
    assert image_size(root / "rgba.png") == (W, H)
    assert image_size(root / "exif.jpg") == (W, H)  # EXIF rotation applied to the stored 16 x 24


def test_a_png_side_above_libpngs_limit_is_refused_from_the_header(tmp_path, capfd):
    """libpng reads no side above 1,000,000 pixels and prints its own lines on stderr when asked to:
    the header is checked first, one refusal on every route, nothing from libpng."""
    path = tmp_path / "wide.png"
    Image.new("L", (1_000_001, 1), 9).save(path)
    body = path.read_bytes()
    message = "a 1,000,001 x 1 PNG; sides above 1,000,000 pixels are not read"
    for entry in (partial(decode, body, 3), partial(decode, body, 1), partial(decode_opencv, body, -1),
                  partial(decode_opencv, body, 1)):
        with pytest.raises(DecodeError, match=message):
            entry()
    with pytest.raises(UserError, match=rf"^cannot read .*wide\.png: {message}"):
        Preprocess(1, (8, 8)).load(path)
    assert decode(_save(Image.new("L", (1_000_000, 1), 9), "PNG"), 1).shape == (1, 1_000_000, 1)
    assert capfd.readouterr().err == ""
