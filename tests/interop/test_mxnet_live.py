"""Live parity against MXNet 1.9.1 at the reference sizes: runs only when MXNET_PYTHON names an interpreter
with MXNet (`make mxnet-venv` builds one; `make test-mxnet` runs the MXNet tests with it).

MXNet writes full-size checkpoints with random weights and its outputs on a fixed input
(tests/fixtures/mxnet/generate.py --full); each is imported both from the graph and onto the zoo
architecture, and both must give MXNet's outputs (max abs difference <= 1e-4, same argmax).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from deepvision.interop.mxnet_import import import_mxnet
from deepvision.runs.loading import load_run

MXNET_PYTHON = os.environ.get("MXNET_PYTHON")
pytestmark = [
    pytest.mark.mxnet,
    pytest.mark.skipif(not MXNET_PYTHON, reason="set MXNET_PYTHON to an interpreter with MXNet 1.9.1"),
]
GENERATE = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet" / "generate.py"
# generator name -> (deepvision model, builder options); None: graph import only
NETS = {
    "lenet": ("lenet", {}),
    "mlp": ("mlp", {}),
    "resnet_small": ("resnet50_ref", {}),  # --full: the reference ResNet50
    "alexnet_fc64": ("alexnet_ref", {"fc_units": 64}),
    "googlenet": ("googlenet_ref", {}),
    "squeezenet": ("squeezenet_ref", {}),
    "age_gender": ("age_gender_net", {}),
    "inception_bn_block": (None, {}),
    "operators": (None, {}),
    "gluon:resnet18_v1": ("tv:resnet18", {}),
    "gluon:resnet50_v2": ("resnet_ref", {}),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mxnet-full")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([MXNET_PYTHON, str(GENERATE), "--out", str(out), "--full", "--only", *NETS],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", list(NETS))
def test_live_parity(name, checkpoints, tmp_path):
    stem = name.split(":")[-1]
    io = np.load(checkpoints / f"{stem}-io.npz", allow_pickle=False)
    shape = io["input"].shape
    model, options = NETS[name]
    for target in (None, model) if model else (None,):
        result = import_mxnet(checkpoints / stem, 7, model=target, options=options, input_size=shape[1:],
                              out=tmp_path / f"run-{target or 'graph'}".replace(":", "_"), quiet=True)
        with torch.inference_mode():
            logits = load_run(result.run_dir).model(torch.from_numpy(io["input"])).numpy()
        probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
        assert np.abs(probs - io["probs"]).max() <= 1e-4, (name, target)
        assert (probs.argmax(1) == io["probs"].argmax(1)).all(), (name, target)
