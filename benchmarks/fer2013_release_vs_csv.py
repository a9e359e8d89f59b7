"""How far the image-folder release of FER2013 is from the pixels of Kaggle's fer2013.csv.

CSV is fer2013.csv or any part of it (rows `emotion,pixels,Usage`; a copy cut mid-row keeps every
complete row, the rest are counted and skipped). RELEASE is the image-folder release read as
`deepvision fer2013 build` reads it: every `Training_N`, `PrivateTest_N`, `PublicTest_N` image under
RELEASE/<part>/<emotion>/, the name prefix giving the Usage (augmented copies such as
`Training_N.jpg0.jpg` are left out, as the build leaves them out). Only the Usages the CSV holds are read.

For each CSV row the script finds its face among the release images of the same Usage: a shortlist of
the `--shortlist` nearest by Euclidean distance (one float32 matrix product per block of rows), then the
mean absolute difference (MAE, gray levels) to each of them; the nearest by MAE is the match when its
MAE is at most `--threshold`. The best and second-best MAE show whether the threshold separates the
two (a re-encoded copy of the same face vs the nearest other face). Matched pairs give the median and
95th percentile of MAE, the largest absolute pixel difference and the PSNR; the matched file's emotion
folder is compared with the row's emotion.

    python benchmarks/fer2013_release_vs_csv.py fer2013.csv FER2013/

The table replaces this script's section of BENCHMARKS.md (`--no-append` only prints it).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from deepvision.apps.emotion.fer2013 import FOLDER_LABELS, IMAGE_NAME, SIDE
from deepvision.data.imageio import open_image
from deepvision.datasets.fer import FER7_LABELS

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

TITLE = "FER2013: the image-folder release vs fer2013.csv's pixels"
USAGES = ("Training", "PublicTest", "PrivateTest")


def read_rows(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """{Usage: (emotions N, faces N x 2304 uint8)} of the complete rows of CSV, and the lines skipped
    (a row cut short, wrong pixel count, bad emotion or Usage)."""
    faces: dict[str, list[np.ndarray]] = {u: [] for u in USAGES}
    labels: dict[str, list[int]] = {u: [] for u in USAGES}
    skipped = 0
    csv.field_size_limit(1 << 20)
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        if not {"emotion", "pixels", "Usage"} <= set(reader.fieldnames or []):
            raise SystemExit(f"{path}: expected the header emotion,pixels,Usage")
        for row in reader:
            usage = (row.get("Usage") or "").strip()
            try:
                pixels = np.array((row.get("pixels") or "").split(), dtype=np.int64)
                emotion = int(row["emotion"])
            except (TypeError, ValueError):
                skipped += 1
                continue
            if usage not in faces or pixels.size != SIDE * SIDE or not 0 <= emotion < len(FER7_LABELS) or (
                    pixels.min() < 0 or pixels.max() > 255):
                skipped += 1
                continue
            faces[usage].append(pixels.astype(np.uint8))
            labels[usage].append(emotion)
    return {u: (np.array(labels[u], dtype=np.int64), np.stack(faces[u])) for u in USAGES if faces[u]}, skipped


def read_release(root: Path, usages: set[str]) -> dict[str, tuple[list[Path], np.ndarray, np.ndarray]]:
    """{Usage: (files, emotion ids, faces N x 2304 uint8)} of the release's images of `usages`."""
    files: dict[str, list[tuple[Path, int]]] = {u: [] for u in usages}
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        label = FOLDER_LABELS.get(folder.name.lower())
        if label is None:
            continue
        for file in sorted(folder.iterdir()):
            match = IMAGE_NAME.match(file.name)
            if match and match.group(1) in usages:
                files[match.group(1)].append((file, label))
    out = {}
    for usage, items in files.items():
        if not items:
            raise SystemExit(f"no {usage}_N image under {root}/<part>/<emotion>/")
        faces = np.stack([np.asarray(open_image(file, 1)).reshape(-1) for file, _ in items])
        out[usage] = ([file for file, _ in items], np.array([label for _, label in items]), faces)
    return out


