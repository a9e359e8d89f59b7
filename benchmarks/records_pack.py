"""Packing throughput: `deepvision im2rec` vs MXNet's tools/im2rec.py on the same list and machine.

Both pack the same `.lst` (the benchmark corpus, 2,400 JPEG photographs of mixed sizes) with
`--resize 256 --quality 95 --num-thread <cores>`; each command is timed end to end (interpreter start
included), the candidates interleaved round by round after waiting for the machine to be idle, with
the image files in the page cache. The outputs are compared: same records, same labels, and whether
the files are byte-identical (they are when both use the same libjpeg-turbo encoder).

    MXNET_PYTHON=/path/to/mxnet-venv/bin/python python benchmarks/records_pack.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import corpus
from deepvision.data.records import read_index
from deepvision.datasets.im2rec import make_list
from machine import write_section

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".benchmarks-data" / "pack"


def run_timed(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Wall time, CPU of the command's processes and background load of one command."""
    b0, r0 = corpus.busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {proc.stderr[-1500:]}")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    busy = corpus.busy_seconds() - b0
    return {"wall": wall, "cpu": cpu, "background": max(0.0, (busy - cpu) / wall)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=2400, help="corpus size (JPEG photos)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="--num-thread (all cores)")
    p.add_argument("--no-append", "--no-write", dest="no_write", action="store_true",
                   help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    root = corpus.ensure_corpus(count=args.count)
    files = sorted(root.rglob("*.jpg"))
    source_bytes = sum(f.stat().st_size for f in files)
    for f in files:  # page cache
        f.read_bytes()
    mx_python = os.environ.get("MXNET_PYTHON")
    tools: dict[str, tuple[list[str], Path]] = {}
    shutil.rmtree(WORK, ignore_errors=True)
    options = ["--resize", "256", "--quality", "95", "--num-thread", str(args.threads)]
    (WORK / "dv").mkdir(parents=True)
    (lst,) = make_list(WORK / "dv" / "corpus", root, recursive=True)
    tools["deepvision im2rec"] = ([sys.executable, "-m", "deepvision.cli.main", "im2rec", *options,
                                  str(WORK / "dv" / "corpus"), str(root)], WORK / "dv")
    mx_version = "not measured (set MXNET_PYTHON)"
    if mx_python:
        (WORK / "mx").mkdir()
        shutil.copy(lst, WORK / "mx" / "corpus.lst")
        probe = subprocess.run([mx_python, "-c", "import mxnet, os; print(mxnet.__version__); "
                                "print(os.path.join(os.path.dirname(mxnet.__file__), 'tools', 'im2rec.py'))"],
                               capture_output=True, text=True, cwd="/")
        mx_version, script = probe.stdout.split()
        tools["MXNet tools/im2rec.py"] = ([mx_python, script, *options, str(WORK / "mx" / "corpus"), str(root)],
                                          WORK / "mx")
    results: dict[str, list[dict]] = {name: [] for name in tools}
    for r in range(args.rounds):
        for name, (cmd, cwd) in tools.items():
            result = corpus.measure_quietly(lambda cmd=cmd, cwd=cwd: run_timed(cmd, cwd))
            results[name].append(result)
            print(f"round {r + 1}: {name}: {len(files) / result['wall']:.0f} images/s "
                  f"(background {result['background']:.2f} cores)", file=sys.stderr)
    keys, offsets = read_index(WORK / "dv" / "corpus.idx")
    notes = [f"deepvision packed {len(keys)} records"]
    if mx_python:
        mkeys, moffsets = read_index(WORK / "mx" / "corpus.idx")
        same_idx = mkeys.tolist() == keys.tolist() and moffsets.tolist() == offsets.tolist()
        same_rec = (WORK / "mx" / "corpus.rec").read_bytes() == (WORK / "dv" / "corpus.rec").read_bytes()
        notes.append(f"MXNet {len(mkeys)}; same keys and offsets: {'yes' if same_idx else 'no'}; "
                     f"byte-identical .rec: {'yes' if same_rec else 'no'}")
    med = {name: {k: statistics.median(v[k] for v in rs) for k in ("wall", "cpu", "background")}
           for name, rs in results.items()}
    mx = med.get("MXNet tools/im2rec.py")
    rows = []
    for name, m in med.items():
        rate = len(files) / m["wall"]
        vs = f"{mx['wall'] / m['wall']:.2f}x" if mx else "n/a"
        rows.append(f"| {name} | {m['wall']:.1f} | {rate:,.0f} | {m['cpu'] / len(files) * 1e3:.2f} | {vs} | "
                    f"{m['background']:.2f} |")
    info = corpus.machine()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    goal = ""
    if mx:
        speedup = mx["wall"] / med["deepvision im2rec"]["wall"]
        goal = f"\nGoal: >= 1.5x MXNet's images/s: {speedup:.2f}x, {'met' if speedup >= 1.5 else 'NOT met'}.\n"
    block = f"""{corpus.PACK_INTRO.strip()}

Machine: {stamp}, {info['cpu']}, {info['cores']} cores, {info.get('memory', '?')};
Python {info['python']}, OpenCV {info['cv2']},
MXNet {mx_version}. {len(files)} JPEG photographs ({source_bytes / 1e6:.0f} MB), `--resize 256 --quality 95
--num-thread {args.threads}`, median of {args.rounds} interleaved rounds. {'; '.join(notes)}.

| packer | seconds | images/s | CPU ms per image | vs MXNet | background (cores) |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
{goal}"""
    print(block)
    print(json.dumps({k: v for k, v in med.items()}), file=sys.stderr)
    if not args.no_write:
        write_section(corpus.PACK_TITLE, block)


if __name__ == "__main__":
    main()
