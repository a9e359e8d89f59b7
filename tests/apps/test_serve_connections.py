"""`deepvision serve`'s connection limits (apps/serve/connections.py) on a real uvicorn server: a request
that does not arrive whole within the deadline is closed, one that does is answered however long the app
takes, connections beyond the cap are closed at once, and none of it writes a traceback to the log."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from pathlib import Path

import pytest

from deepvision.interop.mxnet_import import import_mxnet
from tests.apps.serve_helpers import running

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
TOKEN = "s3cret-token-42"
DEADLINE = 0.3  # seconds: the request deadline these servers run with


async def slow_app(scope, receive, send) -> None:
    """Reads the whole body, then answers 'ok' (after a second on /slow, longer than DEADLINE)."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        return await send({"type": "lifespan.shutdown.complete"})
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _options(**limits) -> dict:
    from deepvision.apps.serve.app import server_options

    return {**server_options(**limits), "log_config": None}  # records reach caplog


def _connect(url: str, data: bytes = b"") -> socket.socket:
    host, port = url.rsplit("/", 1)[-1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(data)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the server sends before it closes (b'' when it closes without a word); 10 s at most."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and received.endswith(b"ok"):
                break
    except ConnectionResetError:
        pass
    return received


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_incomplete_requests_are_closed_at_the_deadline(caplog):
    caplog.set_level(logging.WARNING)
    with running(slow_app, **_options(request_timeout=DEADLINE)) as url:
        silent = _connect(url)
        half_headers = _connect(url, b"GET / HTTP/1.1\r\nHost: x\r\n")
        half_body = _connect(url, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + bytes(10))
        answered = _connect(url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n")  # then half a second
        assert [_answer(s) for s in (silent, half_headers)] == [b"", b""]  # no request to answer: closed
        assert _answer(half_body).startswith(b"HTTP/1.1 408 Request Timeout\r\n")  # a request under way is told
        first = _answer(answered)
        assert first.startswith(b"HTTP/1.1 200") and _answer(answered) == b""  # the second one is cut
        for sock in (silent, half_headers, half_body, answered):
            sock.close()
    lines = [w for w in _warnings(caplog) if "did not arrive whole within 0.3 s (--request-timeout)" in w]
    assert 1 <= len(lines) <= 2  # one line per 10 s, whatever the number of connections closed
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


def test_a_request_received_whole_is_answered_however_slow_the_app(caplog):
    caplog.set_level(logging.WARNING)
    with running(slow_app, **_options(request_timeout=DEADLINE)) as url:
        sock = _connect(url, b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        sock.close()
        assert httpx.get(f"{url}/slow", timeout=30).text == "ok"
    assert "Traceback" not in caplog.text


def test_connections_beyond_the_cap_are_closed_at_once(caplog):
    from deepvision.apps.serve.app import RequireToken

    caplog.set_level(logging.WARNING)
    with running(RequireToken(slow_app, TOKEN), **_options(request_timeout=60, max_connections=3)) as url:
        held = [_connect(url, b"GET / HTTP/1.1\r\nHost: x\r\n") for _ in range(3)]
        authorised = f"GET /health?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        assert _answer(_connect(url, authorised)) == b""  # the fourth: closed without waiting for the deadline
        for sock in held:
            sock.close()
        give_up = time.monotonic() + 30  # until the server has seen them go
        while True:
            answer = _answer(_connect(url, authorised))
            if answer or time.monotonic() > give_up:
                break
            time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    cap_lines = [w for w in _warnings(caplog) if "3 connections are open, the most this server holds" in w]
    assert len(cap_lines) == 1  # one line per burst
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


def test_a_slow_upload_cut_by_the_deadline_leaves_no_traceback(tmp_path, caplog):
    from deepvision.apps.serve import create_app

    run = import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255, out=tmp_path / "run",
                       quiet=True).run_dir
    caplog.set_level(logging.DEBUG)
    part = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'
    with running(create_app(run, token=TOKEN), **_options(request_timeout=DEADLINE)) as url:
        for framing in (b"Content-Length: 100000", b"Transfer-Encoding: chunked"):
            body = part if framing.startswith(b"Content") else b"%x\r\n%s\r\n" % (len(part), part)
            sock = _connect(url, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                            TOKEN.encode() + b"\r\nContent-Type: multipart/form-data; boundary=xx\r\n" + framing +
                            b"\r\n\r\n" + body)
            answer = _answer(sock)  # a request under way is told why, in the API's JSON error
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
            assert b'{"error": "the request did not arrive whole within 0.3 s (--request-timeout)' in answer
            sock.close()
        assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert any("did not arrive whole" in w for w in _warnings(caplog))
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


def test_failed_accepts_are_one_line_without_traceback(caplog):
    from deepvision.apps.serve.connections import quiet_accept_failures

    quiet_accept_failures()
    quiet_accept_failures()  # once per process, however often asked
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("asyncio")
    try:
        raise OSError(24, "Too many open files")
    except OSError as exc:
        for _ in range(500):  # what asyncio logs while accept() fails
            log.error("socket.accept() out of system resource\nsocket: <asyncio.TransportSocket fd=6>", exc_info=exc)
    log.error("some other failure")
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert messages == ["deepvision serve: cannot accept connections now (Too many open files); retrying",
                        "some other failure"]
    assert "Traceback" not in caplog.text
    assert sum(isinstance(f, type(log.filters[-1])) for f in log.filters) == 1


@pytest.mark.parametrize(("soft", "cap", "backlog"), [(1024, 924, 25), (None, 1000, 2048), (65536, 1000, 2048),
                                                      (60, 8, 13), (4096, 1000, 774)])
def test_the_cap_stays_below_the_descriptor_limit(soft, cap, backlog):
    from deepvision.apps.serve.connections import accept_backlog, connection_cap

    assert connection_cap(soft) == cap and accept_backlog(cap, soft) == backlog


def test_serve_runs_uvicorn_with_the_limits(tmp_path, monkeypatch):
    import uvicorn

    from deepvision.apps.serve import serve
    from deepvision.apps.serve.connections import BoundedH11Protocol

    run = import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255, out=tmp_path / "run",
                       quiet=True).run_dir
    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.update(config=self.config))
    monkeypatch.setattr("deepvision.apps.serve.app.check_port", lambda host, port: None)
    serve(run, "127.0.0.1", 8000, request_timeout=7.5)
    config = seen["config"]
    assert issubclass(config.http, BoundedH11Protocol) and config.http.request_timeout == 7.5
    assert config.backlog >= 8 and config.timeout_graceful_shutdown == 5.0


