"""Shared fixtures. Tests run on the CPU with data the project generates, the shared MNIST test set
(../shared/datasets/mnist, or $DEEPVISION_MNIST), or data bundled in packages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("DEEPVISION_MNIST", REPO.parent / "shared" / "datasets" / "mnist"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A folder with the MNIST test pair: the real shared one when present, else digits as idx."""
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return SHARED_MNIST
    from deepvision.data.builtin_sources import digits_images
    from tests.helpers import write_idx

    images, labels = digits_images(28)
    root = tmp_path_factory.mktemp("mnist")
    write_idx(root / "t10k-images-idx3-ubyte.gz", images, 2051)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8), 2049)
    return root


@pytest.fixture
def run_cli(capsys):
    """Run `deepvision ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from deepvision.cli.main import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run
