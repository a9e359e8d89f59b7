"""A damaged PNG is refused by deepvision's own check, before libpng sees it: one reason, and nothing
printed on standard error by libpng or OpenCV ("libpng error: IDAT: CRC error") whichever path decodes it
(`im2rec --color -1`, the OpenCV fast path, Pillow, `serve`)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from deepvision.data.imageio import DecodeError, decode, decode_opencv, png_damage


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(24 * 20 * 3) % 251).astype(np.uint8).reshape(24, 20, 3)).save(buf, "PNG")
    return buf.getvalue()


def _bad_idat_crc(png: bytes) -> bytes:
    at = png.index(b"IDAT") - 4
    (length,) = struct.unpack_from(">I", png, at)
    data = bytearray(png)
    data[at + 8 + length] ^= 0xFF  # the first byte of IDAT's checksum
    return bytes(data)


def test_png_damage_names_the_chunk():
    png = _png()
    assert png_damage(png) is None and png_damage(png + b"trailing bytes") is None
    assert png_damage(_bad_idat_crc(png)) == "corrupt PNG data (checksum error in chunk IDAT)"
    assert png_damage(png[: len(png) // 2]) == "truncated PNG data (chunk IDAT cut off)"
    assert png_damage(png[:-12]) == "truncated PNG data (no IEND chunk)"


@pytest.mark.parametrize("how", ["opencv -1", "opencv 1", "opencv 0", "rgb", "gray"])
def test_every_decoder_path_refuses_it_silently(capfd, how):
    bad = _bad_idat_crc(_png())
    with pytest.raises(DecodeError, match=r"corrupt PNG data \(checksum error in chunk IDAT\)"):
        if how.startswith("opencv"):
            decode_opencv(bad, int(how.split()[1]))
        else:
            decode(bad, 1 if how == "gray" else 3)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_im2rec_color_minus_one_skips_it_in_one_line(tmp_path, capfd):
    from deepvision.cli.main import main

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "bad.png").write_bytes(_bad_idat_crc(_png()))
    (tmp_path / "img" / "good.png").write_bytes(_png())
    (tmp_path / "p.lst").write_text("0\t0\tbad.png\n1\t1\tgood.png\n")
    assert main(["im2rec", str(tmp_path / "p"), str(tmp_path / "img"), "--color", "-1"]) == 0
    out, err = capfd.readouterr()
    assert "skipped 1" in out and "libpng" not in err and "WARN" not in err and "CRC" not in err
    assert all(line.startswith(("Creating .rec file", "p: ")) for line in err.splitlines()), err
    assert "bad.png" in (tmp_path / "p.skipped.txt").read_text()


def test_serve_refuses_it_as_422_without_a_libpng_line(capfd):
    from deepvision.apps.serve.predictor import RejectedImage, decode_upload

    with pytest.raises(RejectedImage) as info:
        decode_upload(_bad_idat_crc(_png()), 3, 10**7)
    assert info.value.status == 422 and "checksum error in chunk IDAT" in info.value.message
    assert capfd.readouterr().err == ""
