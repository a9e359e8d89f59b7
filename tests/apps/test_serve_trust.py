"""`deepvision serve` against hostile uploads and options: format allowlist, decode failures as 4xx JSON
without a traceback, finite limits, the access token and the warning for non-loopback binds."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.errors import UserError
from deepvision.interop.mxnet_import import import_mxnet

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
TOKEN = "s3cret-token-42"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-trust")
    return import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255, out=tmp / "run",
                        quiet=True).run_dir


def _encoded(mode: str, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)).convert(mode).save(
        buf, fmt, **options)
    return buf.getvalue()


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
       b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def test_uploads_outside_the_allowlist_or_undecodable_are_4xx_json(run_dir, caplog):
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app

    png, jpeg = _encoded("RGB", "PNG"), _encoded("RGB", "JPEG")
    cases = {
        "truncated.png": (png[: len(png) // 2], 422, "could not be decoded"),
        "truncated.jpg": (jpeg[: len(jpeg) * 2 // 3], 422, "could not be decoded"),
        "headless.jpg": (jpeg[:100], 422, "could not be decoded (corrupt JPEG data (no frame header"),
        "lab.tif": (_encoded("LAB", "TIFF"), 415, "this TIFF holds LAB colour"),
        "drawing.eps": (EPS, 415, "not an image deepvision can read"),
        "icon.ico": (_encoded("RGB", "ICO"), 415, "not an image deepvision can read"),
    }
    with TestClient(create_app(run_dir), raise_server_exceptions=False) as client, \
            caplog.at_level(logging.DEBUG):
        for name, (data, status, message) in cases.items():
            answer = client.post("/api/predict", files={"file": (name, data)})
            assert answer.status_code == status, name
            assert message in answer.json()["error"], name
        for mode, fmt in (("RGB", "TIFF"), ("L", "TIFF"), ("CMYK", "JPEG"), ("P", "GIF"), ("RGB", "WEBP"),
                          ("RGB", "BMP")):
            answer = client.post("/api/predict", files={"file": ("ok", _encoded(mode, fmt))})
            assert answer.status_code == 200 and len(answer.json()["top"]) == 5, (mode, fmt)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("channels", [1, 3])
def test_damaged_images_of_accepted_formats_are_422(channels):
    """A recognised format whose content cannot be decoded is 422 on every decoder route (Pillow for a
    colour PNG read as grey and for TIFF, OpenCV for the rest); 415 stays for formats not accepted."""
    from deepvision.apps.serve.predictor import RejectedImage, decode_upload

    png, tif = _encoded("RGB", "PNG"), _encoded("RGB", "TIFF")
    bad_crc = png[:29] + bytes(4) + png[33:]  # the IHDR chunk's CRC zeroed
    cut_tiff = tif[:8] + (len(tif) + 100).to_bytes(4, "little") + tif[12:64]  # its directory lies past the end
    for data in (bad_crc, cut_tiff):
        with pytest.raises(RejectedImage) as info:
            decode_upload(data, channels, 10**7)
        assert info.value.status == 422 and info.value.message.startswith("the image could not be decoded")


def test_pillow_warnings_are_counted_not_printed(run_dir, recwarn):
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app

    tif = _encoded("RGB", "TIFF")
    cut_tiff = tif[:8] + (len(tif) + 100).to_bytes(4, "little") + tif[12:64]
    with TestClient(create_app(run_dir), raise_server_exceptions=False) as client:
        before = client.get("/health").json()["decoder_warnings"].get("UserWarning: Truncated File Read", 0)
        for _ in range(2):
            answer = client.post("/api/predict", files={"file": ("cut.tif", cut_tiff)})
            assert answer.status_code == 422 and "corrupt or truncated TIFF data" in answer.json()["error"]
        counts = client.get("/health").json()["decoder_warnings"]
    assert counts["UserWarning: Truncated File Read"] >= before + 2
    assert not [w for w in recwarn if "PIL" in w.filename]  # nothing reached the log


def test_every_error_has_the_services_shape(run_dir):
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app

    fields = "".join(f"--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n" for i in range(1500))
    with TestClient(create_app(run_dir), raise_server_exceptions=False) as client:
        no_boundary = client.post("/api/predict", content=b"--x\r\n",
                                  headers={"Content-Type": "multipart/form-data"})
        too_many = client.post("/api/predict", content=(fields + "--b--\r\n").encode(),
                               headers={"Content-Type": "multipart/form-data; boundary=b"})
        unknown = client.get("/api/nothing")
        wrong_method = client.get("/api/predict")
        undocumented = [client.get(path) for path in ("/docs", "/redoc", "/openapi.json")]  # CDN scripts
    assert [a.status_code for a in undocumented] == [404] * 3
    for answer, status, words in ((no_boundary, 400, "not a valid multipart form (Missing boundary"),
                                  (too_many, 400, "not a valid multipart form (Too many fields"),
                                  (unknown, 404, "not found: /api/nothing; this server answers"),
                                  (wrong_method, 405, "method not allowed: /api/predict")):
        assert answer.status_code == status and list(answer.json()) == ["error"], answer.text
        assert words in answer.json()["error"]
    assert wrong_method.headers["allow"] == "POST"


def test_eps_never_reaches_its_plugin(monkeypatch):
    from PIL import EpsImagePlugin

    from deepvision.apps.serve.predictor import RejectedImage, decode_upload

    def opened(*_args, **_kwargs):
        raise AssertionError("the EPS plugin was tried")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", opened)
    with pytest.raises(RejectedImage) as info:
        decode_upload(EPS, 3, 10**7)
    assert info.value.status == 415


def test_token_is_required_when_set(run_dir):
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app

    png = _encoded("RGB", "PNG")
    with TestClient(create_app(run_dir, token=TOKEN)) as client:
        for path in ("/health", "/"):
            refused = client.get(path)
            assert refused.status_code == 401 and "access token" in refused.json()["error"]
        assert client.get("/health", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()["status"] == "ok"
        assert client.get(f"/?token={TOKEN}").status_code == 200
        assert client.post("/api/predict", files={"file": ("x.png", png)}).status_code == 401
        answer = client.post("/api/predict", files={"file": ("x.png", png)},
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200


@pytest.mark.parametrize(("upload", "pixels", "message"), [
    (float("nan"), 1e6, "--max-upload-mb must be a finite positive number, got nan"),
    (float("inf"), 1e6, "--max-upload-mb must be a finite positive number, got inf"),
    (10.0, float("nan"), "--max-megapixels must be a finite positive number, got nan"),
    (0.0, 1e6, "--max-upload-mb must be a finite positive number, got 0.0"),
    (1e-300, 1e6, r"--max-upload-mb must be 0\.001 \(1 kB\) to 1000000 \(1 TB\), got 1e-300"),
    (10.0, 1e-6, r"--max-megapixels must be at least 0\.000001 \(one pixel\), got 1e-12"),
])
def test_limits_must_be_finite_and_positive(upload, pixels, message):
    from deepvision.apps.serve.app import check_limits

    with pytest.raises(UserError, match=message):
        check_limits(upload, pixels)
    with pytest.raises(UserError, match="--token must be at least 8"):
        check_limits(10, 1e6, "short")


@pytest.mark.parametrize(("seconds", "message"), [
    (0.0, "--request-timeout must be a finite positive number, got 0.0"),
    (float("inf"), "--request-timeout must be a finite positive number, got inf"),
    (1e9, r"--request-timeout must be 1 to 3600 seconds \(an hour\), got 1000000000\.0"),
    (3600.0001, r"--request-timeout must be 1 to 3600 seconds \(an hour\), got 3600\.0001"),
    (1e-9, r"--request-timeout must be 1 to 3600 seconds \(an hour\), got 1e-09"),
    (0.5, r"--request-timeout must be 1 to 3600 seconds \(an hour\), got 0.5"),
])
def test_the_request_timeout_must_be_finite_positive_and_bounded(run_cli, tmp_path, seconds, message):
    from deepvision.apps.serve.app import check_limits

    with pytest.raises(UserError, match=message):
        check_limits(10, 1e6, None, seconds)
    code, _, err = run_cli("serve", tmp_path, "--request-timeout", str(seconds))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--request-timeout must be" in err


@pytest.mark.parametrize(("option", "value"), [("--max-upload-mb", "nan"), ("--max-upload-mb", "inf"),
                                               ("--max-megapixels", "nan"), ("--request-timeout", "nan"),
                                               ("--request-timeout", "inf")])
def test_serve_cli_refuses_non_finite_limits_in_one_line(run_cli, tmp_path, option, value):
    code, _, err = run_cli("serve", tmp_path, option, value)
    assert code == 2 and f"{option} must be a finite positive number, got {value}" in err
    assert len(err.strip().splitlines()) == 1


def test_binding_beyond_loopback_warns_unless_a_token_is_set(run_dir, monkeypatch, capsys):
    import uvicorn

    from deepvision.apps.serve import serve
    from deepvision.apps.serve.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    monkeypatch.setattr("deepvision.apps.serve.app.check_port", lambda host, port: None)  # 8000 may be taken
    serve(run_dir, "0.0.0.0", 8000)
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0 opens the API to the network; add --token SECRET" in err
    assert all(len(line) <= 80 for line in err.splitlines())
    serve(run_dir, "0.0.0.0", 8000, token=TOKEN)
    out = capsys.readouterr()
    assert "warning" not in out.err and "?token=TOKEN" in out.out
    serve(run_dir, "127.0.0.1", 8000)
    assert "warning" not in capsys.readouterr().err


def test_serve_cli_takes_the_token_from_the_option_or_the_environment(run_cli, tmp_path, monkeypatch):
    import deepvision.apps.serve as serve_pkg

    seen = []
    monkeypatch.setattr(serve_pkg, "serve", lambda *a, **k: seen.append(k["token"]))
    monkeypatch.setenv("DEEPVISION_SERVE_TOKEN", "from-the-environment")
    assert run_cli("serve", tmp_path, "--token", TOKEN)[0] == 0
    assert run_cli("serve", tmp_path)[0] == 0
    monkeypatch.delenv("DEEPVISION_SERVE_TOKEN")
    assert run_cli("serve", tmp_path)[0] == 0
    assert seen == [TOKEN, "from-the-environment", None]


def test_repeated_or_text_fields_are_refused_and_parser_text_stays_out_of_the_log(run_dir, caplog):
    """Two images (or two `top`s) in one request are refused rather than one answered; a `file` field of
    text is named as such; a body whose bytes are not its boundary is a 400 without the parser's log line."""
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app

    png = _encoded("RGB", "PNG")
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(run_dir), raise_server_exceptions=False) as client:
        two = client.post("/api/predict", files=[("file", ("a.png", png)), ("file", ("b.png", png))])
        tops = client.post("/api/predict?top=2&top=3", files={"file": ("a.png", png)})
        text = client.post("/api/predict", data={"file": "hello"})
        raw = client.post("/api/predict", content=png, headers={"Content-Type": "multipart/form-data; boundary=xx"})
        one = client.post("/api/predict?top=2", files={"file": ("a.png", png)})
        form = client.post("/api/predict", files={"file": ("a.png", png)}, data={"top": "3"})
        both = client.post("/api/predict?top=2", files={"file": ("a.png", png)}, data={"top": "3"})
        bad = client.post("/api/predict", files={"file": ("a.png", png)}, data={"top": "abc"})
        digits = [client.post("/api/predict", files={"file": ("a.png", png)}, data={"top": t})
                  for t in ("²", "１", "٥")]  # str.isdigit() takes them; int() fails on one, reads others
        queries = [client.post(f"/api/predict?top={t}", files={"file": ("a.png", png)})
                   for t in ("1_0", "5.0", "+5", "%C2%B2", "0", "1001")]  # the form's rule, not pydantic's lax int
    for answer, words in ((two, "names 'file' more than once; send one image"),
                          (tops, "names 'top' more than once"),
                          (text, "the form field 'file' is text, not an upload: send the image as"),
                          (both, "names 'top' more than once"),
                          (bad, "top: must be a whole number from 1 to 1000, got 'abc'"),
                          *((d, "top: must be a whole number from 1 to 1000") for d in digits + queries)):
        assert answer.status_code == 422 and list(answer.json()) == ["error"], answer.text
        assert words in answer.json()["error"]
    assert raw.status_code == 400 and "not a valid multipart form" in raw.json()["error"]
    assert one.status_code == 200 and len(one.json()["top"]) == 2
    assert form.status_code == 200 and len(form.json()["top"]) == 3  # top as a form field, as curl -F top=3 sends it
    assert not [r for r in caplog.records if r.name.startswith("python_multipart")]


def test_a_bad_token_in_the_environment_is_named_as_such(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPVISION_SERVE_TOKEN", "abc")
    code, _, err = run_cli("serve", tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert "the environment variable DEEPVISION_SERVE_TOKEN must be at least 8 letters, digits or - . _ ~" in err


@pytest.mark.parametrize("token", ["abc+defgh", "abc%2Bdefgh", "abc&defgh", "abc#defgh", "abc=defgh", "abc?defgh",
                                   "abc/defgh", "abcdéfgh1"])
def test_a_token_that_an_address_would_change_is_refused(token):
    """'abc+defgh' was taken, and then the address the server gives (?token=abc+defgh) was refused: the query
    reads '+' as a space; '%2B' is decoded, '&' and '#' cut the value."""
    from deepvision.apps.serve.app import check_token

    with pytest.raises(UserError, match=r"^--token must be at least 8 letters, digits or - \. _ ~ "):
        check_token(token)
    check_token("s3cret-token_4.2~")  # secrets.token_urlsafe's alphabet and the unreserved marks pass
