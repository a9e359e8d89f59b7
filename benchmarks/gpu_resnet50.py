"""The GPU path in one run: ResNet-50 training images/s on one NVIDIA GPU.

Setting: ResNet-50 (`tv:resnet50`, `resnet50_ref`), 224 x 224, AMP bf16, channels_last, batch 256, SGD
momentum 0.9, 10 classes. Each figure is images/s over the timed steps after warm-up; the engine figures
are the training phase of the second epoch of `deepvision.train` (first epoch warms up, cuDNN autotunes).

* engine, synthetic: uint8 tensors resident on the GPU (pure compute: the ceiling for the loaders)
* engine, records CPU decode: 256-px JPEG records (generated here), random 224 crop + mirror, decoded and
  augmented by worker processes (`decoder: auto`, libjpeg-turbo), normalised on the GPU
* engine, records GPU decode: the same records, `data.options.decoder: nvjpeg` (batched nvJPEG decode,
  plans executed on the GPU)
* engine, synthetic + torch.compile
* torchvision reference loop: the essential loop of `references/classification/train.py`
  (`train_one_epoch`: to(device), forward + loss under autocast, zero_grad, backward, step, top-1/top-5
  accuracy and `loss.item()` every step) on the same synthetic tensors, same model, bf16, channels_last
* DALI: `fn.readers.mxnet` over the same records, `fn.decoders.image(device="mixed")` and
  `fn.crop_mirror_normalize` (random crop + mirror) feeding the same loop (skipped unless
  `nvidia.dali` imports: pip install nvidia-dali-cuda120)
* LeNet on MNIST-sized data resident on the GPU (the airbench style), through the engine; the real
  digits when --mnist names a folder with the idx files, else synthetic 28 x 28 digits

Goals: records / synthetic >= 0.9 with the best decoder; engine / reference loop >= 1.0;
best deepvision loader / DALI >= 0.9. The table goes to BENCHMARKS.md with the card named.

    python benchmarks/gpu_resnet50.py                 # about 5 minutes on an H100/H200
    python benchmarks/gpu_resnet50.py --quick         # fewer steps, no compile of resnet50_ref: ~2 minutes
    python benchmarks/gpu_resnet50.py --device cpu --quick --batch 4 --steps 2   # proves the script on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from imagenet_throughput import make_records
from machine import describe, write_section

MODELS = ("tv:resnet50", "resnet50_ref")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
CLASSES = 10


def engine_config(model: str, source: str, rec: Path | None, a: argparse.Namespace, *, decoder: str = "auto",
                  compile: bool = False) -> dict:
    data: dict = {"batch_size": a.batch, "image_size": 224, "val": None, "test": None, "workers": a.workers,
                  "last_batch": "drop", "mean": MEAN, "std": STD}
    if source == "synthetic":
        data.update(source="synthetic", train="train", options={"samples": a.batch * a.steps, "classes": CLASSES})
    else:
        data.update(source="rec", train=str(rec), resize=256, augment={"rand_crop": True, "rand_mirror": True},
                    options={"decoder": decoder})
    return {
        "name": f"{model.replace(':', '_')}-{source}-{decoder}{'-compiled' if compile else ''}",
        "model": {"name": model, "num_classes": CLASSES},
        "data": data,
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
        "train": {"epochs": 2, "max_steps": a.steps, "device": a.device, "amp": "auto", "channels_last": None,
                  "compile": compile, "tensorboard": False, "log_every": 10_000, "progress": "lines"},
        "checkpoint": {"period": 1000},
    }


def engine(cfg: dict, out: Path) -> float:
    from deepvision.api import train

    with contextlib.redirect_stdout(io.StringIO()):
        run = train(cfg, out=out)
    return float(run.history[-1]["samples_per_s"])


def make_model(name: str, device: torch.device, channels_last: bool) -> nn.Module:
    from deepvision.models import create_model

    model = create_model(name, num_classes=CLASSES).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """references/classification/utils.py: accuracy over the k top predictions."""
    with torch.inference_mode():
        maxk = max(topk)
        _, pred = output.topk(maxk, 1, True, True)
        correct = pred.t().eq(target[None])
        return [correct[:k].flatten().sum(dtype=torch.float32) * (100.0 / target.size(0)) for k in topk]


def reference_loop(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int,
                   warmup: int, device: torch.device, amp: bool) -> float:
    """torchvision's `train_one_epoch` (references/classification/train.py), minus its logger: images/s of
    the steps after `warmup`. bf16 autocast needs no GradScaler."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    seen, start = 0, None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        image, target = next(batches)
        image, target = image.to(device), target.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            output = model(image)
            loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        acc1, acc5 = accuracy(output, target, topk=(1, min(5, CLASSES)))
        loss.item(), acc1.item(), acc5.item()  # the metric logger's per-step host reads
        if i >= warmup:
            seen += image.shape[0]
    _sync(device)
    return seen / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batches(a: argparse.Namespace, device: torch.device, channels_last: bool
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The synthetic source's tensors (same generator and seed), normalised per batch on the device."""
    g = torch.Generator().manual_seed(0)
    n = a.batch * a.steps
    images = torch.randint(0, 256, (n, 3, 224, 224), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, CLASSES, (n,), generator=g).to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    step = 0
    while True:
        sl = slice((step % a.steps) * a.batch, (step % a.steps + 1) * a.batch)
        x = (images[sl].float() - mean) / std
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), labels[sl]
        step += 1


