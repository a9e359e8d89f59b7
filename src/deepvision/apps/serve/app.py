"""`deepvision serve RUN_OR_MODEL`: a local web page and JSON API for a model (FastAPI + uvicorn).

    GET  /               the page: drop or choose an image, see it and the top-5 bars (boxes for detection)
    POST /api/predict    multipart field `file` (+ `?top=K`) -> {"top": [{"class", "probability"}], ...}
    GET  /health         {"status": "ok", "model", "task", "classes", "input"}

Uploads above `max_upload_mb` are refused with 413 before they are read in full (Content-Length, and
a byte count for chunked bodies); non-images get 415 and images above `max_pixels` 413, each with a
JSON `{"error": message}` that the page shows. Predictions run in FastAPI's worker threads, so
requests are served concurrently. The server binds 127.0.0.1 unless told otherwise.
"""


from pathlib import Path
from typing import Any

from deepvision.apps.serve.predictor import Predictor, RejectedImage
from deepvision.errors import UserError

SERVE_EXTRA = "pip install deepvision[serve]"
PAGE = Path(__file__).with_name("index.html")


class UploadTooLarge(Exception):
    pass


class LimitBody:
    """ASGI middleware: 413 for request bodies over `limit` bytes (declared or counted)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        seen, exceeded = 0, False

        async def counted() -> dict:
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                exceeded = True
                raise UploadTooLarge
            return message

        async def guarded(message: dict) -> None:
            if not exceeded:  # the framework may turn the abort into its own error reply: drop that one
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:  # UploadTooLarge, or whatever the framework wrapped it in
            if not exceeded:
                raise
        if exceeded:
            await _too_large(send, self.limit)


async def _too_large(send: Any, limit: int) -> None:
    import json

    body = json.dumps({"error": f"the upload is larger than this server's limit of {limit / 1e6:.0f} MB; "
                                f"upload a smaller image"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(source: str | Path | Predictor, *, max_upload_mb: float = 10.0, max_pixels: int = 40_000_000,
               device: str = "auto") -> Any:
    """The FastAPI application serving `source` (a run directory, an exported .onnx, or a Predictor)."""
    try:
        from fastapi import FastAPI, File, Query, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise UserError(f"deepvision serve needs FastAPI and uvicorn: {SERVE_EXTRA}") from None
    predictor = source if isinstance(source, Predictor) else Predictor(source, device, max_pixels)
    page = PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", _html_escape(predictor.name)).replace(
        "{{MAX_MB}}", f"{max_upload_mb:g}")
    app = FastAPI(title="deepvision", description=f"Serving {predictor.name}", version="1")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return predictor.info()

    @app.post("/api/predict")
    def predict(file: UploadFile = File(...), top: int = Query(5, ge=1, le=1000)) -> Any:  # noqa: B008
        data = file.file.read()
        try:
            return predictor.predict(data, top)
        except RejectedImage as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    app.state.predictor = predictor
    return LimitBody(app, int(max_upload_mb * 1e6))


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def serve(source: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_upload_mb: float = 10.0,
          max_pixels: int = 40_000_000, device: str = "auto") -> None:
    """Serve `source` on http://host:port until interrupted (Ctrl+C)."""
    try:
        import uvicorn
    except ImportError:
        raise UserError(f"deepvision serve needs FastAPI and uvicorn: {SERVE_EXTRA}") from None
    app = create_app(source, max_upload_mb=max_upload_mb, max_pixels=max_pixels, device=device)
    print(f"serving {source} on http://{host}:{port}/  (JSON: POST /api/predict, health: GET /health; Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
