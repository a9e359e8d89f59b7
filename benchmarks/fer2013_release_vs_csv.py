"""How far the image-folder release of FER2013 is from the pixels of Kaggle's fer2013.csv.

CSV is fer2013.csv or any part of it (rows `emotion,pixels,Usage`; a copy cut mid-row keeps every
complete row, the rest are counted and skipped). RELEASE is the image-folder release read as
`deepvision fer2013 build` reads it: every `Training_N`, `PrivateTest_N`, `PublicTest_N` image under
RELEASE/<part>/<emotion>/, the name prefix giving the Usage (augmented copies such as
`Training_N.jpg0.jpg` are left out, as the build leaves them out). Only the Usages the CSV holds are read.

For each CSV row the script finds its face among the release images of the same Usage: the one whose
pixels correlate best with the row's (Pearson r over the 2,304 pixels, every image of the Usage, one
float32 matrix product per block of rows). Correlation, not the mean absolute difference (MAE), because
the release's faces differ from the CSV's by a gray-level map: a row's nearest image by MAE is mostly
another face. The best r is the match when it is at least `--threshold`; the best and second-best r
show whether the threshold separates the two. Found pairs give the MAE (median, 95th percentile, gray
levels), the largest absolute pixel difference and the PSNR as stored, the MAE left after the
least-squares gray-level map (release ~ a * CSV + b) and after cv2.equalizeHist of the CSV face; the
matched file's emotion folder is compared with the row's emotion.

    python benchmarks/fer2013_release_vs_csv.py fer2013.csv FER2013/

The table replaces this script's section of BENCHMARKS.md (`--no-append` only prints it).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
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


def standardized(faces: np.ndarray) -> np.ndarray:
    """Each face (a row) as float32 with mean 0 and norm 1: the dot product of two is their correlation."""
    x = faces.astype(np.float32)
    x -= x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def nearest(rows: np.ndarray, pool: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of the pool face most correlated with each row, that correlation, the second-best one)."""
    pool_z = standardized(pool)
    best, best_r, second_r = [], [], []
    for start in range(0, len(rows), block):
        r = standardized(rows[start:start + block]) @ pool_z.T
        top = np.argpartition(-r, 1, axis=1)[:, :2] if r.shape[1] > 1 else np.zeros((len(r), 1), dtype=int)
        vals = np.take_along_axis(r, top, 1)
        first = vals.argmax(1)
        rank = np.arange(len(r))
        best.append(top[rank, first])
        best_r.append(vals[rank, first])
        second_r.append(vals[rank, 1 - first] if top.shape[1] > 1 else np.full(len(r), -1.0))
    return np.concatenate(best), np.concatenate(best_r), np.concatenate(second_r)


def linear_fit_mae(csv_faces: np.ndarray, release_faces: np.ndarray) -> np.ndarray:
    """Per pair, the MAE left after the least-squares gray-level map release ~ a * csv + b."""
    x, y = csv_faces.astype(np.float64), release_faces.astype(np.float64)
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    a = (xc * yc).sum(1, keepdims=True) / np.maximum((xc ** 2).sum(1, keepdims=True), 1e-9)
    return np.abs(yc - a * xc).mean(1)


def equalized_mae(csv_faces: np.ndarray, release_faces: np.ndarray) -> np.ndarray:
    """Per pair, the MAE between the release face and the CSV face after cv2.equalizeHist."""
    eq = np.stack([cv2.equalizeHist(f.reshape(SIDE, SIDE)).reshape(-1) for f in csv_faces])
    return np.abs(eq.astype(np.int16) - release_faces.astype(np.int16)).mean(1)