def dali_batches(rec: Path, a: argparse.Namespace, device: torch.device
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]] | None:
    """DALI's MXNet reader + mixed (nvJPEG) decode + random crop/mirror/normalise; None without DALI."""
    try:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIClassificationIterator, LastBatchPolicy
    except ImportError:
        return None

    @pipeline_def
    def pipe():
        jpegs, labels = fn.readers.mxnet(path=[str(rec)], index_path=[str(rec.with_suffix(".idx"))],
                                         random_shuffle=True, name="Reader")
        images = fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", crop=(224, 224),
                                          crop_pos_x=fn.random.uniform(range=(0.0, 1.0)),
                                          crop_pos_y=fn.random.uniform(range=(0.0, 1.0)),
                                          mean=[m * 255 for m in MEAN], std=[s * 255 for s in STD],
                                          mirror=fn.random.coin_flip())
        return images, labels.gpu()

    threads = a.workers or min(16, os.cpu_count() or 4)
    p = pipe(batch_size=a.batch, num_threads=threads, device_id=device.index or 0, seed=0, prefetch_queue_depth=3)
    p.build()
    it = DALIClassificationIterator(p, reader_name="Reader", last_batch_policy=LastBatchPolicy.DROP,
                                    auto_reset=True)

    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            for out in it:
                x = out[0]["data"].contiguous(memory_format=torch.channels_last)
                yield x, out[0]["label"].view(-1).long()

    return gen()


def lenet_config(a: argparse.Namespace) -> dict:
    mnist = Path(a.mnist) if a.mnist else None
    if mnist is not None and mnist.is_dir():
        data = {"source": "mnist", "root": str(mnist), "train": "train" if (any(mnist.glob("train-images*")))
                else "test", "test": None, "val": None, "mean": [0.1307], "std": [0.3081]}
    else:
        data = {"source": "synthetic", "train": "train", "val": None, "test": None,
                "options": {"samples": 60_000, "classes": 10, "size": 28, "channels": 1}}
    data.update(batch_size=a.lenet_batch, image_size=28)
    return {"name": "lenet-gpu", "model": {"name": "lenet"}, "data": data,
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
            "train": {"epochs": 3 if a.quick else 5, "device": a.device, "amp": "off", "tensorboard": False,
                      "log_every": 10_000, "progress": "lines"},
            "checkpoint": {"period": 1000}}


