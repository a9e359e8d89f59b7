"""`deepvision serve RUN_OR_MODEL`: a local web page and JSON API for a model (FastAPI + uvicorn).

    GET  /               the page: drop or choose an image, see it and the top-5 bars (and boxes, when given)
    POST /api/predict    multipart field `file` (+ `?top=K`) -> {"top": [{"class", "probability"}], ...}
    GET  /health         {"status": "ok", "model", "task", "classes", "input", "decoder_warnings"}

Uploads above `max_upload_mb` are refused with 413 before they are read in full (Content-Length, and
a byte count for chunked bodies); images above `max_pixels` get 413, formats outside the allowlist
415, and uploads of an accepted format that fail to decode (truncated, damaged) 422. Every error,
FastAPI's own included (a malformed multipart body: 400), is JSON `{"error": message}`, which the page
shows. Pillow's warnings about uploads are counted in /health's `decoder_warnings`, not printed.
Predictions run in FastAPI's worker threads, so requests are served concurrently.

The server binds 127.0.0.1 unless told otherwise; bound to any other address it warns that the API is
open to the network, unless an access `token` is set: then every request must carry it, as
`Authorization: Bearer TOKEN` or `?token=TOKEN` (the page passes on the one in its own address), and
gets 401 without it.

A request that does not arrive whole within `request_timeout` seconds is closed, and connections beyond a
cap below the file-descriptor limit are closed at once (connections.py).
"""

import contextlib
import hmac
import ipaddress
import logging
import math
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepvision.apps.serve.pillow_warnings import quiet_pillow_warnings
from deepvision.apps.serve.predictor import Predictor, RejectedImage
from deepvision.engine.signals import ignore_further_stops
from deepvision.errors import Terminated, UserError

SERVE_EXTRA = "pip install deepvision[serve]"
PAGE = Path(__file__).with_name("index.html")
MAX_MEGAPIXELS = 1000  # OpenCV refuses images above 2**30 pixels (CV_IO_MAX_IMAGE_PIXELS) whatever we allow
MAX_REQUEST_TIMEOUT = 3600  # seconds


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


