"""Record-loader throughput: deepvision's RecordLoader vs MXNet's ImageRecordIter vs the decode-only ceiling.

Workload (the reference's ImageNet training input): records packed with `--resize 256 --quality 95`,
random 224 x 224 crop + horizontal mirror + mean subtraction, batch 128, shuffled, as many worker
processes (deepvision) / preprocess threads (MXNet) as cores. Measured on the same machine in the same
run, the candidates interleaved round by round (the median is reported), after waiting for the machine
to be idle; the CPU time other processes used meanwhile is reported as "background".

* deepvision RecordLoader, uint8: what training uses; mean subtraction (and /std) happens on the GPU,
  fused into the uint8 -> float conversion.
* deepvision ImageRecordIter, float32: MXNet's output on the CPU, contiguous mean-subtracted float32
  N x C x H x W made by the workers (also measured with 1 worker, the thread count MXNet settles for).
* MXNet ImageRecordIter (when MXNET_PYTHON names an interpreter with MXNet 1.9.1).
* Decode-only ceiling: one process per core doing nothing but decoding the same JPEGs, with the
  loader's decoder (simplejpeg = libjpeg-turbo) and with OpenCV's imdecode (MXNet's decoder).

    MXNET_PYTHON=/path/to/mxnet-venv/bin/python python benchmarks/records_load.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

import corpus
from deepvision.config.schema import AugmentConfig
from deepvision.data import ImageRecordIter, RecordLoader
from deepvision.data.records import RecordFile, unpack_header
from machine import write_section

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".benchmarks-data" / "load"
MEAN = (123.68, 116.779, 103.939)

MX_SCRIPT = r"""
import json, sys, time
import mxnet as mx
rec, idx, threads, seconds, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
it = mx.io.ImageRecordIter(path_imgrec=rec, path_imgidx=idx, data_shape=(3, 224, 224), batch_size=batch,
                           rand_crop=True, rand_mirror=True, mean_r=123.68, mean_g=116.779, mean_b=103.939,
                           preprocess_threads=threads, shuffle=True, seed=0, verbose=True)
