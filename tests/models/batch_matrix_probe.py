"""Run models through training steps and evaluation passes at changing batch sizes, one after another.

    python tests/models/batch_matrix_probe.py NAME:SIDE [NAME:SIDE ...]

For each model: build it at its real widths for a SIDE x SIDE input, prepare it the way the trainer
does on the CPU (default memory format), take SGD steps with a full, a partial and a one-sample batch
(forward, backward, step), then score the same batch sizes in eval mode in that format and in NCHW
(the evaluation and export paths). Prints `start NAME` before and `ok NAME` after each model, so a
parent process can tell which model a native crash killed and go on with the rest.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from deepvision.models import create_model, get_model_spec
from deepvision.models.memory_format import to_channels_last

TRAIN_BATCHES = (4, 3, 2)  # full, partial (odd, as after a batch-size change), smallest trainable
EVAL_BATCHES = (4, 3, 1)


def probe(name: str, side: int) -> None:
    torch.manual_seed(0)
    spec = get_model_spec(name)
    channels = spec.input_size[0]
    sized = {"input_size": side} if "input_size" in spec.options else {}
    model = create_model(name, num_classes=5, in_channels=channels, **sized)
    model = to_channels_last(model, "cpu").train()  # the trainer's CPU default
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for b in TRAIN_BATCHES:
        x = torch.randn(b, channels, side, side).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), torch.arange(b) % 5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            raise AssertionError(f"{name}: loss {loss.item()} at batch {b}")
    model.eval()
    with torch.no_grad():
        for fmt in (torch.channels_last, torch.contiguous_format):
            model = model.to(memory_format=fmt)
            for b in EVAL_BATCHES:
                out = model(torch.randn(b, channels, side, side).contiguous(memory_format=fmt))
                if out.shape != (b, 5):
                    raise AssertionError(f"{name}: output {tuple(out.shape)} for batch {b}")


def main(args: list[str]) -> None:
    torch.set_num_threads(2)  # the crash needs >= 2 threads; the same on every machine
    for arg in args:
        name, _, side = arg.rpartition(":")
        print(f"start {name}", flush=True)
        probe(name, int(side))
        print(f"ok {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
