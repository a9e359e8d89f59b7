"""A real uvicorn server on 127.0.0.1 in a background thread, for the serve tests."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, port: int | None = None, **options) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread, with `serve`'s connection limits unless `options` (for
    uvicorn.Config) say otherwise; yields the base URL; stops the server afterwards."""
    import uvicorn

    from deepvision.apps.serve.app import server_options

    port = port or free_port()
    options = {**server_options(), **options}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def photo(tmp: Path) -> Path:
    """A real photo (scikit-image's 'chelsea' cat) when scikit-image is installed, else a drawn scene."""
    try:
        import skimage

        source = Path(skimage.__file__).parent / "data" / "chelsea.png"
        if source.is_file():
            return source
    except ImportError:
        pass
    yy, xx = np.mgrid[0:120, 0:160]
    rgb = np.stack([(xx * 1.5) % 255, (yy * 2) % 255, ((xx + yy) % 64) * 4], -1).astype(np.uint8)
    path = tmp / "scene.png"
    Image.fromarray(rgb).save(path)
    return path


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming width x height (900 megapixels) in a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + \
        chunk(b"IEND", b"")
