"""Record loader: reusable shared-memory batch slots vs a plain DataLoader of fresh batches.

The record source's workers can write each batch into a slot of a shared-memory pool mapped before they
fork and send only the slot's number (`records.shared_batches`), or return a freshly allocated batch
the way a plain `torch.utils.data.DataLoader` does (torch moves it to shared memory, the main process
maps it; pinned by the DataLoader when CUDA is there). Everything else is the same loader on the same
records. Workload: a few hundred photos from `corpus.py` packed with `im2rec --resize 256`, random
224 crop + mirror, uint8 batches of 64, 2 workers; both ways interleaved round by round. Reported:
images/s and CPU µs per image (main process + workers: robust to other load on a shared machine).

    python benchmarks/records_slots.py [--count 300] [--rounds 4] [--seconds 4]

The table replaces this script's section of BENCHMARKS.md (`--no-append` only prints it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import corpus
from deepvision.config.schema import AugmentConfig
from deepvision.data import RecordLoader
from deepvision.data.records.loader import RecordSource
from machine import describe, write_section

TITLE = "Record loader: shared-memory batch slots vs fresh batches"
WORK = Path(__file__).resolve().parents[1] / ".benchmarks-data" / "slots"


def records(count: int) -> Path:
    rec = WORK / f"corpus{count}.rec"
    if not rec.is_file():
        from deepvision.data.im2rec import PackOptions, make_list, pack_list

        root = corpus.ensure_corpus(WORK / f"corpus{count}", count=count)
        (lst,) = make_list(WORK / f"corpus{count}", root, recursive=True)
        pack_list(lst, PackOptions(root=str(root), resize=256, quality=90))
    return rec


def measure(rec: Path, slots: bool, seconds: float, batch: int, workers: int) -> dict[str, float]:
    start = RecordSource.start_workers
    if not slots:  # no pool: workers return fresh batches, as a plain DataLoader does
        RecordSource.start_workers = lambda self, workers, largest: None
    try:
        loader = RecordLoader(rec, batch, size=224, training=True, workers=workers, seed=0,
                              augment=AugmentConfig(rand_crop=True, rand_mirror=True),
                              pin_memory=torch.cuda.is_available())
        it = iter(_epochs(loader))
        next(it)  # workers forked, first batch made
    finally:
        RecordSource.start_workers = start
    assert (loader.source.slots is not None) == slots
    pids = [w.pid for w in loader._loader._iterator._workers]
    pids.append(os.getpid())
    c0 = sum(corpus.cpu_seconds(p) for p in pids)
    n, t0 = 0, time.perf_counter()
    for _, y in it:
        n += len(y)
        if time.perf_counter() - t0 >= seconds:
            break
    wall = time.perf_counter() - t0
    cpu = sum(corpus.cpu_seconds(p) for p in pids) - c0
    loader.close()
    return {"rate": n / wall, "cpu_us": cpu / n * 1e6}


def _epochs(loader: RecordLoader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def section(results: dict[str, list[dict[str, float]]], args: argparse.Namespace, machine: str) -> str:
    """The BENCHMARKS.md section: medians over the rounds of each way's images/s and CPU µs per image."""
    lines = [f"Machine: {machine}. {args.count} corpus photos packed with `im2rec --resize 256`, random 224 crop "
             f"+ mirror, uint8 batches of {args.batch}, {args.workers} workers, one torch thread; both ways "
             f"interleaved over {args.rounds} rounds of {args.seconds:g} s. CPU µs per image: main process + "
             "workers.", "",
             "| way | images/s (median) | CPU µs per image (median) |", "|---|---:|---:|"]
    for name, rs in results.items():
        lines.append(f"| {name} | {statistics.median(r['rate'] for r in rs):,.0f} | "
                     f"{statistics.median(r['cpu_us'] for r in rs):,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=300, help="photos in the corpus")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0, help="measurement window per way and round")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    rec = records(args.count)
    ways = {"shared-memory slot pool": True, "plain DataLoader, fresh batches": False}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
    for r in range(args.rounds):
        for name, slots in (ways.items() if r % 2 == 0 else reversed(ways.items())):
            results[name].append(measure(rec, slots, args.seconds, args.batch, args.workers))
            print(f"round {r + 1}: {name}: {results[name][-1]['rate']:.0f} images/s, "
                  f"{results[name][-1]['cpu_us']:.0f} CPU µs/image", flush=True)
    text = section(results, args, describe())
    print(text)
    if not args.no_append:
        print(f"written to {write_section(TITLE, text)}")


if __name__ == "__main__":
    main()
