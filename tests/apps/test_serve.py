"""`deepvision serve`: JSON and health endpoints, refusals, concurrency, and the page in a real browser.

The browser test drives headless Chromium (Debian's `chromium` package) with Playwright's Python API
using that executable; it skips when either is missing (CI installs both: ci-install.sh).
"""

from __future__ import annotations

import base64
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepvision.interop.mxnet_import import import_mxnet
from deepvision.runs.loading import load_run
from tests.apps.serve_helpers import bomb_png, photo, running

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
CLASSES = ["tabby cat", "airplane", "bicycle", "daisy", "espresso", "fox", "guitar", "harbour", "iceberg", "jeep"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An imported run (an Inception-BN-like MXNet graph, 10 named classes) and its app (1 MB upload cap)."""
    from deepvision.apps.serve import create_app

    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    run = import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), labels=tmp / "labels.txt",
                       scale=1 / 255, mean=[120, 110, 100], std=[60, 60, 60], out=tmp / "run", quiet=True).run_dir
    return run, create_app(run, max_upload_mb=1, max_pixels=20_000_000), tmp


def _expected_top5(run: Path, image: Path) -> list[tuple[str, float]]:
    from deepvision.inference.predict import predict_images

    return predict_images(load_run(run), [image], top=5)[0].top


def test_json_health_and_refusals(served):
    from fastapi.testclient import TestClient

    run, app, tmp = served
    image = photo(tmp)
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert isinstance(health.pop("decoder_warnings"), dict)  # counts for the process, by reason
        assert health == {"status": "ok", "model": "run (mxnet:graph)", "task": "classification", "classes": 10,
                          "input": [3, 32, 32]}
        answer = client.post("/api/predict", files={"file": (image.name, image.read_bytes(), "image/png")})
        assert answer.status_code == 200
        got = [(t["class"], t["probability"]) for t in answer.json()["top"]]
        expected = _expected_top5(run, image)
        assert [c for c, _ in got] == [c for c, _ in expected]
        assert all(abs(p - q) < 1e-6 for (_, p), (_, q) in zip(got, expected))
        assert client.post("/api/predict?top=2", files={"file": ("x.png", image.read_bytes())}).json()["top"][1]

        text = client.post("/api/predict", files={"file": ("notes.png", b"just some text, not pixels")})
        assert text.status_code == 415 and "not an image" in text.json()["error"]
        bomb = client.post("/api/predict", files={"file": ("bomb.png", bomb_png())})
        assert bomb.status_code == 413
        assert "900.0 megapixels, above this server's limit of 20 megapixels (decompression bomb" in \
            bomb.json()["error"]
        tall = client.post("/api/predict", files={"file": ("tall.png", bomb_png(5000, 5000))})  # under PIL's cap
        assert tall.status_code == 413 and "5000 x 5000 = 25.0 megapixels" in tall.json()["error"]
        big = client.post("/api/predict", files={"file": ("big.png", b"\x89PNG" + bytes(1_200_000))})
        assert big.status_code == 413 and "larger than this server's limit of 1 MB" in big.json()["error"]
        empty = client.post("/api/predict", files={"file": ("empty.png", b"")})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        page = client.get("/").text
        assert "run (mxnet:graph)" in page and 'id="file"' in page


def test_concurrent_requests_on_a_real_server(served):
    _, app, tmp = served
    image = photo(tmp).read_bytes()
    with running(app) as url:
        def ask(i: int) -> tuple[int, str]:
            r = httpx.post(f"{url}/api/predict", files={"file": (f"{i}.png", image)}, timeout=60)
            return r.status_code, r.json()["top"][0]["class"]

        def chunked(i: int) -> int:  # no Content-Length: the byte count still stops it
            body = iter([b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n",
                         *[bytes(256_000)] * 6, b"\r\n--x--\r\n"])
            r = httpx.post(f"{url}/api/predict", content=body, timeout=60,
                           headers={"content-type": "multipart/form-data; boundary=x"})
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(ask, range(16)))
            refused = list(pool.map(chunked, range(2)))
    assert all(code == 200 for code, _ in results)
    assert len({label for _, label in results}) == 1  # every concurrent answer agrees
    assert refused == [413, 413]


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium executable (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    return chromium, sync_api


def _assert_no_overlaps(page, selectors: list[str]) -> None:
    """The page's blocks are stacked in order, none drawn over another (its border box, padding included)."""
    boxes = [page.locator(s).first.bounding_box() for s in selectors]
    assert all(b is not None and b["height"] > 0 for b in boxes), dict(zip(selectors, boxes))
    for (above, a), (below, b) in zip(zip(selectors, boxes), zip(selectors[1:], boxes[1:])):
        assert a["y"] + a["height"] <= b["y"] + 0.5, f"{above} {a} overlaps {below} {b}"


def test_page_in_headless_chromium(served):
    chromium, sync_api = _browser()
    run, app, tmp = served
    image = photo(tmp)
    expected = _expected_top5(run, image)
    (tmp / "notes.txt").write_text("not an image")
    with running(app) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            assert "deepvision" in page.title()
            _assert_no_overlaps(page, ["h1", ".sub", "#drop", "main"])
            page.set_input_files("#file", str(image))
            page.wait_for_selector('#result[data-state="done"]', timeout=60_000)
            labels = page.locator("#bars .bar .label").all_inner_texts()
            values = page.locator("#bars .bar .value").all_inner_texts()
            assert labels == [c for c, _ in expected]
            assert [float(v.rstrip("%")) for v in values] == pytest.approx([p * 100 for _, p in expected], abs=0.006)
            assert page.locator("#preview").evaluate("img => img.naturalWidth") > 0  # the image is shown
            _assert_no_overlaps(page, ["h1", ".sub", "#drop", "main"])  # with the photo and the bars

            # drag and drop: the same photo dropped on the drop zone
            page.evaluate("""async (b64) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
            }""", base64.b64encode(image.read_bytes()).decode())
            page.wait_for_function("document.querySelector('#status').innerText.startsWith('dropped.png')",
                                   timeout=60_000)
            page.wait_for_selector('#result[data-state="done"]', timeout=60_000)
            assert page.locator("#bars .bar .label").all_inner_texts() == labels

            page.set_input_files("#file", str(tmp / "notes.txt"))
            page.wait_for_selector('#result[data-state="error"]', timeout=30_000)
            assert "not an image" in page.locator("#error").inner_text()
            _assert_no_overlaps(page, [".sub", "#drop", "#error", "main"])
            assert page.locator("#bars .bar").count() == 0

            bomb = tmp / "bomb.png"
            bomb.write_bytes(bomb_png())
            page.set_input_files("#file", str(bomb))
            page.wait_for_function("document.querySelector('#error').innerText.includes('decompression bomb')",
                                   timeout=30_000)
        finally:
            browser.close()


def test_serve_cli_refuses_bad_sources(run_cli, tmp_path):
    code, _, err = run_cli("serve", tmp_path / "nothing.onnx")
    assert code == 2 and "ONNX file not found" in err
    code, _, err = run_cli("serve", tmp_path, "--port", "70000")
    assert code == 2 and "--port must be 1..65535" in err


def test_serve_refuses_a_detection_run_at_start(run_cli, tmp_path):
    from deepvision.config.schema import Config, DataConfig, ModelConfig
    from deepvision.runs.rundir import RunDir
    from tests.detection_helpers import ARGS, MODEL

    run = RunDir.create(tmp_path, "det")
    run.write_config(Config(name="det", task="detection", model=ModelConfig(name=MODEL, num_classes=3, args=dict(ARGS)),
                            data=DataConfig(source="detection", root=str(tmp_path))))
    import socket

    with socket.socket() as s:  # a free port: the port is checked before the model loads
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run_cli("serve", run.path, "--port", port)
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert "is a detection run; serve takes classification runs" in err and "deepvision detect" in err
