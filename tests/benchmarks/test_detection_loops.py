"""The detection benchmark's own training loop trains the weights `deepvision train` trains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("DEEPVISION_CPU_THREADS", "1")
    import detection_synthetic

    for name, options in detection_synthetic.MODELS.items():  # the benchmark's --tiny sizes
        small = {"size": 96} if name.startswith("ssd") else {"min_size": 96, "max_size": 128}
        monkeypatch.setitem(detection_synthetic.MODELS, name, {**options, **small})
    yield detection_synthetic
    sys.modules.pop("detection_synthetic", None)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"])
def test_benchmark_loop_and_trainer_train_identical_weights(bench, name, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        built = bench.make_data(tmp_path, 16, 96)
        args = argparse.Namespace(batch=4, workers=0, epochs=1, augment="auto", amp=False, eval_every=1,
                                  out=str(tmp_path / "runs"), loop="task")
        ours = bench.accuracy(name, built, args, torch.device("cpu"))["_model"].state_dict()
        args.loop = "trainer"
        bench.accuracy(name, built, args, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    (last,) = (tmp_path / "runs").glob("*/checkpoints/last.pt")
    trained = torch.load(last, map_location="cpu", weights_only=True)["model_state"]
    assert trained.keys() == ours.keys()
    assert [k for k in ours if not torch.equal(trained[k], ours[k])] == []
