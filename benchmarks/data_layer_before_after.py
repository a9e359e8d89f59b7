"""The data layer before and after its consolidation into one BatchLoader.

The data layer (`src/deepvision/data`) went from five loader classes
(TensorLoader, DatasetLoader, DetectionLoader, RecordLoader, ImageRecordIter) in
7,013 lines to one BatchLoader over sources. This script checks that no workload
got slower. It checks the last commit before that work out into a temporary git
worktree (`--before`; removed at the end, also after an error or Ctrl-C) and
runs each workload in child processes whose PYTHONPATH is one tree's `src`: the
"before" commit, and this checkout (or `--after REV`). The trees alternate round
by round (before first in odd rounds, after first in even ones) on the same data
with the same settings and torch threads (`--threads`, 2). Reported per
workload: each tree's median and range over the rounds, and the median (range)
of the per-round after/before ratios.

1. Record loading, on `benchmarks/records_load.py`'s records (its corpus of
   photographs packed with `im2rec --resize 256 --quality 95`): images/s of
   `RecordLoader` (uint8, what training uses) and of `ImageRecordIter` (float32,
   MXNet's output), random 224 crops, mirror (and mean subtraction), batch 128,
   shuffled, one worker per core, over `--seconds` after a warm-up batch. Both
   classes take the same constructor arguments in both trees. With MXNET_PYTHON
   naming an MXNet 1.9.1 interpreter, MXNet's ImageRecordIter reads the same
   records in every round too (goal: the RecordLoader at >= 3x its images/s).
2. LeNet training: `deepvision train lenet_mnist` on the 10,000 MNIST test
   digits (8,000 train / 2,000 val, as `benchmarks/lenet_mnist.py`), batch 100,
   4 epochs; the median training samples/s of the epochs after the first (the
   warm-up), from the run's history.csv.
3. Detection training: `deepvision train detection_synthetic` (SSDlite at 128
   px, flip + zoom-out + IoU crop, AdamW) on the shapes of
   `benchmarks/detection_synthetic.py` (160 images, 120 for training), batch 8,
   3 epochs; training images/s from history.csv as for LeNet.

The training commands, recipes and config keys are the same in both trees. amp
is pinned off, TensorBoard off and the loader workers to `--workers`: the
defaults of amp and TensorBoard changed between the trees. A workload that
fails in a tree is reported as not measured there, with its error's last line.

    python benchmarks/data_layer_before_after.py   # 5 rounds, ~15 min, 2 cores
    MXNET_PYTHON=... python benchmarks/data_layer_before_after.py   # with MXNet
    python benchmarks/data_layer_before_after.py --quick --no-append   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import corpus
from machine import command_line, describe, write_section

REPO = Path(__file__).resolve().parents[1]
# The last commit before the data layer's consolidation began: src/deepvision/data at 7,013 lines, with
# five loader classes (TensorLoader, DatasetLoader, DetectionLoader, RecordLoader, ImageRecordIter).
BEFORE = "084421fb96e1710f16acaf80596221a7edd8ca09"
TITLE = "Data layer: before and after the one-loader consolidation"
MX_GOAL = 3.0  # the RecordLoader's images/s over MXNet's ImageRecordIter's
CHILD_TIMEOUT = 3600
BUSY = 0.25  # cores other processes may use during a measurement before the figures are flagged
MEAN = (123.68, 116.779, 103.939)

RECORDS_CHILD = r"""
import json, sys, time
import torch
import deepvision
from deepvision.config.schema import AugmentConfig
from deepvision.data import ImageRecordIter, RecordLoader

rec, dtype, workers, batch, seconds, threads = sys.argv[1:7]
workers, batch, seconds = int(workers), int(batch), float(seconds)
torch.set_num_threads(int(threads))
if dtype == "uint8":
    loader = RecordLoader(rec, batch, size=224, training=True, workers=workers, seed=0,
                          augment=AugmentConfig(rand_crop=True, rand_mirror=True))