@pytest.mark.parametrize(("signals", "stop"), [((signal.SIGINT,), KeyboardInterrupt),
                                               ((signal.SIGINT, signal.SIGINT), KeyboardInterrupt),
                                               ((signal.SIGTERM, signal.SIGINT, signal.SIGTERM), "Terminated")])
def test_the_first_stop_ends_serve_and_later_ones_change_nothing(tmp_path, monkeypatch, signals, stop):
    """A second Ctrl+C made uvicorn force its exit and raise the signals again: 38 lines of tracebacks, exit 0.
    The first signal stops the server; later ones are ignored; serve then raises the stop the CLI turns into
    its one line (130 or 143)."""
    import uvicorn

    from deepvision.apps.serve import serve
    from deepvision.errors import Terminated

    run = import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255, out=tmp_path / "run",
                       quiet=True).run_dir
    seen = {}

    def run_server(self, sockets=None):
        for sig in signals:
            self.handle_exit(sig, None)
        seen.update(should_exit=self.should_exit, force_exit=self.force_exit)

    monkeypatch.setattr(uvicorn.Server, "run", run_server)
    monkeypatch.setattr("deepvision.apps.serve.app.check_port", lambda host, port: None)
    ignoring = []  # as every command's stop: later signals stay ignored while the process ends
    monkeypatch.setattr("deepvision.apps.serve.app.ignore_further_stops", lambda: ignoring.append(True))
    with pytest.raises(Terminated if stop == "Terminated" else stop):
        serve(run, "127.0.0.1", 8000)
    assert seen == {"should_exit": True, "force_exit": False} and ignoring == [True]


def test_a_stop_does_not_wait_for_an_upload_its_client_never_finishes(caplog):
    """A client holding an unfinished upload kept a stopped server running for as long as it stayed
    connected; the stop now waits a grace period, then ends the request with one line, no traceback."""
    caplog.set_level(logging.DEBUG)
    options = {**_options(request_timeout=600.0), "timeout_graceful_shutdown": 0.3}
    with running(slow_app, **options) as url:
        sock = _connect(url, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nfirst bytes")
        time.sleep(0.3)  # the request is in flight: its headers arrived, its body never will
    sock.close()
    assert [w for w in _warnings(caplog) if "in flight" in w] == [
        "deepvision serve: stopped; 1 running task(s) still in flight (a request not received whole) ended "
        "without an answer"]
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


def test_serve_stops_within_its_grace_period():
    from deepvision.apps.serve.app import STOP_GRACE_S, server_options

    assert server_options()["timeout_graceful_shutdown"] == STOP_GRACE_S <= 10


def test_a_sigterm_while_the_model_loads_ends_serve_in_its_one_line(tmp_path, run_cli, monkeypatch):
    """serve ran outside the CLI's SIGTERM rule until its server started: a SIGTERM while the model loaded
    killed it without a word (the first seconds of every start)."""
    import os

    from deepvision.apps.serve import app

    def loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises before this ends
        raise AssertionError("not stopped")

    monkeypatch.setattr(app, "create_app", loading)
    monkeypatch.setattr(app, "check_port", lambda host, port: None)
    code, out, err = run_cli("serve", tmp_path, "--port", "8000")
    assert (code, out, err) == (143, "", "deepvision serve: terminated (SIGTERM)\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the caller's again