next(iter(it)).data[0].wait_to_read()  # warm-up: threads started, first batch decoded
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < seconds:
    it.reset()
    for b in it:
        b.data[0].wait_to_read()
        n += batch - b.pad
        if time.perf_counter() - t0 >= seconds:
            break
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"images": n, "seconds": dt, "cpu": cpu}))
"""


def ensure_records(root: Path, workers: int) -> Path:
    """The corpus packed with `im2rec --resize 256 --quality 95` (cached)."""
    rec = WORK / "corpus256.rec"
    stamp = WORK / "corpus256.json"
    want = json.loads((root / "corpus.json").read_text())
    if rec.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == want:
        return rec
    WORK.mkdir(parents=True, exist_ok=True)
    from deepvision.datasets.im2rec import PackOptions, make_list, pack_list

    (lst,) = make_list(WORK / "corpus256", root, recursive=True)
    pack_list(lst, PackOptions(root=str(root), resize=256, quality=95), workers=workers)
    stamp.write_text(json.dumps(want))
    return rec


_PAYLOADS: list[bytes] = []


def _decode_loop(args: tuple[str, float]) -> tuple[int, float, float]:
    kind, seconds = args
    import cv2

    if kind == "simplejpeg":
        import simplejpeg

        buf = np.empty(1 << 22, np.uint8)

        def decode(b: bytes) -> None:
            simplejpeg.decode_jpeg(b, "RGB", buffer=buf)
    else:
        def decode(b: bytes) -> None:
            cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)

    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for b in _PAYLOADS:
            decode(b)
            n += 1
            if n % 64 == 0 and time.perf_counter() - t0 >= seconds:
                break
    return n, time.perf_counter() - t0, time.process_time() - c0


def measure_ceiling(kind: str, workers: int, seconds: float) -> dict[str, float]:
    b0 = corpus.busy_seconds()
    t0 = time.perf_counter()
    with get_context("fork").Pool(workers) as pool:
        results = pool.map(_decode_loop, [(kind, seconds)] * workers)
    wall = time.perf_counter() - t0
    busy_t = corpus.busy_seconds() - b0
    images = sum(r[0] for r in results)
    rate = sum(r[0] / r[1] for r in results)  # each process's rate over its own window
    cpu = sum(r[2] for r in results)
    return {"rate": rate, "cpu_per_image": cpu / images, "background": max(0.0, (busy_t - cpu) / wall)}


def measure_loader(rec: Path, workers: int, seconds: float, batch: int, dtype: str) -> dict[str, float]:
    """uint8: the training loader (`RecordLoader`, normalisation left to the GPU); float32: the MXNet-style
    `ImageRecordIter` (contiguous N x C x H x W float32, mean subtracted by the workers)."""
    if dtype == "uint8":
        loader = RecordLoader(rec, batch, size=224, training=True, workers=workers, seed=0,
                              augment=AugmentConfig(rand_crop=True, rand_mirror=True))
    else:
        loader = ImageRecordIter(str(rec), (3, 224, 224), batch, shuffle=True, rand_crop=True, rand_mirror=True,
                                 mean_r=MEAN[0], mean_g=MEAN[1], mean_b=MEAN[2], preprocess_threads=workers)
    def epochs():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    batches = epochs()
    next(batches)  # warm-up: workers forked, first batch decoded
    pids = [os.getpid()] + [w.pid for w in loader._loader._iterator._workers]
    c0 = sum(corpus.cpu_seconds(p) for p in pids)
    b0 = corpus.busy_seconds()
    n, t0 = 0, time.perf_counter()
    for x, y in batches:
        n += len(y)
        shape, xdtype, contiguous = x.shape, x.dtype, x.is_contiguous()
        if time.perf_counter() - t0 >= seconds:
            break
    wall = time.perf_counter() - t0
    cpu = sum(corpus.cpu_seconds(p) for p in pids) - c0
    busy = corpus.busy_seconds() - b0
    assert shape[1:] == (3, 224, 224) and xdtype == (torch.uint8 if dtype == "uint8" else torch.float32)
    assert dtype == "uint8" or contiguous
    loader.close()
    return {"rate": n / wall, "cpu_per_image": cpu / n, "background": max(0.0, (busy - cpu) / wall)}


def measure_mxnet(python: str, rec: Path, workers: int, seconds: float, batch: int) -> dict[str, float]:
    b0, r0 = corpus.busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", MX_SCRIPT, str(rec), str(rec.with_suffix(".idx")), str(workers),
                           str(seconds), str(batch)], capture_output=True, text=True, cwd="/", timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"MXNet failed: {proc.stderr[-1500:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    threads = next((ln.split("use ")[1].split(" threads")[0] for ln in proc.stderr.splitlines()
                    if "threads for decoding" in ln), "?")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # the whole MXNet process
    busy = corpus.busy_seconds() - b0
    return {"rate": r["images"] / r["seconds"], "cpu_per_image": r["cpu"] / r["images"],
            "background": max(0.0, (busy - child_cpu) / wall), "threads": threads}


def profile_stages(rec: Path, batch: int, images: int = 1024) -> list[tuple[str, float]]:
    """CPU µs per image of each step a worker takes, in one process and one thread, with the workers'
    own functions: what the ceiling measures (decode) against what the loaders add to it."""
    import random

    import cv2

    from deepvision.data.augment_plan import draw_plan, reseed, sample_seed
    from deepvision.data.imageio import Decoder
    from deepvision.data.records.header import image_bytes
    from deepvision.data.records.pipeline import _prepare, _Spec, _store, apply_plan

    cv2.setNumThreads(1)
    file = RecordFile.open(rec)
    n = min(images, len(file))
    aug = AugmentConfig(rand_crop=True, rand_mirror=True)
    spec_u8 = _Spec((224, 224), 3, None, True, aug, True, 0)
    spec_f32 = _Spec((224, 224), 3, None, True, aug, False, 0, affine=((1.0,) * 3, tuple(-m for m in MEAN)))
    ring_u8 = np.ones((batch, 224, 224, 3), np.uint8)  # touched: like the loader's reused shared slots
    ring_f32 = np.ones((batch, 3, 224, 224), np.float32)
    scratch = np.empty((224, 224, 3), np.uint8)
    planes = [np.empty((224, 224), np.uint8) for _ in range(3)]
    decoder, rng = Decoder(3), random.Random()

    def clock(fn: Callable[[int], object]) -> float:
        fn(0)
        c0 = time.process_time()
        for i in range(n):
            fn(i)
        return (time.process_time() - c0) / n * 1e6

    raw = [image_bytes(file.read(i)) for i in range(n)]
    imgs = [np.array(decoder(b)) for b in raw]

    def plan(i: int) -> object:
        reseed(rng, sample_seed(0, 0, i))
        img = _prepare(imgs[i], spec_u8, aug)
        return draw_plan(aug, (img.shape[1], img.shape[0]), (224, 224), rng)

    plans = [plan(i) for i in range(n)]
    return [
        ("read record", clock(lambda i: image_bytes(file.read(i)))),
        ("decode (the ceiling's work)", clock(lambda i: decoder(raw[i]))),
        ("draw the augmentation plan", clock(plan)),
        ("uint8: crop + mirror into the batch", clock(lambda i: apply_plan(imgs[i], plans[i], ring_u8[i % batch]))),
        ("float32: crop + mirror into a scratch", clock(lambda i: apply_plan(imgs[i], plans[i], scratch))),
        ("float32: split into planes + (x - mean) into the batch",
         clock(lambda i: _store(scratch, ring_f32[i % batch], spec_f32, planes))),
        ("float32: output bytes written (memset of the sample)", clock(lambda i: ring_f32[i % batch].fill(0.5))),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=2400, help="corpus size (JPEG photos)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="measurement window per candidate and round")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    p.add_argument("--no-append", "--no-write", dest="no_write", action="store_true",
                   help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = corpus.ensure_corpus(count=args.count)
    rec = ensure_records(root, args.workers)
    rf = RecordFile.open(rec)
    _PAYLOADS[:] = [bytes(unpack_header(rf.read(i))[1]) for i in range(len(rf))]
    sizes = [len(b) for b in _PAYLOADS]
    mx_python = os.environ.get("MXNET_PYTHON")
    candidates: dict[str, Callable[[], dict]] = {
        "ceiling, simplejpeg": lambda: measure_ceiling("simplejpeg", args.workers, args.seconds),
        "ceiling, OpenCV imdecode": lambda: measure_ceiling("cv2", args.workers, args.seconds),
        "deepvision RecordLoader, uint8": lambda: measure_loader(rec, args.workers, args.seconds, args.batch,
                                                                 "uint8"),
        "deepvision ImageRecordIter, float32": lambda: measure_loader(rec, args.workers, args.seconds, args.batch,
                                                                   "float32"),
    }
    if args.workers > 1:  # MXNet caps its decode threads at what it thinks the cores allow: compare at 1 too
        candidates["deepvision ImageRecordIter, float32, 1 worker"] = lambda: measure_loader(
            rec, 1, args.seconds, args.batch, "float32")
    if mx_python:
        candidates["MXNet ImageRecordIter (float32)"] = lambda: measure_mxnet(mx_python, rec, args.workers,
                                                                              args.seconds, args.batch)
    corpus.wait_for_quiet()
    stages = profile_stages(rec, args.batch)  # first: a mistake here shows before minutes of measuring
    results: dict[str, list[dict]] = {name: [] for name in candidates}
    for r in range(args.rounds):
        for name, fn in candidates.items():
            result = corpus.measure_quietly(fn)
            results[name].append(result)
            print(f"round {r + 1}: {name}: {result['rate']:.0f} images/s "
                  f"(background {result['background']:.2f} cores)", file=sys.stderr)
    med = {name: {k: statistics.median(v[k] for v in rs) for k in ("rate", "cpu_per_image", "background")}
           for name, rs in results.items()}
    ceiling = med["ceiling, simplejpeg"]["rate"]
    ceiling_cv2 = med["ceiling, OpenCV imdecode"]["rate"]
    mx_rate = med.get("MXNet ImageRecordIter (float32)", {}).get("rate")
    rows = []
    for name, m in med.items():
        vs_mx = f"{m['rate'] / mx_rate:.2f}x" if mx_rate else "n/a"
        extra = ""
        if name.startswith("MXNet"):
            extra = f" ({results[name][-1].get('threads', '?')} decode thread(s) used)"
        rows.append(f"| {name}{extra} | {m['rate']:,.0f} | {m['cpu_per_image'] * 1e6:,.0f} | "
                    f"{m['rate'] / ceiling:.0%} | {m['rate'] / ceiling_cv2:.0%} | {vs_mx} | {m['background']:.2f} |")
    steps = dict(stages)
    decode = steps["decode (the ceiling's work)"]
    common = decode + steps["read record"] + steps["draw the augmentation plan"]
    bound_u8 = decode / (common + steps["uint8: crop + mirror into the batch"])
    bound_f32 = decode / (common + steps["float32: crop + mirror into a scratch"]
                          + steps["float32: split into planes + (x - mean) into the batch"])
    profile = "\n".join(["| step (one process, one thread) | CPU µs per image |", "|---|---:|",
                         *(f"| {name} | {us:,.0f} |" for name, us in stages)])
    info = corpus.machine()
    mx_version = "not measured (set MXNET_PYTHON)"
    if mx_python:
        mx_version = subprocess.run([mx_python, "-c", "import mxnet; print(mxnet.__version__)"], capture_output=True,
                                    text=True, cwd="/").stdout.strip()
    table = "\n".join([
        "| loader | images/s | CPU µs per image | vs ceiling (simplejpeg) | vs ceiling (OpenCV) | vs MXNet | "
        "background (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    ours = med["deepvision RecordLoader, uint8"]["rate"]
    float_rate = med["deepvision ImageRecordIter, float32"]["rate"]
    goals = [f"training loader at {ours / ceiling:.0%} of the decode-only ceiling with its own decoder "
             f"(goal >= 80%: {'met' if ours >= 0.8 * ceiling else 'NOT met'})",
             f"float32 iterator at {float_rate / ceiling:.0%} (goal >= 80%: "
             f"{'met' if float_rate >= 0.8 * ceiling else 'NOT met'})"]
    if mx_rate:
        met = "met" if min(ours, float_rate) >= 1.2 * mx_rate else "NOT met"
        goals.append(f"{ours / mx_rate:.2f}x MXNet's images/s for the training loader and {float_rate / mx_rate:.2f}x "
                     f"for the float32 iterator (goal >= 1.2x: {met})")
    block = f"""{corpus.LOAD_INTRO.strip()}

Machine: {stamp}, {info['cpu']}, {info['cores']} cores, {info.get('memory', '?')};
Python {info['python']}, torch {info['torch']},
OpenCV {info['cv2']}, simplejpeg {info['simplejpeg']}, MXNet {mx_version}. Corpus: {len(sizes)} JPEG records
at short side 256 (mean {np.mean(sizes) / 1e3:.0f} kB). Batch {args.batch}, random 224 crop + mirror + mean,
shuffled; {args.workers} workers / preprocess threads; median of {args.rounds} interleaved rounds of
{args.seconds:.0f} s.

{table}

Goals: {'; '.join(goals)}.

Where a worker's time goes (the workers' own functions, one process, 1,024 images):

{profile}

With no other cost at all, the steps above cap a loader at decode / (read + decode + plan + its own
steps) of the ceiling: {bound_u8:.0%} for the uint8 loader and {bound_f32:.0%} for the float32 iterator.
"""
    print(block)
    if not args.no_write:
        write_section(corpus.LOAD_TITLE, block)


if __name__ == "__main__":
    main()
