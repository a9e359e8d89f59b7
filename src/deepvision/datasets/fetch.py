"""Downloading one file: the URL is opened before the target is touched, so a network failure is reported
as one ("no network", "HTTP 404 Not Found"), never as a failure to write; the body goes through
`fileio.atomic_path` (a temporary file, then rename), checked by MD5 when one is given. With DEEPVISION_OFFLINE
set no download is tried at all (`refuse_offline`): behind a firewall that drops packets each try waits out its
timeout."""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from deepvision.errors import UserError
from deepvision.fileio import atomic_path, md5_of
from deepvision.safeload import env_flag

TIMEOUT_S = 60


class DownloadError(UserError):
    """The server could not be reached or the transfer broke off (the target is untouched); `reason`
    says why in a few words."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"could not download {url}: {reason}")
        self.url, self.reason = url, reason


def network_reason(exc: BaseException) -> str:
    """A few words for why a URL could not be fetched: no network, HTTP status, timeout, refused."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return f"no network, or the host is unknown ({reason.strerror or reason})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {TIMEOUT_S} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def refuse_offline(what: str, place: str | Path) -> None:
    """UserError (one line) when DEEPVISION_OFFLINE is set: `what` is not downloaded; `place` is where a copy
    fetched elsewhere goes."""
    if env_flag("DEEPVISION_OFFLINE"):
        raise UserError(f"DEEPVISION_OFFLINE is set, so nothing is downloaded ({what}); unset it to download, or "
                        f"copy what was fetched elsewhere to {place}")


def fetch_url(url: str, target: str | Path, md5: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> Path:
    """Download `url` to `target` atomically; DownloadError (one line) when the network fails, UserError
    when the MD5 does not match or `target` cannot be written, or DEEPVISION_OFFLINE is set. `target` is
    untouched on any failure."""
    target = Path(target)
    refuse_offline(url, target)
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        raise DownloadError(url, network_reason(exc)) from None
    with response, atomic_path(target, ".partial") as tmp, open(tmp, "wb") as out:
        total, done = int(response.headers.get("Content-Length") or 0), 0
        while True:
            try:
                block = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(url, f"the transfer broke off after {done:,} bytes "
                                         f"({network_reason(exc)})") from None
            if not block:
                break
            out.write(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
        out.flush()
        if md5 is not None and md5_of(tmp) != md5:
            raise UserError(f"the download from {url} is corrupt (MD5 mismatch); run the command again")
    return target
