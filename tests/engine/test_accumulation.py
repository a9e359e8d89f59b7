import torch

from deepvision.api import train
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def test_global_batch_by_gradient_accumulation_matches_the_big_batch(tmp_path):
    base = tiny_config(1, max_samples=416, val_fraction=0.0)  # 416 = 6 x 64 + 32: a short last group
    base["data"]["val"] = None
    base["optim"] = {"name": "sgd", "lr": 0.05}  # plain SGD: the update is linear in the gradient
    base["train"]["amp"] = "off"  # float32: bf16 rounds a batch of 64 and two of 32 differently
    big = train({**base, "data": {**base["data"], "batch_size": 64}}, out=tmp_path, name="big")
    small = {**base, "data": {**base["data"], "batch_size": 32}, "train": {**base["train"], "global_batch": 64}}
    accum = train(small, out=tmp_path, name="accum")
    assert RunDir(accum.run_dir).read_config().train.grad_accum == 2
    a = load_checkpoint(big.run_dir / "checkpoints" / "last.pt")["model_state"]
    b = load_checkpoint(accum.run_dir / "checkpoints" / "last.pt")["model_state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
