"""`deepvision demo`: the embedded default, end to end with no download.

Trains LeNet on scikit-learn's handwritten digits (28x28, stratified train/val/test), evaluates it
on the held-out test split, writes a complete run directory, predicts one held-out image through
the same file-based path a user's image takes, and prints how long each part took and, last, the
test accuracy. LeNet is far too small to gain from several intra-op threads, and on a busy machine
extra threads cost more than they give (waiting on each other), so the demo trains on one thread.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from deepvision.config.io import load_config
from deepvision.data.sources import load_data
from deepvision.errors import UserError
from deepvision.recipes import recipe_path


def run_demo(out: str | Path = "runs", overrides: list[str] | None = None, quiet: bool = False,
             threads: int = 1) -> dict[str, Any]:
    from deepvision.api import evaluate, predict, train

    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = load_config(recipe_path("demo"), overrides)
        t_train = time.perf_counter()
        result = train(cfg, out=out)
        t_eval = time.perf_counter()
        run_dir = result.run_dir
        metrics = evaluate(run_dir, data="test", quiet=quiet)
        # One held-out digit, saved as a PNG and predicted from the file like any user image.
        test = load_data(cfg.data).test
        if test is None:
            raise UserError("the demo needs a test split: keep data.test_fraction above 0")
        image, label = test.images[0, 0].numpy(), int(test.labels[0])
        sample = run_dir / "sample_test_digit.png"
        Image.fromarray(image, "L").save(sample)
        pred = predict(run_dir, [sample], top=3)[0]
        t_end = time.perf_counter()
    finally:
        torch.set_num_threads(previous)
    timing = {"seconds": t_end - t0, "train_seconds": t_eval - t_train, "eval_seconds": t_end - t_eval,
              "epochs": len(result.history), "threads": threads, "load_average": _load()}
    if not quiet:
        top = ", ".join(f"{c} ({p:.3f})" for c, p in pred.top)
        print(f"held-out image {sample}: true class {label}, predicted {top}")
        print(f"run directory: {run_dir}")
        print(measured(timing))
        print(f"test accuracy: {metrics['rank1']:.4f}")
    return {"run_dir": str(run_dir), "test_accuracy": metrics["rank1"], "sample": str(sample),
            "sample_label": label, "prediction": pred.to_dict(), **timing}


def measured(t: dict[str, Any]) -> str:
    """Two lines: the demo's time, its parts, and the conditions it ran under."""
    n = t["epochs"]
    load = f", load average {t['load_average']:.1f}" if t["load_average"] is not None else ""
    threads = f"{t['threads']} CPU thread{'s' if t['threads'] != 1 else ''}"
    return (f"measured: {t['seconds']:.1f} s (training, {n} epoch{'s' if n != 1 else ''}: "
            f"{t['train_seconds']:.1f} s; evaluation and prediction: {t['eval_seconds']:.1f} s)\n"
            f"          on {threads}{load}; Python and PyTorch start-up not included")


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
