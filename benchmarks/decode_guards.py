"""Cost of the decode guards (docs/data-reliability.md): the pixel-limit header check and the one alpha rule.

Every decode now reads the image header before decoding (JPEG start-of-frame, PNG IHDR) and PNG/GIF/WebP
records decode through Pillow (transparency composited on white, as `predict` does) instead of OpenCV.
This measures, single process, images per second for:

* JPEG 256x256 RGB (the ImageNet record case) and 28x28 gray (the STL-10 T1 records saved as JPEG):
  `Decoder` (simplejpeg, with the header check) vs bare `simplejpeg.decode_jpeg` / `cv2.imdecode`;
* PNG 28x28 gray (the STL-10 T1 records) and 256x256 RGB: `Decoder` (Pillow route) vs bare `cv2.imdecode`
  (the previous route, which ignored alpha);
* the header check alone.

    python benchmarks/decode_guards.py [--seconds 2] [--tiny]

The table replaces this script's section of BENCHMARKS.md (`--no-append`, and `--tiny`, only print it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from deepvision.data.imageio import Decoder, check_image_data, simplejpeg

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

TITLE = "Decode guards: header check and the alpha rule"


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def image(side: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, side // 8), max(2, side // 8), channels), dtype=np.uint8)
    big = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
    return big if big.ndim == 3 else big[:, :, None]


def section(rows: list[tuple[str, float, float, str, float]], seconds: float, machine: str) -> str:
    """The BENCHMARKS.md section from (image, Decoder img/s, bare img/s, bare decoder's name, check img/s)."""
    lines = [f"Machine: {machine}. One process, OpenCV on one thread, {seconds:g} s per measurement; the image "
             "is a smooth random picture encoded once (JPEG quality 95). `Decoder` reads the header first "
             "(pixel limit) and decodes PNG through Pillow (alpha composited on white); the bare decoder (named "
             "in its cell) does neither.", "",
             "| image | Decoder img/s | bare decoder img/s | ratio | header check µs |", "|---|---|---|---|---|"]
    for name, new, old, old_name, check in rows:
        lines.append(f"| {name} | {new:,.0f} | {old:,.0f} ({old_name}) | {new / old:.2f} | {1e6 / check:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--tiny", action="store_true", help="a quick check that the script runs (0.05 s each; print only)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = ap.parse_args()
    seconds = 0.05 if args.tiny else args.seconds
    cv2.setNumThreads(1)
    rows = []
    for fmt, side, channels in ((".jpg", 256, 3), (".jpg", 28, 1), (".png", 28, 1), (".png", 256, 3)):
        img = image(side, channels)
        data = cv2.imencode(fmt, img, [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == ".jpg" else [])[1].tobytes()
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
        decoder = Decoder(channels, "auto")
        new = rate(lambda d=data, dec=decoder: dec(d), seconds)
        if fmt == ".jpg" and simplejpeg is not None:
            colorspace = "GRAY" if channels == 1 else "RGB"
            old_name, old = "simplejpeg", rate(lambda d=data, c=colorspace: simplejpeg.decode_jpeg(d, c), seconds)
        else:
            old_name, old = "cv2.imdecode", rate(lambda d=data, f=flag: cv2.imdecode(np.frombuffer(d, np.uint8), f),
                                                  seconds)
        check = rate(lambda d=data: check_image_data(d), seconds)
        rows.append((f"{fmt[1:].upper()} {side}x{side}x{channels}", new, old, old_name, check))
    text = section(rows, seconds, describe())
    print(text)
    if not (args.no_append or args.tiny):
        print(f"written to {write_section(TITLE, text)}")


if __name__ == "__main__":
    main()
