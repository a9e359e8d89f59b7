"""A refusal is one line, whatever the input: serve's pixel ceiling and decoder failures (4xx JSON, never
500), long values quoted back in an error, and the busy-cores note held back from a refusal."""

from __future__ import annotations

import struct
import threading
import zlib

import pytest

from deepvision.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _png_declaring(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG header declaring width x height, with a few bytes of compressed rows."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000))) + \
        chunk(b"IEND", b"")


def test_max_megapixels_has_a_ceiling(run_cli, tmp_path):
    from deepvision.apps.serve.app import check_limits

    with pytest.raises(UserError, match="--max-megapixels must be at most 1000"):
        check_limits(10, 1e30 * 1e6)
    check_limits(10, 1000 * 1e6)
    code, _, err = run_cli("serve", tmp_path, "--max-megapixels", "1e30")
    assert code == 2 and err.count("\n") == 1 and "--max-megapixels must be at most 1000" in err


def test_an_upload_opencv_refuses_is_422_not_500():
    """100000 x 100000 passes a (huge) server budget but not OpenCV's own limit: cv2.error became a 500."""
    from deepvision.apps.serve.predictor import RejectedImage, decode_upload

    bomb = _png_declaring(100_000, 100_000)
    with pytest.raises(RejectedImage) as info:
        decode_upload(bomb, 3, max_pixels=10**12)
    assert info.value.status == 422 and "could not be decoded" in info.value.message
    assert "\n" not in info.value.message
    with pytest.raises(RejectedImage) as info:  # within the default budget check: refused before decoding
        decode_upload(bomb, 3, max_pixels=40_000_000)
    assert info.value.status == 413


def test_the_api_answers_a_decoder_failure_with_json(monkeypatch):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    import deepvision.apps.serve.predictor as serve_predictor
    from deepvision.apps.serve import create_app
    from deepvision.apps.serve.predictor import Predictor

    def broken(*_args, **_kwargs):
        raise RuntimeError("a decoder's own failure")

    monkeypatch.setattr(serve_predictor, "decode", broken)
    stub = Predictor.__new__(Predictor)
    stub.max_pixels, stub.name, stub.task, stub.classes = 40_000_000, "stub", "classification", ["a"]
    stub._decode_lock = threading.Lock()
    stub.pre = type("Pre", (), {"channels": 3, "size": (8, 8)})()
    with TestClient(create_app(stub), raise_server_exceptions=False) as client:
        answer = client.post("/api/predict", files={"file": ("x.png", _png_declaring(10, 10))})
    assert answer.status_code == 422
    assert answer.json() == {"error": "the image could not be decoded (a decoder's own failure); upload a JPEG, "
                                      "PNG, BMP, GIF, TIFF or WebP file"}


def test_long_values_are_cut_in_the_one_line_error(monkeypatch, run_cli):
    from deepvision.cli.commands import plot
    from deepvision.cli.output import clip_message

    value = "x" * 50_000

    def refuse(_args):
        raise UserError(f"name {value!r} is too long; choose a shorter one")

    monkeypatch.setattr(plot, "run", refuse)
    code, _, err = run_cli("plot", "R")
    assert code == 2 and err.count("\n") == 1 and len(err) < 300
    assert err == f"deepvision plot: error: name '{'x' * 196}... is too long; choose a shorter one\n"
    assert clip_message("a b") == "a b" and len(clip_message("word " * 1000)) == 1000


@pytest.fixture
def busy_cpu(busy_machine, monkeypatch):
    """The busy 4-core machine without a GPU; the note `predict` prints there."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return "3.0 of 4 cores are busy with other processes: running predict on 1 thread(s) instead of 4"


def test_a_refusal_on_a_busy_machine_is_still_one_line(busy_cpu, run_cli, tmp_path):
    code, out, err = run_cli("predict", tmp_path / "missing", tmp_path / "a.png")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("deepvision predict: error:")


def test_the_busy_note_comes_before_the_first_output(busy_cpu, run_cli, monkeypatch):
    from deepvision.cli.commands import predict

    monkeypatch.setattr(predict, "run", lambda args: print("a.png: cat") or 0)
    code, out, err = run_cli("predict", "RUN", "a.png")
    assert code == 0 and out == "a.png: cat\n" and err.startswith(busy_cpu) and err.count("\n") == 1