def nearest(rows: np.ndarray, pool: np.ndarray, shortlist: int = 16, block: int = 256
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of the nearest pool face by MAE, its MAE, the second-best MAE) for each row, both searched
    among the `shortlist` pool faces nearest by Euclidean distance."""
    pool_f = pool.astype(np.float32)
    pool_sq = (pool_f ** 2).sum(1)
    k = min(shortlist, len(pool))
    best, best_mae, second_mae = [], [], []
    for start in range(0, len(rows), block):
        x = rows[start:start + block]
        x_f = x.astype(np.float32)
        d2 = pool_sq[None, :] - 2.0 * (x_f @ pool_f.T)  # + |x|^2, the same for every candidate of a row
        cand = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(pool) else np.tile(np.arange(k), (len(x), 1))
        mae = np.abs(pool[cand].astype(np.int16) - x[:, None, :].astype(np.int16)).mean(2)
        order = np.argsort(mae, axis=1)
        rank = np.arange(len(x))
        best.append(cand[rank, order[:, 0]])
        best_mae.append(mae[rank, order[:, 0]])
        second_mae.append(mae[rank, order[:, 1]] if k > 1 else np.full(len(x), np.inf))
    return np.concatenate(best), np.concatenate(best_mae), np.concatenate(second_mae)


def compare(csv_path: Path, release: Path, threshold: float, shortlist: int) -> dict:
    """The numbers of the section, per Usage and over all rows."""
    rows, skipped = read_rows(csv_path)
    if not rows:
        raise SystemExit(f"{csv_path}: no complete row")
    pools = read_release(release, set(rows))
    splits: dict[str, dict] = {}
    pairs_mae, pairs_max, pairs_psnr, all_best, all_second = [], [], [], [], []
    for usage, (labels, faces) in rows.items():
        files, pool_labels, pool = pools[usage]
        idx, best, second = nearest(faces, pool, shortlist)
        matched = best <= threshold
        diff = np.abs(pool[idx].astype(np.int16) - faces.astype(np.int16))
        mse = (diff.astype(np.float64) ** 2).mean(1)
        psnr = np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)), np.inf)
        splits[usage] = {"rows": len(faces), "pool": len(pool), "matched": int(matched.sum()),
                         "same_emotion": int((pool_labels[idx] == labels)[matched].sum()),
                         "distinct_files": len({files[i] for i in idx[matched]})}
        pairs_mae.append(best[matched])
        pairs_max.append(diff.max(1)[matched])
        pairs_psnr.append(psnr[matched])
        all_best.append(best)
        all_second.append(second)
    mae, peak, psnr = (np.concatenate(a) for a in (pairs_mae, pairs_max, pairs_psnr))
    best, second = np.concatenate(all_best), np.concatenate(all_second)
    quantiles = (0, 1, 5, 50, 95, 99, 100)
    for name, values in (("best", best), ("second-best", second)):
        shown = ", ".join(f"{q}%: {v:.2f}" for q, v in zip(quantiles, np.percentile(values, quantiles)))
        print(f"{name} MAE over {len(values):,} rows: {shown}", file=sys.stderr)
    out = {"splits": splits, "skipped": skipped, "threshold": threshold, "shortlist": shortlist,
           "unmatched_best_min": float(best[best > threshold].min()) if (best > threshold).any() else None,
           "second_min": float(second.min()), "second_p5": float(np.percentile(second, 5)),
           "best_max_matched": float(mae.max()) if mae.size else None}
    if mae.size:
        out.update(mae_median=float(np.median(mae)), mae_p95=float(np.percentile(mae, 95)),
                   max_abs=int(peak.max()), max_abs_median=float(np.median(peak)),
                   psnr_median=float(np.median(psnr)), psnr_min=float(psnr.min()))
    return out


def section(r: dict, machine: str) -> str:
    """The BENCHMARKS.md section: one row per Usage, then the pixel differences of the matched pairs."""
    lines = [f"Machine: {machine}. Each complete CSV row is matched to the release image of the same Usage "
             f"nearest by mean absolute difference (MAE, gray levels; searched among the {r['shortlist']} "
             f"nearest by Euclidean distance) and counts as found when that MAE is at most "
             f"{r['threshold']:g}.", "",
             "| Usage | CSV rows | release images | found | same emotion folder | distinct files |",
             "|---|---|---|---|---|---|"]
    for usage, s in r["splits"].items():
        same = f"{s['same_emotion']:,} ({s['same_emotion'] / s['matched']:.2%})" if s["matched"] else "-"
        lines.append(f"| {usage} | {s['rows']:,} | {s['pool']:,} | {s['matched']:,} ({s['matched'] / s['rows']:.2%}) "
                     f"| {same} | {s['distinct_files']:,} |")
    lines.append("")
    if "mae_median" in r:
        lines.append(f"- Found pairs: MAE median {r['mae_median']:.2f}, 95th percentile {r['mae_p95']:.2f}, "
                     f"largest {r['best_max_matched']:.2f} gray levels; largest absolute pixel difference "
                     f"{r['max_abs']} (median over pairs {r['max_abs_median']:.0f}); PSNR median "
                     f"{r['psnr_median']:.1f} dB, lowest {r['psnr_min']:.1f} dB.")
    unmatched = "none" if r["unmatched_best_min"] is None else f"{r['unmatched_best_min']:.2f}"
    lines.append(f"- Separation: the second-best MAE is at least {r['second_min']:.2f} (5th percentile "
                 f"{r['second_p5']:.2f}); the lowest best MAE above the threshold: {unmatched}.")
    if r["skipped"]:
        lines.append(f"- {r['skipped']:,} CSV line(s) skipped (cut short or malformed).")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", type=Path, help="fer2013.csv or a part of it")
    p.add_argument("release", type=Path, help="the image-folder release (train/, test/, ...)")
    p.add_argument("--threshold", type=float, default=8.0, help="largest MAE (gray levels) of a match")
    p.add_argument("--shortlist", type=int, default=16, help="Euclidean nearest faces compared by MAE")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    result = compare(args.csv, args.release, args.threshold, args.shortlist)
    text = section(result, describe())
    print(text)
    if not args.no_append:
        print(f"written to {write_section(TITLE, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