else:
    loader = ImageRecordIter(rec, (3, 224, 224), batch, shuffle=True, rand_crop=True, rand_mirror=True,
                             mean_r=float(sys.argv[7]), mean_g=float(sys.argv[8]), mean_b=float(sys.argv[9]),
                             preprocess_threads=workers)


def batches():
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


stream = batches()
next(stream)  # warm-up: workers started, first batch decoded
n, t0 = 0, time.perf_counter()
for x, y in stream:
    n += len(y)
    if time.perf_counter() - t0 >= seconds:
        break
wall = time.perf_counter() - t0
assert tuple(x.shape[1:]) == (3, 224, 224) and str(x.dtype) == f"torch.{dtype}", (x.shape, x.dtype)
loader.close()
print(json.dumps({"rate": n / wall, "images": n, "module": deepvision.__file__}))
"""


@dataclass
class Tree:
    """One side of the comparison: its label, what it is (a commit or this checkout) and its `src`."""

    label: str
    what: str
    src: Path


@dataclass
class Workload:
    name: str  # the table's row, with the unit
    setting: str  # one line on what runs
    measure: Callable[[Tree, Path], float]  # (tree, scratch folder) -> rate
    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # tree label -> the error's last line


class ChildFailed(RuntimeError):
    pass


def child_env(tree: Tree, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(tree.src), OMP_NUM_THREADS=str(threads), DEEPVISION_CPU_THREADS=str(threads))
    return env


def run_child(cmd: list[str], tree: Tree, threads: int, cwd: Path) -> str:
    """Run `cmd` on `tree`'s code in its own process group (all of it is ended if this one is stopped);
    its stdout, or ChildFailed with the last line it wrote to stderr."""
    with subprocess.Popen(cmd, cwd=cwd, env=child_env(tree, threads), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        except BaseException:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise
    if proc.returncode:
        lines = [line for line in err.splitlines() if line.strip()]
        raise ChildFailed(lines[-1].strip() if lines else f"exit status {proc.returncode}")
    return out


def check_tree(tree: Tree, threads: int, cwd: Path) -> None:
    """The children of `tree` import deepvision from its `src`, not from an installed copy."""
    code = "import deepvision; print(deepvision.__file__)"
    try:
        found = Path(run_child([sys.executable, "-c", code], tree, threads, cwd).strip().splitlines()[-1])
    except ChildFailed as exc:
        sys.exit(f"{tree.label}: deepvision does not import from {tree.src}: {exc}")
    if not found.resolve().is_relative_to(tree.src.resolve()):
        sys.exit(f"{tree.label}: deepvision is imported from {found}, not from {tree.src}")


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@contextlib.contextmanager
def worktree(rev: str, where: Path) -> Iterator[Path]:
    """`rev` checked out at `where` as a detached git worktree, removed on the way out."""
    git("worktree", "add", "--detach", "--quiet", str(where), rev)
    try:
        yield where
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(where))
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")


def resolve(rev: str) -> str:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        sys.exit(f"data_layer_before_after: error: no commit {rev!r} in {REPO}")


def steady_rate(history: Path) -> float:
    """Median samples/s of a run's epochs after the first (its warm-up); the only epoch's when it had one."""
    with history.open(newline="") as f:
        rates = [float(row["samples_per_s"]) for row in csv.DictReader(f) if row.get("samples_per_s")]
    if not rates:
        raise ChildFailed(f"{history} has no samples_per_s values")
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def train_rate(recipe: str, overrides: list[str], threads: int) -> Callable[[Tree, Path], float]:
    """`deepvision train RECIPE --set ...` on a tree; its steady training samples/s from history.csv."""
    def measure(tree: Tree, scratch: Path) -> float:
        out = Path(tempfile.mkdtemp(prefix=f"{recipe}-{tree.label}-", dir=scratch))
        sets = [arg for value in overrides for arg in ("--set", value)]
        run_child([sys.executable, "-m", "deepvision", "train", recipe, "--out", str(out), "--name", "run", *sets],
                  tree, threads, out)
        found = sorted(out.glob("*/history.csv"))
        if len(found) != 1:
            raise ChildFailed(f"expected one run with a history.csv under {out}, found {len(found)}")
        return steady_rate(found[0])
    return measure


def records_rate(rec: Path, dtype: str, args: argparse.Namespace) -> Callable[[Tree, Path], float]:
    def measure(tree: Tree, scratch: Path) -> float:
        cmd = [sys.executable, "-c", RECORDS_CHILD, str(rec), dtype, str(args.workers), str(args.batch),
               str(args.seconds), str(args.threads), *map(str, MEAN)]
        got = json.loads(run_child(cmd, tree, args.threads, scratch).strip().splitlines()[-1])
        return float(got["rate"])
    return measure


def prepare_records(args: argparse.Namespace, scratch: Path) -> Path:
    """records_load.py's records: cached under .benchmarks-data/load; --quick packs a tiny corpus apart."""
    import records_load

    if not args.quick:
        return records_load.ensure_records(corpus.ensure_corpus(count=args.count), args.workers)
    from deepvision.datasets.im2rec import PackOptions, make_list, pack_list

    root = corpus.ensure_corpus(scratch / "corpus", count=args.count, workers=args.workers)
    (lst,) = make_list(scratch / "corpus256", root, recursive=True)
    pack_list(lst, PackOptions(root=str(root), resize=256, quality=95), workers=args.workers)
    return scratch / "corpus256.rec"