def compare(csv_path: Path, release: Path, threshold: float) -> dict:
    """The numbers of the section, per Usage and over all rows."""
    rows, skipped = read_rows(csv_path)
    if not rows:
        raise SystemExit(f"{csv_path}: no complete row")
    pools = read_release(release, set(rows))
    splits: dict[str, dict] = {}
    keys = ("mae", "max_abs", "psnr", "r", "linear_mae", "equalized_mae")
    pairs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    all_best, all_second = [], []
    for usage, (labels, faces) in rows.items():
        files, pool_labels, pool = pools[usage]
        idx, best, second = nearest(faces, pool)
        found = best >= threshold
        csv_m, rel_m = faces[found], pool[idx[found]]
        diff = np.abs(rel_m.astype(np.int16) - csv_m.astype(np.int16))
        mse = (diff.astype(np.float64) ** 2).mean(1)
        splits[usage] = {"rows": len(faces), "pool": len(pool), "matched": int(found.sum()),
                         "same_emotion": int((pool_labels[idx] == labels)[found].sum()),
                         "distinct_files": len({files[i] for i in idx[found]})}
        pairs["mae"].append(diff.mean(1))
        pairs["max_abs"].append(diff.max(1, initial=0))
        pairs["psnr"].append(np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)), np.inf))
        pairs["r"].append(best[found])
        pairs["linear_mae"].append(linear_fit_mae(csv_m, rel_m))
        pairs["equalized_mae"].append(equalized_mae(csv_m, rel_m))
        all_best.append(best)
        all_second.append(second)
    m = {k: np.concatenate(v) for k, v in pairs.items()}
    best, second = np.concatenate(all_best), np.concatenate(all_second)
    quantiles = (0, 1, 5, 50, 95, 99, 100)
    for name, values in (("best", best), ("second-best", second)):
        shown = ", ".join(f"{q}%: {v:.3f}" for q, v in zip(quantiles, np.percentile(values, quantiles)))
        print(f"{name} correlation over {len(values):,} rows: {shown}", file=sys.stderr)
    out = {"splits": splits, "skipped": skipped, "threshold": threshold,
           "unmatched_best_max": float(best[~(best >= threshold)].max()) if (best < threshold).any() else None,
           "second_max": float(second.max()), "second_p95": float(np.percentile(second, 95))}
    if m["mae"].size:
        out.update(r_min=float(m["r"].min()), r_median=float(np.median(m["r"])),
                   mae_median=float(np.median(m["mae"])), mae_p95=float(np.percentile(m["mae"], 95)),
                   max_abs=int(m["max_abs"].max()), max_abs_median=float(np.median(m["max_abs"])),
                   psnr_median=float(np.median(m["psnr"])), psnr_min=float(m["psnr"].min()),
                   linear_mae_median=float(np.median(m["linear_mae"])),
                   linear_mae_p95=float(np.percentile(m["linear_mae"], 95)),
                   equalized_mae_median=float(np.median(m["equalized_mae"])))
    return out


def section(r: dict, machine: str) -> str:
    """The BENCHMARKS.md section: one row per Usage, then the pixel differences of the found pairs."""
    lines = [f"Machine: {machine}. Each complete CSV row is matched to the release image of the same Usage "
             f"whose pixels correlate best with its own (Pearson r over the 2,304 pixels) and counts as "
             f"found when r >= {r['threshold']:g}. Differences are in gray levels (0-255).", "",
             "| Usage | CSV rows | release images | found | same emotion folder | distinct files |",
             "|---|---|---|---|---|---|"]
    for usage, s in r["splits"].items():
        same = f"{s['same_emotion']:,} ({s['same_emotion'] / s['matched']:.2%})" if s["matched"] else "-"
        lines.append(f"| {usage} | {s['rows']:,} | {s['pool']:,} | {s['matched']:,} ({s['matched'] / s['rows']:.2%}) "
                     f"| {same} | {s['distinct_files']:,} |")
    lines.append("")
    if "mae_median" in r:
        lines += [f"- Found pairs, as stored: MAE median {r['mae_median']:.2f}, 95th percentile {r['mae_p95']:.2f}; "
                  f"largest absolute pixel difference {r['max_abs']} (median over pairs {r['max_abs_median']:.0f}); "
                  f"PSNR median {r['psnr_median']:.1f} dB, lowest {r['psnr_min']:.1f} dB; r median "
                  f"{r['r_median']:.3f}, lowest {r['r_min']:.3f}.",
                  f"- After the least-squares gray-level map (release ~ a * CSV + b) per pair: MAE median "
                  f"{r['linear_mae_median']:.2f}, 95th percentile {r['linear_mae_p95']:.2f}; CSV face "
                  f"histogram-equalized (cv2.equalizeHist): MAE median {r['equalized_mae_median']:.2f}."]
    unmatched = "none" if r["unmatched_best_max"] is None else f"{r['unmatched_best_max']:.3f}"
    lines.append(f"- Separation: the second-best r is at most {r['second_max']:.3f} (95th percentile "
                 f"{r['second_p95']:.3f}); the highest best r under the threshold: {unmatched}.")
    if r["skipped"]:
        lines.append(f"- {r['skipped']:,} CSV line(s) skipped (cut short or malformed).")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", type=Path, help="fer2013.csv or a part of it")
    p.add_argument("release", type=Path, help="the image-folder release (train/, test/, ...)")
    p.add_argument("--threshold", type=float, default=0.9, help="lowest correlation of a match")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = p.parse_args()
    result = compare(args.csv, args.release, args.threshold)
    text = section(result, describe())
    print(text)
    if not args.no_append:
        print(f"written to {write_section(TITLE, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
