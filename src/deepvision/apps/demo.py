"""`deepvision demo`: the embedded default, end to end with no download.

Trains LeNet on scikit-learn's handwritten digits (28x28, stratified train/val/test), evaluates it
on the held-out test split, writes a complete run directory, predicts one held-out image through
the same file-based path a user's image takes, and prints the test accuracy last.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PIL import Image

from deepvision.config.io import load_config
from deepvision.data.sources import load_data
from deepvision.errors import UserError
from deepvision.recipes import recipe_path


def run_demo(out: str | Path = "runs", overrides: list[str] | None = None, quiet: bool = False) -> dict[str, Any]:
    from deepvision.api import evaluate, predict, train

    t0 = time.perf_counter()
    cfg = load_config(recipe_path("demo"), overrides)
    result = train(cfg, out=out)
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
    seconds = time.perf_counter() - t0
    if not quiet:
        top = ", ".join(f"{c} ({p:.3f})" for c, p in pred.top)
        print(f"held-out image {sample}: true class {label}, predicted {top}")
        print(f"run directory: {run_dir}  ({seconds:.1f} s)")
        print(f"test accuracy: {metrics['rank1']:.4f}")
    return {"run_dir": str(run_dir), "test_accuracy": metrics["rank1"], "sample": str(sample),
            "sample_label": label, "prediction": pred.to_dict(), "seconds": seconds}