class RequireToken:
    """ASGI middleware: 401 with a JSON error for HTTP requests that do not carry `token`."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            return await _json_reply(send, 401, "this server needs its access token: send the header "
                                                "'Authorization: Bearer TOKEN' or add ?token=TOKEN")
        return await self.app(scope, receive, send)

    def _allowed(self, scope: dict) -> bool:
        from urllib.parse import parse_qs

        given = [v for k, v in scope.get("headers") or [] if k == b"authorization"]
        candidates = [v[7:].strip() for v in given if v[:7].lower() == b"bearer "]
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        candidates += [v.encode("latin-1", "replace") for v in query.get("token", [])]
        return any(hmac.compare_digest(c, self.token) for c in candidates)


async def _too_large(send: Any, limit: int) -> None:
    await _json_reply(send, 413, f"the upload is larger than this server's limit of {limit / 1e6:.0f} MB; "
                                 f"upload a smaller image")


async def _json_reply(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def check_limits(max_upload_mb: float, max_pixels: float, token: str | None = None,
                 request_timeout: float = 30.0) -> None:
    """UserError unless the upload and pixel limits and the request timeout are finite positive numbers
    within their bounds and the token is usable."""
    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-megapixels", max_pixels / 1e6),
                        ("--request-timeout", request_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value <= 0:
            raise UserError(f"{name} must be a finite positive number, got {value}")
    if not 1e-3 <= max_upload_mb <= 1e6:
        raise UserError(f"--max-upload-mb must be 0.001 (1 kB) to 1000000 (1 TB), got {max_upload_mb:g}")
    if max_pixels < 1:
        raise UserError(f"--max-megapixels must be at least 0.000001 (one pixel), got {max_pixels / 1e6:g}")
    if max_pixels > MAX_MEGAPIXELS * 1e6:
        raise UserError(f"--max-megapixels must be at most {MAX_MEGAPIXELS} (the decoders' own ceiling), "
                        f"got {max_pixels / 1e6:g}")
    if not 1 <= request_timeout <= MAX_REQUEST_TIMEOUT:  # below a second an upload of a few reads is cut
        raise UserError(f"--request-timeout must be 1 to {MAX_REQUEST_TIMEOUT} seconds (an hour), "
                        f"got {request_timeout!r}")
    if token is not None:
        check_token(token)


_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")


def check_token(token: str, source: str = "--token") -> None:
    """UserError unless the access token (from `source`: the option or the environment) is usable."""
    if len(token) < 8 or not _TOKEN.fullmatch(token):  # '+', '%', '&', '#' change or cut it in ?token=
        raise UserError(f"{source} must be at least 8 letters, digits or - . _ ~ (the characters an address's "
                        f"?token= passes unchanged), e.g. python -c 'import secrets; print(secrets.token_urlsafe())'")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """UserError unless `host`:`port` can be bound now (uvicorn's own failure is a log line and exit 3):
    a test bind with the options uvicorn uses, released at once."""
    import errno
    import socket

    try:
        family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"--host {host} is not an address or name this machine can resolve ({exc})") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use; stop what holds it or choose another "
                                f"with --port") from None
            if exc.errno == errno.EACCES:
                raise UserError(f"not allowed to bind port {port} on {host} (ports below 1024 need "
                                f"privileges); choose another with --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host} is not an address of this machine") from None
            raise UserError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None


def create_app(source: str | Path | Predictor, *, max_upload_mb: float = 10.0, max_pixels: int = 40_000_000,
               device: str = "auto", token: str | None = None) -> Any:
    """The FastAPI application serving `source` (a run directory, an exported .onnx, or a Predictor);
    with `token`, every request must carry it (see the module doc)."""
    check_limits(max_upload_mb, max_pixels, token)
    try:
        from fastapi import FastAPI, File, Form, Query, Request, UploadFile
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError:
        raise UserError(f"deepvision serve needs FastAPI and uvicorn: {SERVE_EXTRA}") from None
    predictor = source if isinstance(source, Predictor) else Predictor(source, device, max_pixels)
    quiet_pillow_warnings()  # counted in /health's decoder_warnings, not printed per upload
    # the multipart parser logs what is wrong with a malformed body; the 400 answer already says it
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    page = PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", _html_escape(predictor.name)).replace(
        "{{MAX_MB}}", f"{max_upload_mb:g}")
    # no /docs, /redoc or /openapi.json: the service answers what it documents, and those pages load scripts
    # from public CDNs
    app = FastAPI(title="deepvision", description=f"Serving {predictor.name}", version="1", docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """A request without the multipart `file` field, or with a bad `top`: 422 with the service's own
        {"error": message}, as every other refusal."""
        return JSONResponse({"error": _validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI's and Starlette's own refusals (a malformed multipart body, an unknown path or method)
        in the service's {"error": message} shape, with their status and headers."""
        return JSONResponse({"error": _http_message(exc.status_code, str(exc.detail), request.url.path)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    def server_error(_request: Request, _exc: Exception) -> JSONResponse:
        """A failure of the server itself (logged with its traceback by uvicorn): 500, same shape."""
        return JSONResponse({"error": "the server failed on this request; the reason is in its log"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return predictor.info()

    @app.post("/api/predict")
    def predict(request: Request, file: list[UploadFile] = File(...),  # noqa: B008
                top: str = Query("5"), form_top: list[str] = Form([], alias="top")) -> Any:  # noqa: B008
        tops = len(request.query_params.getlist("top")) + len(form_top)  # ?top=K, or a form field top=K
        repeated = "file" if len(file) > 1 else "top" if tops > 1 else None
        if repeated is not None:  # answering for one of them would ignore the others without a word
            return JSONResponse({"error": f"the request names '{repeated}' more than once; send one image "
                                          f"(and one top) per request"}, status_code=422)
        given = form_top[0] if form_top else top  # one rule for both: ASCII digits ('1_0', '5.0', '+5' refused)
        k = int(given) if given.isascii() and given.isdigit() and len(given) < 5 else 0
        if not 1 <= k <= 1000:
            return JSONResponse({"error": f"top: must be a whole number from 1 to 1000, got {given[:20]!r}"},
                                status_code=422)
        data = file[0].file.read()
        try:
            return predictor.predict(data, k)
        except RejectedImage as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except UserError as exc:  # the model itself failed on this image (e.g. a tensor above the cap)
            print(f"deepvision serve: {exc}", file=sys.stderr, flush=True)
            return JSONResponse({"error": f"the model failed on this image: {exc}"}, status_code=500)

    app.state.predictor = predictor
    limited = LimitBody(app, int(max_upload_mb * 1e6))
    return RequireToken(limited, token) if token is not None else limited


def _validation_message(errors: Any) -> str:
    """One line for FastAPI's validation errors: the first field named, with what was wrong with it."""
    first = errors[0] if errors else {}
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    field = where[0] if where else ""
    if field == "file":  # missing, or text where an upload belongs
        what = ("no image (no complete 'file' field in the form)" if first.get("type") == "missing"
                else "the form field 'file' is text, not an upload")
        return (f"{what}: send the image as the multipart form field 'file' (curl -F file=@IMAGE "
                "http://HOST:PORT/api/predict)")
    what = str(first.get("msg", "invalid request"))
    return f"{field}: {what}" if field else what


def _http_message(status: int, detail: str, path: str) -> str:
    """One line for an HTTP refusal raised by FastAPI or Starlette rather than by deepvision."""
    detail = " ".join(detail.split())[:200]
    if status == 400:  # the body could not be parsed: a broken multipart form, too many fields
        return (f"the request body is not a valid multipart form ({detail}); send the image as the form "
                f"field 'file' (curl -F file=@IMAGE http://HOST:PORT/api/predict)")
    if status in (404, 405):
        return (f"{detail.lower()}: {path[:200]}; this server answers GET /, GET /health and "
                f"POST /api/predict")
    return detail


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def serve(source: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_upload_mb: float = 10.0,
          max_pixels: float = 40_000_000, device: str = "auto", token: str | None = None,
          request_timeout: float = 30.0) -> None:
    """Serve `source` on http://host:port until interrupted (Ctrl+C); a connection whose request does not
    arrive whole within `request_timeout` seconds is closed (see connections.py for this and the cap on
    open connections)."""
    check_limits(max_upload_mb, max_pixels, token, request_timeout)
    max_pixels = int(max_pixels)  # whole pixels, once the limit (in megapixels from the CLI) is checked
    try:
        import uvicorn
    except ImportError:
        raise UserError(f"deepvision serve needs FastAPI and uvicorn: {SERVE_EXTRA}") from None
    check_port(host, port)  # before the model loads, so a busy port is the one line it is
    app = create_app(source, max_upload_mb=max_upload_mb, max_pixels=max_pixels, device=device, token=token)
    if not is_loopback(host) and token is None:
        print(f"warning: --host {host} opens the API to the network; add --token SECRET", file=sys.stderr)
    query = "?token=TOKEN" if token is not None else ""
    print(f"serving {source} on http://{host}:{port}/{query}  (JSON: POST /api/predict, health: GET /health; "
          f"Ctrl+C stops)")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **server_options(request_timeout))
    server = _server_class()(config)
    server.run()
    if server.stopped_by is not None:  # as every command's stop: a later signal cannot kill the process as it ends
        ignore_further_stops()
    if server.stopped_by == signal.SIGINT:  # the CLI's one line for a stop, as every command ends
        raise KeyboardInterrupt
    if server.stopped_by == signal.SIGTERM:
        raise Terminated("the server stopped")


def _server_class() -> type:
    """uvicorn's Server (made on first use: uvicorn is an optional dependency), stopped by the first Ctrl+C or
    SIGTERM: later ones are ignored while it shuts down (uvicorn's second Ctrl+C, or `timeout` passing a signal on,
    printed 38 lines of tracebacks), and the signal is not raised again once it has stopped: `serve` ends in the
    CLI's one line for a stop instead."""
    import uvicorn

    class Server(uvicorn.Server):
        stopped_by: int | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.stopped_by is None:
                self.stopped_by, self.should_exit = sig, True

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            saved = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in saved.items():
                    signal.signal(sig, handler)

    return Server



STOP_GRACE_S = 5.0


def server_options(request_timeout: float = 30.0, max_connections: int | None = None) -> dict[str, Any]:
    """uvicorn.Config's options for the request deadline and the connection cap (connections.py), which
    also keep asyncio's failed-accept reports to one line a minute."""
    from deepvision.apps.serve import connections

    connections.quiet_accept_failures()
    cap = connections.connection_cap() if max_connections is None else max_connections
    # a stop waits this long for requests in flight (an upload held open by its client would hold it for ever)
    return {"http": connections.protocol_class(request_timeout, cap), "backlog": connections.accept_backlog(cap),
            "timeout_graceful_shutdown": STOP_GRACE_S}
