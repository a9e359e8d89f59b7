"""Load check for `deepvision serve`: N concurrent clients against the JSON endpoint on 127.0.0.1.

The server runs in its own process (`python -m deepvision serve SOURCE`); each client thread posts the
same image to /api/predict as fast as answers come back, until the request budget or the time limit is
spent. Reported: requests/s, median and p95 latency, and failed requests (any non-200 answer or
connection error; the script exits 1 if there is one).

    python benchmarks/serve_load.py                          # the MXNet ResNet fixture run, 1/4/16 clients
    python benchmarks/serve_load.py --source runs/x/export/x.onnx --clients 8 --requests 400
    python benchmarks/serve_load.py --tiny                   # smoke run: 2 clients, 20 requests

The table replaces this script's section of BENCHMARKS.md (`--no-append`, and `--tiny`, only print it).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

REPO = Path(__file__).resolve().parents[1]
TITLE = "deepvision serve load check"
FIXTURE = REPO / "tests" / "fixtures" / "mxnet" / "resnet_small"


def default_source(tmp: Path) -> Path:
    from deepvision.interop.mxnet_import import import_mxnet

    return import_mxnet(FIXTURE, 7, input_size=(3, 32, 32), out=tmp / "run", quiet=True).run_dir


def image_bytes(side: int = 256) -> bytes:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1) + rng.integers(-20, 20, (side, side, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def start_server(source: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "serve", str(source), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 120 s")


def load(url: str, clients: int, requests: int, seconds: float, payload: bytes) -> dict:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    remaining = [requests]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while time.monotonic() < stop_at:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                t0 = time.perf_counter()
                try:
                    r = session.post(f"{url}/api/predict", files={"file": ("load.jpg", payload, "image/jpeg")})
                    ok = r.status_code == 200 and "top" in r.json()
                    reason = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, reason = False, type(exc).__name__
                elapsed = time.perf_counter() - t0
                with lock:
                    (latencies.append(elapsed) if ok else failures.append(reason))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"clients": clients, "requests": len(lat) + len(failures), "failed": len(failures),
            "rps": len(lat) / wall if wall else 0.0,
            "p50": statistics.median(lat) * 1000 if lat else float("nan"),
            "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000 if lat else float("nan"),
            "reasons": sorted(set(failures))}


def section(rows: list[dict], source: str, machine: str) -> str:
    """The BENCHMARKS.md section: how it was measured and one row per client count."""
    lines = [f"Machine: {machine}. Server: {source}, 256x256 JPEG uploads to /api/predict; client and "
             "server on 127.0.0.1, each client posting as fast as answers come back.", "",
             "| clients | requests | failed | requests/s | median (ms) | p95 (ms) |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['failed']} | {r['rps']:.1f} | {r['p50']:.1f} | "
                     f"{r['p95']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, help="run directory or .onnx (default: the MXNet ResNet fixture run)")
    p.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=300, help="requests per client count (default 300)")
    p.add_argument("--seconds", type=float, default=60, help="time limit per client count (default 60)")
    p.add_argument("--tiny", action="store_true", help="smoke run: 2 clients, 20 requests (print only)")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    if args.tiny:
        args.clients, args.requests, args.seconds = [2], 20, 30
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or default_source(Path(tmp))
        server = start_server(source, port)
        try:
            payload = image_bytes()
            rows = [load(f"http://127.0.0.1:{port}", n, args.requests, args.seconds, payload) for n in args.clients]
        finally:
            server.terminate()
            server.wait(10)
    text = section(rows, source.name if args.source else "the MXNet ResNet fixture run (3x32x32)", describe())
    print(text)
    if not (args.no_append or args.tiny):
        print(f"written to {write_section(TITLE, text)}")
    failed = [r for r in rows if r["failed"]]
    if failed:
        print(f"FAILED requests: {', '.join(', '.join(r['reasons']) for r in failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