def summary(values: list[float]) -> str:
    """'median (low-high)' of a tree's rates."""
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"{rate(med)} ({rate(min(values))}-{rate(max(values))})" if len(values) > 1 else rate(med)


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def ratios(w: Workload) -> list[float]:
    return [a / b for a, b in zip(w.after, w.before) if b > 0]


def verdict(w: Workload) -> str:
    r = ratios(w)
    if not r:
        return f"{w.name}: not compared"
    low, high = min(r), max(r)
    if low >= 1.0:
        word = "at least as fast in every round"
    elif high < 1.0:
        word = "SLOWER in every round"
    else:
        word = "unchanged within noise (the per-round ratios span 1.00)"
    return f"{w.name}: after/before {statistics.median(r):.2f}, {word}"


def section(workloads: list[Workload], trees: dict[str, str], settings: str, machine: str,
            mxnet: dict | None = None) -> str:
    """The BENCHMARKS.md section: settings, the table, a verdict per workload, MXNet's reference."""
    rows = []
    for w in workloads:
        r = ratios(w)
        ratio = "n/a" if not r else f"{statistics.median(r):.2f}" + (
            f" ({min(r):.2f}-{max(r):.2f})" if len(r) > 1 else "")
        rows.append(f"| {w.name} | {summary(w.before)} | {summary(w.after)} | {ratio} |")
    notes = [verdict(w) for w in workloads]
    for w in workloads:
        notes += [f"{w.name}: not measured in the {label} tree: {error}" for label, error in w.failed.items()]
    if mxnet and mxnet.get("failed"):
        notes.append(f"MXNet: not measured: {mxnet['failed']}")
    if mxnet and mxnet["rates"]:
        med = statistics.median(mxnet["rates"])
        notes.append(f"MXNet {mxnet['version']} ImageRecordIter on the same records: {summary(mxnet['rates'])} "
                     f"images/s")
        for w in (w for w in workloads if w.name.startswith("records")):
            parts = [f"{label} {statistics.median(v) / med:.2f}x" for label, v in (("before", w.before),
                                                                                 ("after", w.after)) if v]
            if parts:
                goal = ""
                if w.name.startswith("records uint8") and w.after:
                    met = statistics.median(w.after) >= MX_GOAL * med
                    goal = f" (goal >= {MX_GOAL:.0f}x: {'met' if met else 'NOT met'})"
                notes.append(f"{w.name} / MXNet: {', '.join(parts)}{goal}")
    elif not mxnet and any(w.name.startswith("records") for w in workloads):
        notes.append("MXNet: not measured (set MXNET_PYTHON to an MXNet 1.9.1 interpreter)")
    wrap = textwrap.TextWrapper(width=80, subsequent_indent="  ")
    return "\n".join([
        textwrap.fill(f"Machine: {machine}. Before: {trees['before']}; after: {trees['after']}. {settings}",
                      80), "",
        "| workload | before (range) | after (range) | after/before |", "|---|---:|---:|---:|", *rows, "",
        *(line for note in notes for line in wrap.wrap(f"- {note}")),
    ])


