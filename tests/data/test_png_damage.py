"""A damaged PNG is refused by deepvision's own check, before libpng sees it: one reason, and nothing
printed on standard error by libpng or OpenCV ("libpng error: IDAT: CRC error", "libpng error: IDAT:
invalid distance too far back") whichever path decodes it (`im2rec --color -1`, the OpenCV fast path,
Pillow, a folder data set, `predict`, `serve`)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from deepvision.data.imageio import DecodeError, decode, decode_opencv
from deepvision.safeload.images import png_check, png_damage


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


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_stream(stream: bytes, width: int = 2, height: int = 1) -> bytes:
    """An 8-bit grey PNG whose chunk checksums are all right, around the zlib `stream` given."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def _too_far_back() -> bytes:
    """Valid checksums, a broken deflate stream: its first code copies from before the start of the data
    (libpng: "IDAT: invalid distance too far back")."""
    bits = [1, 1, 0]  # last block, fixed Huffman codes (fields are written low bit first)
    for code, width in ((0b0000001, 7), (0, 5), (0, 7)):  # a 3-byte match, 1 byte back; end of block
        bits += [(code >> (width - 1 - i)) & 1 for i in range(width)]  # Huffman codes: high bit first
    bits += [0] * (-len(bits) % 8)
    stream = bytes(sum(b << i for i, b in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
    return _png_with_stream(b"\x78\x01" + stream)


def test_png_damage_reads_the_compressed_image_data():
    """The zlib stream across the IDAT chunks is inflated and checked: broken, short, a bad row filter;
    a good PNG (and one with more data than its rows need, which libpng decodes) passes."""
    rows = bytes([0, 7, 7, 1, 2, 2])  # 2 x 2 grey: each row a filter byte (0-4) then two samples
    assert png_damage(_png_with_stream(zlib.compress(rows), height=2)) is None
    assert png_check(_png_with_stream(zlib.compress(rows), height=2)) == (None, False)
    assert png_check(_png_with_stream(zlib.compress(rows + bytes(9)), height=2)) == (None, True)
    assert png_check(_png_with_stream(zlib.compress(rows) + b"more", height=2)) == (None, True)
    assert png_damage(_too_far_back()) == "corrupt PNG data (compressed image data: invalid distance too far back)"
    assert png_damage(_png_with_stream(zlib.compress(rows[:4]), height=2)) == \
        "truncated PNG data (the compressed image data ends early)"
    assert png_damage(_png_with_stream(zlib.compress(rows)[:-6], height=2)) == \
        "truncated PNG data (the compressed image data ends early)"
    assert png_damage(_png_with_stream(zlib.compress(bytes([0, 7, 7, 9, 2, 2])), height=2)) == \
        "corrupt PNG data (a bad row filter in the image data)"
    stream = bytearray(zlib.compress(rows))
    stream[-1] ^= 0xFF  # the Adler-32 check of the stream
    assert png_damage(_png_with_stream(bytes(stream), height=2)) == \
        "corrupt PNG data (compressed image data: incorrect data check)"
    png = _png()
    assert np.array_equal(decode(png, 3), (np.arange(24 * 20 * 3) % 251).reshape(24, 20, 3))


def test_png_damage_names_the_chunk():
    png = _png()
    assert png_damage(png) is None and png_damage(png + b"trailing bytes") is None
    assert png_damage(_bad_idat_crc(png)) == "corrupt PNG data (checksum error in chunk IDAT)"
    assert png_damage(png[: len(png) // 2]) == "truncated PNG data (chunk IDAT cut off)"
    assert png_damage(png[:-12]) == "truncated PNG data (no IEND chunk)"


def _png_with_header(width: int, height: int, bits: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00\x80\x80" * 2))
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize(("header", "declared"), [
    ((0, 2), "a size of 0x2"), ((2, 0), "a size of 2x0"), ((2, 2, 3, 2), "colour type 2 at 3 bits"),
    ((2, 2, 8, 5), "colour type 5 at 8 bits"), ((2, 2, 8, 0, 2), "compression 0, filter 0, interlace 2"),
])
@pytest.mark.parametrize("how", ["opencv -1", "rgb"])
def test_a_header_libpng_refuses_is_refused_before_it(capfd, header, declared, how):
    """libpng prints "Image width is zero in IHDR" / "Invalid IHDR data" before OpenCV returns."""
    bad = _png_with_header(*header)
    with pytest.raises(DecodeError, match=rf"corrupt PNG data \(its header declares {declared}\)"):
        decode_opencv(bad, -1) if how.startswith("opencv") else decode(bad, 3)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("damage", ["checksum error in chunk IDAT", "invalid distance too far back"])
@pytest.mark.parametrize("how", ["opencv -1", "opencv 1", "opencv 0", "rgb", "gray"])
def test_every_decoder_path_refuses_it_silently(capfd, how, damage):
    bad = _bad_idat_crc(_png()) if damage.startswith("checksum") else _too_far_back()
    with pytest.raises(DecodeError, match=rf"corrupt PNG data \(.*{damage}\)"):
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


def test_serve_refuses_a_broken_deflate_stream_as_422_without_a_libpng_line(capfd):
    from deepvision.apps.serve.predictor import RejectedImage, decode_upload

    with pytest.raises(RejectedImage) as info:
        decode_upload(_too_far_back(), 3, 10**7)
    assert info.value.status == 422 and "invalid distance too far back" in info.value.message
    assert capfd.readouterr().err == ""


def test_folder_data_set_and_predict_refuse_it_in_their_own_line(tmp_path):
    """In a fresh process (libpng writes to file descriptor 2 itself): a folder data set's item and
    `predict`'s reader (open_image) refuse the broken stream with deepvision's message, and standard
    error holds only what the script prints."""
    bad = tmp_path / "cat" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(_too_far_back())
    script = (
        "import sys\n"
        "from deepvision.data.builtin_sources import ImageFileDataset\n"
        "from deepvision.data.imageio import open_image\n"
        "from deepvision.errors import UserError\n"
        "for read in (lambda: ImageFileDataset([sys.argv[1]], [0], 3)[0], lambda: open_image(sys.argv[1], 1)):\n"
        "    try:\n"
        "        read()\n"
        "    except UserError as exc:\n"
        "        print(exc, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(bad)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "libpng" not in done.stderr, done.stderr
    assert all(line.startswith(f"cannot read {bad} as an image (corrupt PNG data (compressed image data: "
                               f"invalid distance too far back))") for line in lines), lines


@pytest.mark.parametrize("extra", ["rows", "after the stream"])
@pytest.mark.parametrize("how", ["opencv -1", "opencv 1", "opencv 0", "rgb", "gray"])
def test_more_data_than_the_rows_need_decodes_without_a_libpng_warning(capfd, how, extra):
    """libpng decodes such a PNG but prints "IDAT: Too much image data" / "Extra compressed data": it goes
    to Pillow instead, with the pixels of the PNG written properly."""
    pixels = (np.arange(6 * 5 * 3) * 7 % 251).astype(np.uint8).reshape(6, 5, 3)
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    stream = zlib.compress(rows + bytes(40)) if extra == "rows" else zlib.compress(rows) + b"\x00" * 8
    ihdr = struct.pack(">IIBBBBB", 5, 6, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")
    if how.startswith("opencv"):
        got = decode_opencv(png, int(how.split()[1]))
        want = pixels[:, :, ::-1] if how != "opencv 0" else decode_opencv(_encoded(pixels), 0)
    else:
        got = decode(png, 1 if how == "gray" else 3)
        want = pixels if how == "rgb" else decode(_encoded(pixels), 1)
    assert np.array_equal(got, want)
    assert capfd.readouterr().err == ""


def _encoded(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _with_chunk(png: bytes, kind: bytes) -> bytes:
    """`png` with a damaged `kind` chunk after its header: a zTXt whose text inflates to 20 MB (beyond what
    libpng inflates), or an iCCP whose profile is too short."""
    body = zlib.compress(b"a" * 20_000_000, 9) if kind == b"zTXt" else zlib.compress(b"\x00" * 64)
    return png[:33] + _chunk(kind, b"k\x00\x00" + body) + png[33:]


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP"])
@pytest.mark.parametrize("how", ["opencv -1", "opencv 1", "opencv 0", "rgb", "gray", "rgba"])
def test_a_damaged_text_or_profile_chunk_decodes_without_a_libpng_warning(capfd, how, kind):
    """libpng prints "zTXt: truncated" / "iCCP: profile 'k': 0h: too short" on standard error for these:
    the chunks, which no decoder here turns into pixels, are left out, and the pixels are the image's."""
    mode = "RGBA" if how == "rgba" else "RGB"
    pixels = (np.arange(6 * 5 * len(mode)) * 7 % 251).astype(np.uint8).reshape(6, 5, len(mode))
    plain = _encoded(pixels)
    png = _with_chunk(plain, kind)
    if how.startswith("opencv"):
        got, want = decode_opencv(png, int(how.split()[1])), decode_opencv(plain, int(how.split()[1]))
    else:
        got, want = decode(png, 1 if how == "gray" else 3), decode(plain, 1 if how == "gray" else 3)
    assert np.array_equal(got, want)
    assert capfd.readouterr().err == ""


def test_serve_and_open_image_decode_a_damaged_text_chunk_quietly(tmp_path, capfd):
    from deepvision.apps.serve.predictor import decode_upload
    from deepvision.data.imageio import open_image

    pixels = (np.arange(8 * 8) * 3 % 251).astype(np.uint8).reshape(8, 8)
    (tmp_path / "z.png").write_bytes(_with_chunk(_encoded(pixels), b"zTXt"))
    assert np.array_equal(np.asarray(open_image(tmp_path / "z.png", 1)), pixels)
    decode_upload((tmp_path / "z.png").read_bytes(), 1, 10**7)
    assert capfd.readouterr().err == ""
