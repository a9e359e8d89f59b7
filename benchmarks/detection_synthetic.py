"""Detection on synthetic shapes: accuracy from scratch, training speed against torchvision's reference loop,
inference images/s and video frames/s.

Data: `deepvision detection fake --format voc` (textured 128-px images, discs/squares/triangles of 10..64 px,
VOC-style difficult flags), built with a 75/25 split by image.

1. Accuracy: each model is trained from scratch for `--epochs` (AdamW 2e-3, 1-epoch warm-up from 0.1x then cosine,
   per step; seed 0; augmentation as torchvision's references/detection recipes: flip + zoom-out + SSD IoU crop
   for SSD models, flip only for Faster R-CNN, `--augment` to choose) and scored on the test split every
   `--eval-every` epochs: VOC mAP@0.5 (all-point) and COCO mAP. Reported: the final numbers and the training
   time at which VOC mAP@0.5 first reached 0.90. `--loop task` (the default) is this script's own loop over the
   detection Task's pieces; `--loop trainer` runs `deepvision.api.train`, what `deepvision train` runs. Both use
   the same seeds (initialisation, epoch order, augmentation, and the trainer's stream for training randomness,
   which Faster R-CNN's samplers draw from), optimizer and the library's Schedule, so on the CPU they train
   identical weights (tests/benchmarks/test_detection_loops.py checks it on a tiny set); the training seconds
   are those of the loop that ran (`--loop trainer`: the trainer's own per-epoch training time).
2. Training speed: epochs of the deepvision loop (a BatchLoader over DetectionSource + the detection Task's
   to_device/train_loss + the loss meter: what the engine runs per batch, without the trainer's logging and
   callbacks) alternate with epochs of torchvision's references/detection/train.py loop (a torch DataLoader
   over PIL images, v2 flip, `tuple(zip(*batch))` collation, `sum(loss_dict.values())`; its MetricLogger left
   out, which can only favour it) on the same model, data, batch size, optimizer and workers; the ratio is the
   median of the per-round ratios of images/s.
3. Inference: `deepvision detect`'s Detector (long side cap, threshold 0.5) on the test images, one at a time,
   and on a video made of them (frames/s including decoding, drawing and encoding).

`--loop trainer` runs step 1 through `deepvision.api.train` (needs the task-generic trainer: `task: detection`).

    python benchmarks/detection_synthetic.py                   # CPU: 40 epochs x 38 steps of 8 images per model
    python benchmarks/detection_synthetic.py --models ssdlite320_mobilenet_v3_large --input 128 --epochs 100 \
        --eval-every 10 --skip speed,inference                # the 2-core CPU accuracy run in BENCHMARKS.md (~30 min)
    python benchmarks/detection_synthetic.py --models fasterrcnn_mobilenet_v3_large_320_fpn --input 320 \
        --proposals 256 --images 1600 --epochs 12 --eval-every 2 --skip speed,inference  # ~1 h: 0.90 at epoch 4
    python benchmarks/detection_synthetic.py --tiny --no-append  # smoke run
    python benchmarks/detection_synthetic.py --device cuda --amp --models fasterrcnn_resnet50_fpn --images 800
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepvision.config.schema import Config, DataConfig, ModelConfig, ScheduleConfig
from deepvision.datasets.detection import build_dataset, make_fake
from deepvision.datasets.detection.build import read_annotations
from deepvision.engine.schedules import Schedule
from deepvision.engine.tasks.detection import DetectionMeter, DetectionTask
from deepvision.engine.trainer import _training_seed as training_seed
from deepvision.models import create_model, get_model_spec

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

MODELS = {
    "ssdlite320_mobilenet_v3_large": {"detections_per_img": 100},
    "fasterrcnn_mobilenet_v3_large_320_fpn": {},
    "fasterrcnn_resnet50_fpn": {"min_size": 512, "max_size": 683},
}
FASTER_RCNN = [name for name in MODELS if name.startswith("fasterrcnn")]
TARGET = 0.90
SEED = 0  # model initialisation, epoch order and augmentation, in both loops
OPTIM = {"name": "adamw", "lr": 2e-3, "weight_decay": 5e-4}
SCHEDULE = {"name": "cosine", "warmup_epochs": 1}  # warm-up from ScheduleConfig's 0.1x, per step


def make_data(root: Path, images: int, size: int) -> Path:
    fake = make_fake(root / "voc", "voc", images=images, size=size, seed=0)
    build_dataset(read_annotations("voc", fake.build_args[1:]), root / "built")
    return root / "built"


def config(name: str, built: Path, batch: int, workers: int, epochs: int, augment: str = "flip") -> Config:
    if augment == "auto":  # torchvision's references/detection: `ssd`/`ssdlite` augmentation for SSD, hflip otherwise
        augment = "ssd" if name.startswith("ssd") else "flip"
    options = {"iou_crop": True, "zoom_out": True, "zoom_out_max": 2.0} if augment == "ssd" else {}
    cfg = Config(model=ModelConfig(name=name, args=dict(MODELS.get(name, {}))),
                 data=DataConfig(source="detection", root=str(built), batch_size=batch, workers=workers, val="test",
                                 options=options))
    cfg.data.augment.rand_mirror = True
    cfg.train.epochs = epochs
    return cfg


def build(cfg: Config, task: DetectionTask, classes: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return create_model(cfg.model.name, num_classes=task.num_outputs(classes), **cfg.model.args).to(device)


def evaluate(task: DetectionTask, model, loader, device, amp) -> dict[str, float]:
    meter = DetectionMeter(task.classes)
    for batch in loader:
        x, y = task.to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out, _ = task.eval_outputs(model, x, y)
        meter.update(out, y)
    return meter.compute()


def accuracy(name: str, built: Path, args, device: torch.device) -> dict[str, float]:
    """Step 1: train from scratch with the Task pieces (or the trainer) and score the test split."""
    if args.loop == "trainer":
        from deepvision.api import train
        from deepvision.config.coerce import to_dict

        cfg = config(name, built, args.batch, args.workers, args.epochs, args.augment)
        d = to_dict(cfg)
        d.update(task="detection", optim=dict(OPTIM), schedule=dict(SCHEDULE))
        d["checkpoint"] = {"monitor": "val_map50"}
        d["train"].update(device=str(device), amp="bf16" if args.amp else "off", tensorboard=False, clip_grad_norm=10.0,
                          seed=SEED)
        t0 = time.perf_counter()
        result = train(d, out=args.out or tempfile.mkdtemp())
        last, trained, to_target = result.last, 0.0, math.nan
        for row in result.history:  # seconds: the training phase of each epoch (validation excluded)
            trained += float(row["seconds"])
            if math.isnan(to_target) and float(row.get("val_map50") or 0) >= TARGET:
                to_target = trained
        print(f"  {name}: run folder {result.run_dir}, best epoch {result.best_epoch} ({result.best_value})")
        return {"epochs": args.epochs, "seconds": trained, "wall": time.perf_counter() - t0,
                "map50": last.get("val_map50", math.nan), "map": last.get("val_map", math.nan),
                "to_target": to_target}
    cfg = config(name, built, args.batch, args.workers, args.epochs, args.augment)
    task = DetectionTask(cfg)
    spec = get_model_spec(name)
    data = task.load_data(("train", "val"), spec.input_size)
    loaders = data.loaders(("train", "val"), seed=SEED, device=device)
    model = build(cfg, task, len(data.classes), device)
    # the trainer's stream for training randomness (Faster R-CNN's RPN and RoI samplers draw from it)
    torch.manual_seed(training_seed(SEED, 0))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=OPTIM["lr"], weight_decay=OPTIM["weight_decay"])
    schedule = Schedule(ScheduleConfig(**SCHEDULE), OPTIM["lr"], args.epochs)  # the trainer's rate at each step
    steps = len(loaders["train"])
    trained, to_target, scores = 0.0, math.nan, {"map50": math.nan, "map": math.nan}
    curve = []
    for epoch in range(args.epochs):
        loaders["train"].set_epoch(epoch)
        t0 = time.perf_counter()
        for i, batch in enumerate(loaders["train"]):
            for group in opt.param_groups:
                group["lr"] = schedule(epoch, i / steps)
            x, y = task.to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                loss, _ = task.train_loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
        trained += time.perf_counter() - t0
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            scores = evaluate(task, model, loaders["val"], device, args.amp)
            print(f"  {name} epoch {epoch + 1}: VOC mAP@0.5 {scores['map50']:.3f}, COCO mAP {scores['map']:.3f}, "
                  f"{trained:.0f} s training", flush=True)
            curve.append({"epoch": epoch + 1, "map50": scores["map50"], "map": scores["map"], "seconds": trained})
            if math.isnan(to_target) and scores["map50"] >= TARGET:
                to_target = trained
    for loader in loaders.values():
        loader.close()
    return {"epochs": args.epochs, "seconds": trained, "map50": scores["map50"], "map": scores["map"],
            "to_target": to_target, "_model": model, "_task": task, "curve": curve}


class ReferenceDataset(torch.utils.data.Dataset):
    """torchvision's reference recipe on our index: PIL image, v2 horizontal flip, float tensor, target dict."""

    def __init__(self, images) -> None:
        from torchvision.transforms import v2 as T

        self.images = images
        self.transform = T.Compose([T.RandomHorizontalFlip(0.5), T.PILToTensor(), T.ToDtype(torch.float, scale=True)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image
        from torchvision import tv_tensors

        im = self.images[i]
        img = Image.open(im.file).convert("RGB")
        keep = ~im.difficult
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(im.pixel_boxes()[keep]), format="XYXY",
                                         canvas_size=(img.height, img.width))
        return self.transform(img, {"boxes": boxes, "labels": torch.from_numpy(im.labels[keep])})


def reference_epoch(model, loader, opt, device, amp) -> tuple[int, float]:
    """The body of torchvision's references/detection/engine.py train_one_epoch (without its logger)."""
    model.train()
    seen, t0 = 0, time.perf_counter()
    for images, targets in loader:
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss_dict = model(images, targets)
            losses = sum(loss for loss in loss_dict.values())
        opt.zero_grad()
        losses.backward()
        opt.step()
        seen += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen, time.perf_counter() - t0


def deepvision_epoch(task, model, loader, opt, device, amp, epoch: int) -> tuple[int, float]:
    """What the engine runs per batch for this task: to_device, train_loss, backward, step, meter update."""
    meter = task.meter(device, "train")
    loader.set_epoch(epoch)
    seen, t0 = 0, time.perf_counter()
    for batch in loader:
        x, y = task.to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, out = task.train_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meter.update(out, y, loss.detach())
        seen += len(x)
    meter.compute()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen, time.perf_counter() - t0


def throughput(name: str, built: Path, args, device: torch.device) -> dict[str, float]:
    """Step 2: interleaved epochs of both loops on the same model (flip only, as torchvision's default recipe)."""
    cfg = config(name, built, args.batch, args.workers, 1)
    task = DetectionTask(cfg)
    data = task.load_data(("train",), get_model_spec(name).input_size)
    ours = data.loaders(("train",), seed=0, device=device)["train"]
    ref_loader = torch.utils.data.DataLoader(
        ReferenceDataset(data.splits["train"]), batch_size=args.batch, shuffle=True, num_workers=args.workers,
        collate_fn=lambda batch: tuple(zip(*batch)), persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda")
    model = build(cfg, task, len(data.classes), device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    deepvision_epoch(task, model, ours, opt, device, args.amp, 0)  # warm-up: workers, allocator, kernels
    reference_epoch(model, ref_loader, opt, device, args.amp)
    ratios, dv, ref = [], [], []
    for r in range(args.rounds):
        pair = []
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            n, s = (deepvision_epoch(task, model, ours, opt, device, args.amp, r + 1) if which == 0
                    else reference_epoch(model, ref_loader, opt, device, args.amp))
            pair.append((which, n / s))
        rates = dict(pair)
        dv.append(rates[0])
        ref.append(rates[1])
        ratios.append(rates[0] / rates[1])
    ours.close()
    return {"deepvision": statistics.median(dv), "torchvision": statistics.median(ref),
            "ratio": statistics.median(ratios)}


def inference(model, classes: list[str], built: Path, device: torch.device, frames: int) -> dict[str, float]:
    """Step 3: the Detector of `deepvision detect` on the test images and on a video made of them."""
    import cv2

    from deepvision.data.detection import load_index
    from deepvision.inference.detect import Detector, detect_video

    index = load_index(built, ["test"])
    images = [np.asarray(cv2.cvtColor(cv2.imread(str(im.file)), cv2.COLOR_BGR2RGB)) for im in index.splits["test"]]

    detector = Detector(model, classes, min_confidence=0.5)
    detector.detect([images[0]])
    t0 = time.perf_counter()
    for im in images:
        detector.detect([detector.cap(im)[0]])
    per_image = len(images) / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        h, w = images[0].shape[:2]
        writer = cv2.VideoWriter(str(Path(tmp) / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
        for i in range(frames):
            writer.write(cv2.cvtColor(cv2.resize(images[i % len(images)], (w, h)), cv2.COLOR_RGB2BGR))
        writer.release()
        (Path(tmp) / "out").mkdir()
        video = detect_video(detector, Path(tmp) / "clip.mp4", Path(tmp) / "out")
    return {"images_per_s": per_image, "video_fps": video.fps}


def curve_table(curve: list[dict]) -> list[str]:
    """The test scores of the evaluated epochs as a table (the first VOC mAP@0.5 at the target in bold)."""
    first = next((c for c in curve if c["map50"] >= TARGET), None)
    lines = ["| epoch | " + " | ".join(str(c["epoch"]) for c in curve) + " |", "|---|" + "---|" * len(curve),
             "| VOC mAP@0.5 | " + " | ".join(f"**{c['map50']:.3f}**" if c is first else f"{c['map50']:.3f}"
                                           for c in curve) + " |",
             "| COCO mAP | " + " | ".join(f"{c['map']:.3f}" for c in curve) + " |",
             "| training s | " + " | ".join(f"{c['seconds']:,.0f}" for c in curve) + " |", ""]
    last = curve[-1]
    end = f"{last['map50']:.3f} (COCO mAP {last['map']:.3f}) at the end"
    lines.append(f"VOC mAP@0.5 >= {TARGET:.2f} first at epoch {first['epoch']}, after {first['seconds']:,.0f} s of "
                 f"training; {end}." if first else f"VOC mAP@0.5 >= {TARGET:.2f} not reached; {end}.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="ssdlite320_mobilenet_v3_large,fasterrcnn_mobilenet_v3_large_320_fpn")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved epoch pairs for the speed ratio")
    ap.add_argument("--frames", type=int, default=100, help="frames of the inference video")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--loop", choices=("task", "trainer"), default="task")
    ap.add_argument("--skip", default="", help="comma list of steps to skip: accuracy, speed, inference")
    ap.add_argument("--out", help="run folder for --loop trainer")
    ap.add_argument("--from-run", help="step 3 on this trained run's best.pt (e.g. one made with --loop trainer)")
    ap.add_argument("--input", type=int, help="network input size instead of the model's default (SSDlite `size`, "
                    "Faster R-CNN min/max size with anchors 16-256 px)")
    ap.add_argument("--proposals", type=int, help="Faster R-CNN RPN proposals kept per training image (default 2000; "
                    "the RoI heads then sample a quarter of them, at most 512)")
    ap.add_argument("--anchor-scales", help="SSD default-box scales, comma list (e.g. 0.08,0.2,0.35,0.5,0.65,0.8,0.95)")
    ap.add_argument("--augment", choices=("auto", "ssd", "flip"), default="auto",
                    help="step 1's augmentation: ssd (flip + zoom-out + IoU crop), flip, or auto (ssd for SSD models, "
                    "flip for Faster R-CNN, as torchvision's detection references)")
    ap.add_argument("--tiny", action="store_true", help="smoke size: 24 images of 96 px, 1 epoch, 1 round")
    ap.add_argument("--no-append", action="store_true", help="do not write the results to BENCHMARKS.md")
    args = ap.parse_args()
    if args.tiny:
        args.images, args.size, args.epochs, args.eval_every, args.rounds, args.frames = 24, 96, 1, 1, 1, 8
        args.batch, args.workers = 4, 0
        MODELS["ssdlite320_mobilenet_v3_large"]["size"] = 96
        for name in FASTER_RCNN:
            MODELS[name].update(min_size=96, max_size=128)
    if args.input:
        MODELS["ssdlite320_mobilenet_v3_large"]["size"] = args.input
        for name in FASTER_RCNN:
            MODELS[name].update(min_size=args.input, max_size=args.input, anchor_sizes=[16, 32, 64, 128, 256])
    if args.anchor_scales:
        MODELS["ssdlite320_mobilenet_v3_large"]["anchor_scales"] = [float(v) for v in args.anchor_scales.split(",")]
    if args.proposals:
        for name in FASTER_RCNN:
            MODELS[name].update(rpn_pre_nms_top_n_train=2 * args.proposals, rpn_post_nms_top_n_train=args.proposals,
                                box_batch_size_per_image=min(512, max(64, args.proposals // 4)))
    device = torch.device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built = make_data(Path(tmp), args.images, args.size)
        for name in args.models.split(","):
            print(f"{name}:", flush=True)
            row = {"model": name}
            if "accuracy" not in skip:
                row.update(accuracy(name, built, args, device))
            if "speed" not in skip:
                row.update(throughput(name, built, args, device))
            if "inference" not in skip and args.from_run:
                from deepvision.runs.loading import load_run

                loaded = load_run(args.from_run, device=device)
                row.update(inference(loaded.model, loaded.classes, built, device, args.frames))
            elif "inference" not in skip and "_model" in row:
                row.update(inference(row.pop("_model"), row.pop("_task").classes, built, device, args.frames))
            rows.append(row)

    def f(v, fmt):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = [f"Machine: {describe()}", "",
             f"Synthetic VOC shapes: {args.images} images of {args.size} px (75/25 by image), batch {args.batch}, "
             f"{args.workers} workers, device {args.device}{' bf16' if args.amp else ''}, "
             f"{'training speed only' if 'accuracy' in skip else f'{args.epochs} epochs from scratch'}.", "",
             "| model | VOC mAP@0.5 | COCO mAP | train s | s to mAP50 0.90 | train img/s (deepvision) | "
             "train img/s (torchvision ref) | ratio | infer img/s | video fps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {f(r.get('map50'), '.3f')} | {f(r.get('map'), '.3f')} | "
                     f"{f(r.get('seconds'), '.0f')} | {f(r.get('to_target'), '.0f')} | "
                     f"{f(r.get('deepvision'), '.1f')} | "
                     f"{f(r.get('torchvision'), '.1f')} | {f(r.get('ratio'), '.2f')}"
                     f"{'' if r.get('ratio') is None else 'x'} | "
                     f"{f(r.get('images_per_s'), '.1f')} | {f(r.get('video_fps'), '.1f')} |")
    for r in rows:
        if r.get("curve"):
            lines += ["", *([f"{r['model']}, test split by epoch:", ""] if len(rows) > 1 else []),
                      *curve_table(r["curve"])]
    table = "\n".join(lines)
    print(table)
    if not args.no_append:  # one section per model set and steps: an accuracy run leaves the speed table alone
        ran = {"inference": bool(args.from_run) or "accuracy" not in skip}
        steps = [step for step in ("accuracy", "speed", "inference") if step not in skip and ran.get(step, True)]
        write_section(f"Detection on synthetic shapes: {', '.join(args.models.split(','))} ({', '.join(steps)})",
                      table)


if __name__ == "__main__":
    main()