def measure_mxnet(python: str, rec: Path, args: argparse.Namespace) -> float:
    import records_load

    return records_load.measure_mxnet(python, rec, args.workers, args.seconds, args.batch)["rate"]


def timed(fn: Callable[..., float], quiet: bool, *args: object) -> tuple[float, float]:
    """(rate, background cores): `fn` run once the machine is idle, with the CPU other processes used
    meanwhile (all CPU minus this process's children), as records_load.py reports it."""
    if quiet:
        corpus.wait_for_quiet()
    b0, r0, t0 = corpus.busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    value = fn(*args)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return value, max(0.0, (corpus.busy_seconds() - b0 - own) / wall)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default=BEFORE, metavar="REV",
                   help="the commit before the consolidation (default: %(default).12s)")
    p.add_argument("--after", metavar="REV", help="a commit to compare instead of this checkout's working tree")
    p.add_argument("--rounds", type=int, default=5, help="before/after pairs of every workload (default 5)")
    p.add_argument("--only", default="records,lenet,detection",
                   help="comma list of workloads: records, lenet, detection (default: all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of every child (default 2)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="loader workers (default: one per core)")
    p.add_argument("--count", type=int, default=2400, help="corpus photographs packed into the records")
    p.add_argument("--seconds", type=float, default=10.0, help="record-loading window per measurement")
    p.add_argument("--batch", type=int, default=128, help="record-loading batch")
    p.add_argument("--mnist", type=Path, default=Path(os.environ.get("DEEPVISION_MNIST", REPO.parent / "shared" /
                                                                     "datasets" / "mnist")),
                   help="folder with the MNIST t10k idx files (default: ../shared/datasets/mnist)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny sizes, 1 round, no waiting for an idle machine, never written")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not only or only - {"records", "lenet", "detection"}:
        p.error(f"--only takes records, lenet and detection, got {args.only!r}")
    lenet_epochs, det_images, det_epochs, det_batch = 4, 160, 3, 8
    if args.quick:
        args.rounds, args.count, args.seconds, args.batch = 1, 24, 1.0, 8
        lenet_epochs, det_images, det_epochs, det_batch = 2, 16, 2, 4
    if "lenet" in only and not (args.mnist / "t10k-images-idx3-ubyte.gz").is_file():
        p.error(f"no MNIST test digits in {args.mnist} (--mnist DIR or DEEPVISION_MNIST)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: children ended, worktrees removed
    import torch

    torch.set_num_threads(args.threads)  # what describe() reports; each child sets its own
    before_rev = resolve(args.before)
    after_rev = resolve(args.after) if args.after else None
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deepvision-data-layer-")))
        what = f"{before_rev[:12]}" + (" (the last commit before the consolidation)" if before_rev == BEFORE else "")
        trees = [Tree("before", what, stack.enter_context(worktree(before_rev, scratch / "before")) / "src")]
        if after_rev:
            trees.append(Tree("after", after_rev[:12], stack.enter_context(worktree(after_rev, scratch / "after"))
                              / "src"))
        else:
            dirty = git("status", "--porcelain", "--", "src")
            trees.append(Tree("after", f"this checkout ({git('rev-parse', '--short=12', 'HEAD')}"
                                       f"{', with uncommitted changes' if dirty else ''})", REPO / "src"))
        for tree in trees:
            check_tree(tree, args.threads, scratch)
        workloads: list[Workload] = []
        rec = None
        if "records" in only:
            rec = prepare_records(args, scratch)
            what = f"{args.workers} workers, batch {args.batch}, {args.seconds:g} s windows"
            workloads += [Workload("records uint8, img/s", f"RecordLoader uint8 ({what})",
                                   records_rate(rec, "uint8", args)),
                          Workload("records f32, img/s", "ImageRecordIter float32", records_rate(rec, "float32", args))]
        common = ["train.device=cpu", "train.amp=off", "train.seed=0", "train.tensorboard=false", "train.test=off",
                  "train.progress=lines", f"data.workers={args.workers}"]
        if "lenet" in only:
            sets = [f"data.root={args.mnist}", "data.train=test", "data.test=null", "data.val_fraction=0.2",
                    f"train.epochs={lenet_epochs}", *common]
            if args.quick:
                sets.append("data.max_samples=400")
            workloads.append(Workload("LeNet, samples/s", f"LeNet {lenet_epochs} epochs",
                                      train_rate("lenet_mnist", sets, args.threads)))
        if "detection" in only:
            from detection_synthetic import make_data

            built = make_data(scratch / "shapes", det_images, 128)
            sets = [f"data.root={built}", f"data.batch_size={det_batch}", f"train.epochs={det_epochs}",
                    "train.clip_grad_norm=10", *common]
            if args.quick:
                sets.append("train.max_steps=2")
            workloads.append(Workload("SSDlite, img/s", f"SSDlite {det_images} images, batch {det_batch}, "
                                      f"{det_epochs} epochs", train_rate("detection_synthetic", sets, args.threads)))
        mx_python = os.environ.get("MXNET_PYTHON") if rec is not None else None
        mxnet: dict | None = {"rates": [], "version": ""} if mx_python else None
        background: list[float] = []
        t_start = time.perf_counter()
        for r in range(args.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            for w in workloads:
                for tree in order:
                    if tree.label in w.failed:
                        continue
                    try:
                        value, busy = timed(w.measure, not args.quick, tree, scratch)
                    except ChildFailed as exc:
                        w.failed[tree.label] = str(exc)
                        print(f"round {r + 1}: {w.name}, {tree.label}: failed: {exc}", file=sys.stderr)
                        continue
                    getattr(w, tree.label).append(value)
                    background.append(busy)
                    print(f"round {r + 1}: {w.name}, {tree.label}: {rate(value)} (background {busy:.2f} cores)",
                          file=sys.stderr, flush=True)
            if mxnet is not None and "failed" not in mxnet:
                try:
                    value, busy = timed(measure_mxnet, not args.quick, mx_python, rec, args)
                except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                    mxnet["failed"] = str(exc).strip().splitlines()[-1]
                    print(f"round {r + 1}: MXNet ImageRecordIter: failed: {mxnet['failed']}", file=sys.stderr)
                else:
                    mxnet["rates"].append(value)
                    background.append(busy)
                    print(f"round {r + 1}: MXNet ImageRecordIter: {rate(value)} img/s", file=sys.stderr)
            print(f"round {r + 1} of {args.rounds} done after {time.perf_counter() - t_start:.0f} s",
                  file=sys.stderr, flush=True)
        if mxnet is not None:
            mxnet["version"] = subprocess.run([mx_python, "-c", "import mxnet; print(mxnet.__version__)"],
                                              capture_output=True, text=True, cwd="/").stdout.strip()
    rounds = f"{args.rounds} round{'s' if args.rounds != 1 else ''}"
    settings = (f"{rounds}, the trees alternating; {args.threads} torch threads; "
                + "; ".join(w.setting for w in workloads)
                + f". Other processes used {max(background, default=0.0):.2f} cores at most during a "
                  f"measurement (median {statistics.median(background) if background else 0.0:.2f}).")
    if max(background, default=0.0) > BUSY:
        settings += " The machine was busy: rerun on an idle machine before comparing the trees."
    text = section(workloads, {t.label: t.what for t in trees}, settings, describe(), mxnet)
    print(f"\n## {TITLE}\n\n`{command_line()}`\n\n{text}")
    if not args.no_append and not args.quick:
        print(f"written to {write_section(TITLE, text)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the children are ended and the worktrees removed by then
        sys.stderr.write("interrupted\n")
        sys.exit(130)