def measure(label: str, fn: Callable[[], float | None], results: dict) -> None:
    t0 = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # one failing variant must not lose the others' figures
        print(f"{label}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
              flush=True)
        results[label] = None
        return
    results[label] = value
    shown = "skipped" if value is None else f"{value:,.1f} images/s"
    print(f"{label}: {shown} ({time.perf_counter() - t0:.0f} s)", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu to check the script")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 40, 15 with --quick)")
    p.add_argument("--workers", type=int, default=None, help="record-loader processes (default: all cores, max 8)")
    p.add_argument("--quick", action="store_true", help="fewer steps; torch.compile only for tv:resnet50")
    p.add_argument("--mnist", default=os.environ.get("DEEPVISION_MNIST"), help="MNIST idx folder for LeNet")
    p.add_argument("--lenet-batch", type=int, default=512)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: compile,dali,lenet,reference,records")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    a = p.parse_args(argv)
    a.steps = a.steps or (15 if a.quick else 40)
    a.skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_resnet50.py: error: no CUDA GPU here; run it on a GPU machine (or --device cpu to check it)")
    gpu = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    r: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rec = None
        if "records" not in a.skip or "dali" not in a.skip:
            t0 = time.perf_counter()
            rec = make_records(tmp / "records", a.batch * a.steps)
            print(f"records: {rec} ({time.perf_counter() - t0:.0f} s to generate)", flush=True)
        runs = tmp / "runs"
        for model in MODELS:
            measure(f"{model} engine synthetic",
                    lambda m=model: engine(engine_config(m, "synthetic", None, a), runs), r)
            if "records" not in a.skip:
                measure(f"{model} engine records cpu-decode",
                        lambda m=model: engine(engine_config(m, "records", rec, a), runs), r)
                if gpu:
                    measure(f"{model} engine records gpu-decode",
                            lambda m=model: engine(engine_config(m, "records", rec, a, decoder="nvjpeg"), runs), r)
            if "compile" not in a.skip and not (a.quick and model != MODELS[0]):
                measure(f"{model} engine synthetic compiled",
                        lambda m=model: engine(engine_config(m, "synthetic", None, a, compile=True), runs), r)
            if "reference" not in a.skip:
                measure(f"{model} torchvision reference loop", lambda m=model: reference_loop(
                    make_model(m, device, gpu), synthetic_batches(a, device, gpu), a.steps, 5, device, gpu), r)
            if "dali" not in a.skip and gpu:
                def dali(m: str = model) -> float | None:
                    batches = dali_batches(rec, a, device)
                    if batches is None:
                        return None
                    return reference_loop(make_model(m, device, True), batches, a.steps, 5, device, True)
                measure(f"{model} DALI mxnet reader (reference loop)", dali, r)
        if "lenet" not in a.skip:
            measure("lenet engine tensors on device", lambda: engine(lenet_config(a), runs), r)
    text = report(a, r, gpu)
    print(text)
    if not a.no_append:
        print(f"written to {write_section('GPU path: ResNet-50 loaders, reference loop, DALI', text)}")


def report(a: argparse.Namespace, r: dict[str, float | None], gpu: bool) -> str:
    def f(key: str) -> str:
        v = r.get(key)
        return "-" if v is None else f"{v:,.0f}"

    def ratio(num: float | None, den: float | None) -> str:
        return "-" if not num or not den else f"{num / den:.2f}"

    card = torch.cuda.get_device_name(0) if gpu else "no GPU (CPU check run)"
    lines = [f"Card: **{card}**. Machine: {describe()}",
             f"Setting: 224 x 224, batch {a.batch}, {a.steps} timed steps, SGD momentum 0.9, "
             f"{'AMP bf16, channels_last' if gpu else 'fp32 (CPU)'}; records: 256-px JPEG q95 from "
             f"`imagenet_throughput.make_records`, random 224 crop + mirror; {a.workers or 'default'} CPU workers.",
             "",
             "| model | synthetic | records cpu-decode | records gpu-decode | best records / synthetic | compiled "
             "| tv reference loop | engine / reference | DALI | best deepvision loader / DALI |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in MODELS:
        syn = r.get(f"{m} engine synthetic")
        recs = [v for v in (r.get(f"{m} engine records cpu-decode"), r.get(f"{m} engine records gpu-decode")) if v]
        best = max(recs) if recs else None
        ref, dali = r.get(f"{m} torchvision reference loop"), r.get(f"{m} DALI mxnet reader (reference loop)")
        lines.append(f"| {m} | {f(f'{m} engine synthetic')} | {f(f'{m} engine records cpu-decode')} | "
                     f"{f(f'{m} engine records gpu-decode')} | {ratio(best, syn)} | "
                     f"{f(f'{m} engine synthetic compiled')} | {f(f'{m} torchvision reference loop')} | "
                     f"{ratio(syn, ref)} | {f(f'{m} DALI mxnet reader (reference loop)')} | {ratio(best, dali)} |")
    lines += ["", f"LeNet ({'MNIST' if a.mnist else 'synthetic 28 x 28'}, batch {a.lenet_batch}, tensors on the "
              f"device, engine): {f('lenet engine tensors on device')} samples/s.",
              "Goals: best records / synthetic >= 0.9; engine / reference >= 1.0; best loader / DALI >= 0.9. "
              "'-': not measured (skipped, failed, or DALI not installed)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
