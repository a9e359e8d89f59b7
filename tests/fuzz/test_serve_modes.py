"""`deepvision serve` reads TIFF only as RGB, greyscale, palette or bilevel, and answers a request without
an image with its own {"error": ...}."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app
    from deepvision.interop.mxnet_import import import_mxnet

    tmp = tmp_path_factory.mktemp("serve-modes")
    run = import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255, out=tmp / "run",
                       quiet=True).run_dir
    with TestClient(create_app(run), raise_server_exceptions=False) as c:
        yield c


def _tiff(mode: str) -> bytes:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8))
    img = rgb.convert("L").convert("F") if mode == "F" else rgb.convert(mode)
    buf = io.BytesIO()
    img.save(buf, "TIFF")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["CMYK", "F"])
def test_tiff_outside_the_mode_allowlist_is_415(client, mode):
    answer = client.post("/api/predict", files={"file": ("x.tif", _tiff(mode))})
    assert answer.status_code == 415, answer.text
    assert f"this TIFF holds {mode} colour" in answer.json()["error"]


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "1"])
def test_tiff_in_the_allowlist_is_read(client, mode):
    answer = client.post("/api/predict", files={"file": ("x.tif", _tiff(mode))})
    assert answer.status_code == 200 and answer.json()["image"] == {"width": 30, "height": 20}


@pytest.mark.parametrize("kwargs", [{"data": {"x": "1"}}, {"content": b"\xff\xd8raw"}, {"json": {"file": "a"}},
                                    {"files": {"image": ("x.png", b"x")}}])
def test_a_request_without_the_file_field_is_a_422_error(client, kwargs):
    answer = client.post("/api/predict", **kwargs)
    assert answer.status_code == 422
    assert set(answer.json()) == {"error"} and "multipart form field 'file'" in answer.json()["error"]


def test_a_bad_top_is_a_422_error(client):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    answer = client.post("/api/predict?top=0", files={"file": ("x.png", png.getvalue())})
    assert answer.status_code == 422 and answer.json()["error"].startswith("top: ")
