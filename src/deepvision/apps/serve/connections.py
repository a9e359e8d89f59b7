"""Connection limits for `deepvision serve`: a deadline for receiving each request, and a cap on open
connections below the process's file-descriptor limit.

uvicorn times out neither a request that never finishes its headers or body (its keep-alive timer restarts
on every byte) nor a connection that never sends, and accepts connections until the process runs out of
descriptors; asyncio then logs a traceback for every failed accept(). `protocol_class` gives uvicorn an
h11 protocol that closes a connection whose request is not received whole within `request_timeout`
seconds (the app may take as long as it needs to answer one that is) and closes new connections at once
beyond `connection_cap()`; `quiet_accept_failures` turns asyncio's failed-accept reports into one line
a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_REQUEST_TIMEOUT = 30.0
MAX_CONNECTIONS = 1000
SPARE_DESCRIPTORS = 100  # for the model, uploads spooled to disk, logs
WARN_EVERY_S = 10.0
_INCOMPLETE = (h11.IDLE, h11.SEND_BODY)  # their_state while a request is still arriving (or not begun)
logger = logging.getLogger("uvicorn.error")


def descriptor_limit() -> int | None:
    """The process's soft limit on open files, or None when unlimited (or not known: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY or soft < 0 else soft


def connection_cap(soft: int | None = None) -> int:
    """The most connections to hold open: below the descriptor limit `soft` (default: this process's)
    with SPARE_DESCRIPTORS to spare, at most MAX_CONNECTIONS, at least 8."""
    soft = descriptor_limit() if soft is None else soft
    return MAX_CONNECTIONS if soft is None else max(8, min(MAX_CONNECTIONS, soft - SPARE_DESCRIPTORS))


def accept_backlog(cap: int, soft: int | None = None) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go: a quarter of the
    descriptors left above the cap, 8 to 2048. A connection beyond the cap holds its descriptor for a few
    turns of the event loop after it is accepted, while each turn may accept this many more."""
    soft = descriptor_limit() if soft is None else soft
    return 2048 if soft is None else max(8, min(2048, (soft - cap) // 4))


class _Every:
    """Lets a message through at most once per `seconds` for each key, counting the ones held back."""

    def __init__(self, seconds: float = WARN_EVERY_S) -> None:
        self.seconds, self.last, self.held = seconds, {}, {}

    def __call__(self, key: str) -> int | None:
        """None to stay quiet, else how many were held back since the last one let through."""
        now = time.monotonic()
        if now - self.last.get(key, -math.inf) < self.seconds:
            self.held[key] = self.held.get(key, 0) + 1
            return None
        self.last[key] = now
        return self.held.pop(key, 0)


def protocol_class(request_timeout: float = DEFAULT_REQUEST_TIMEOUT, max_connections: int | None = None) -> type:
    """uvicorn's h11 protocol with a deadline of `request_timeout` seconds for receiving each request
    and a cap of `max_connections` open connections (default `connection_cap()`)."""
    cap = connection_cap() if max_connections is None else max_connections
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"request_timeout": request_timeout, "cap": cap,
                                                              "warn": _Every()})


class BoundedH11Protocol(H11Protocol):
    """H11Protocol that closes a connection whose request does not arrive whole in time, and new
    connections beyond the cap (see `protocol_class`, which sets the limits)."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    cap: int = MAX_CONNECTIONS
    warn: _Every = _Every()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.cap:
            self._say("cap", f"{self.cap} connections are open, the most this server holds (its file limit "
                             f"allows); closing new ones until some end")
            transport.abort()
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm the deadline while a request is awaited or arriving (once per request: bytes do not
        extend it), disarm it once the request is whole."""
        if self.transport.is_closing() or self.conn.their_state not in _INCOMPLETE:
            self._disarm()
        elif self.deadline is None:
            self.deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if not self.transport.is_closing() and self.conn.their_state in _INCOMPLETE:
            self._say("timeout", f"closed a connection whose request did not arrive whole within "
                                 f"{self.request_timeout:g} s (--request-timeout)")
            if self.conn.their_state is h11.SEND_BODY and self.conn.our_state is h11.SEND_RESPONSE:
                self._answer_timeout()  # a request under way: its client is told why, as every error is told
            self.transport.close()

    def _answer_timeout(self) -> None:
        """408 with the JSON error every refusal of the API has, then the connection closes."""
        body = json.dumps({"error": f"the request did not arrive whole within {self.request_timeout:g} s "
                                    f"(--request-timeout); send it again, or ask for a longer timeout"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        with contextlib.suppress(h11.LocalProtocolError):  # the state moved on meanwhile: close without one
            self.transport.write(b"".join(self.conn.send(event) for event in (  # type: ignore[misc]
                h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"), h11.Data(data=body),
                h11.EndOfMessage())))

    def _say(self, key: str, message: str) -> None:
        held = self.warn(key)
        if held is not None:
            logger.warning("deepvision serve: %s%s", message, f" ({held} more since the last such line)" if held
                           else "")


class _AcceptFailures(logging.Filter):
    """On the `asyncio` logger: a failed accept() (out of descriptors) becomes one line without its
    traceback, at most once a minute; other records pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.every = _Every(60.0)

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        held = self.every("accept")
        if held is None:
            return False
        reason = record.exc_info[1] if record.exc_info and record.exc_info[1] else "out of system resource"
        record.msg, record.args = "deepvision serve: cannot accept connections now (%s); retrying%s", (
            getattr(reason, "strerror", None) or reason, f" ({held} more since the last such line)" if held else "")
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _CancelledAtStop(logging.Filter):
    """On uvicorn's logger: a stop that ends requests still in flight after its grace period (an upload its
    client never finishes) is one line, not uvicorn's error line and a traceback per cancelled request."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError) and str(record.msg).startswith("Exception in ASGI application"):
            return False
        text = record.getMessage()  # "Cancel 1 running task(s), timeout graceful shutdown exceeded"
        if text.startswith("Cancel ") and "timeout graceful shutdown exceeded" in text:
            record.msg = f"deepvision serve: stopped; {text[7:].split(',')[0].strip()} still in flight (a request " \
                         f"not received whole) ended without an answer"
            record.args, record.levelno, record.levelname = None, logging.WARNING, "WARNING"
        return True


def quiet_accept_failures() -> None:
    """Install the `_AcceptFailures` filter on the `asyncio` logger and `_CancelledAtStop` on uvicorn's
    (once per process)."""
    for name, kind in (("asyncio", _AcceptFailures), ("uvicorn.error", _CancelledAtStop)):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())
