"""The training engine: epochs of train + validate, checkpoints, resume, DDP, AMP.

One `Trainer` runs one segment of a run: from scratch, or from a checkpoint (resume). Everything
that shapes the numbers (model, optimizer, scaler, RNG states, history) is restored on resume, the
epoch order depends only on (seed, epoch), and the learning rate only on the position in training,
so resuming gives the same metrics as an uninterrupted run on the CPU.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepvision.config.coerce import to_dict
from deepvision.config.schema import Config
from deepvision.data.builtin_sources import resolve_path
from deepvision.data.loaders import build_loaders, resolve_preprocess
from deepvision.data.preprocess import normalize_batch
from deepvision.data.sources import load_data
from deepvision.engine.distributed import DistInfo, all_reduce_sum, gather_object, on_main
from deepvision.engine.metrics import MetricAccumulator
from deepvision.engine.optim import build_optimizer
from deepvision.engine.reporting import Reporter
from deepvision.engine.schedules import Schedule
from deepvision.engine.signals import GracefulStop, StopRequested
from deepvision.errors import UserError
from deepvision.models.build import build_model
from deepvision.models.registry import get_model_spec
from deepvision.models.weights import load_weights
from deepvision.runs import checkpoint as ckpt_io
from deepvision.runs.rundir import RunDir


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_value: float | None
    is_main: bool = True  # False on DDP ranks other than 0

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or (device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


class Trainer:
    def __init__(
        self,
        cfg: Config,
        run: RunDir,
        *,
        dist: DistInfo,
        device: torch.device,
        resume: dict[str, Any] | None = None,
        manual_lr: float | None = None,
        reset_optimizer: bool = False,
    ) -> None:
        self.cfg, self.run, self.dist, self.device = cfg, run, dist, device
        tc = cfg.train
        seed_everything(tc.seed)
        self.data = load_data(cfg.data, roles=("train", "val"))
        spec = get_model_spec(cfg.model.name)
        self.pre = resolve_preprocess(cfg.data, self.data, spec.input_size, spec.preprocess)
        _resolve_data_paths(cfg, self.pre)
        cfg.model.num_classes = cfg.model.num_classes or len(self.data.classes)
        cfg.model.in_channels = cfg.model.in_channels or self.pre.channels
        if cfg.model.num_classes < len(self.data.classes):
            raise UserError(f"model.num_classes is {cfg.model.num_classes} but the data has "
                            f"{len(self.data.classes)} classes")
        if cfg.model.in_channels != self.pre.channels:
            raise UserError(f"model.in_channels is {cfg.model.in_channels} but the data gives "
                            f"{self.pre.channels}-channel images (set data.channels)")
        if cfg.checkpoint.prefix is None:
            cfg.checkpoint.prefix = cfg.model.name.replace(":", "_")

        model = build_model(cfg, self.pre)
        self._check_input(model)
        report = getattr(model, "pretrained_report", None)
        self.channels_last = tc.channels_last if tc.channels_last is not None else device.type == "cuda"
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if tc.sync_bn and dist.enabled:
            if device.type != "cuda":
                raise UserError("train.sync_bn needs CUDA GPUs (SyncBatchNorm has no CPU implementation); "
                                "set train.sync_bn=false")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model  # the plain module: evaluation, checkpoints
        self.optimizer = build_optimizer(model, cfg.optim)
        if tc.global_batch:
            per_step = cfg.data.batch_size * dist.world
            if tc.global_batch % per_step:
                raise UserError(f"train.global_batch {tc.global_batch} is not a multiple of data.batch_size x "
                                f"processes = {per_step}; change one of them")
            tc.grad_accum = max(1, tc.global_batch // per_step)
        self.amp = amp_dtype(tc.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.schedule = Schedule(cfg.schedule, cfg.optim.lr, tc.epochs)
        self.manual_lr = manual_lr
        self.stop = GracefulStop()  # fit() installs its signal handlers; until then nothing is requested
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.best_epoch: int | None = None
        self.best_value: float | None = None

        # Training randomness (dropout) gets its own stream per rank; initialisation used `seed` above.
        torch.manual_seed(_training_seed(tc.seed, dist.rank))
        if resume is not None:
            self._restore(resume, reset_optimizer)
        if self.start_epoch >= tc.epochs:
            raise UserError(f"the run already has {self.start_epoch} epochs and train.epochs is {tc.epochs}; "
                            f"continue with --set train.epochs={self.start_epoch + 10}")
        train_model: nn.Module = model
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            train_model = self.ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if tc.compile:
            train_model = torch.compile(train_model)
        self.train_model = train_model
        self.loaders = build_loaders(cfg.data, self.data, self.pre, seed=tc.seed, rank=dist.rank, world=dist.world,
                                     device=device, max_steps=tc.max_steps, roles=("train", "val"))
        self.affine = self.pre.affine(device)
        self.reporter = Reporter(run.log_path, enabled=dist.is_main, progress=tc.progress, topk=tc.topk)
        self.tb = self._tensorboard() if dist.is_main and tc.tensorboard else None
        if report and dist.is_main:
            self.reporter.line(f"pretrained weights {cfg.model.pretrained}: {len(report['missing'])} missing "
                               f"keys {report['missing'][:4]}, {len(report['unexpected'])} unexpected keys")

    # -- set-up helpers ----------------------------------------------------------------------------
    def _check_input(self, model: nn.Module) -> None:
        try:
            from deepvision.models.summary import check_input_size
        except ImportError:
            return
        check_input_size(model, (self.pre.channels, *self.pre.size), self.cfg.model.name)

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:
            return None
        return SummaryWriter(str(self.run.path / "tensorboard"))

    def _restore(self, ckpt: dict[str, Any], reset_optimizer: bool) -> None:
        saved = ckpt.get("model", {})
        if saved.get("name") != self.cfg.model.name:
            raise UserError(f"the checkpoint holds model '{saved.get('name')}' but the config asks for "
                            f"'{self.cfg.model.name}'")
        load_weights(self.model, ckpt["model_state"], strict=True, source="checkpoint weights")
        if not reset_optimizer and ckpt.get("optimizer_state"):
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
            try:
                self.optimizer.load_state_dict(ckpt["optimizer_state"])
            except (ValueError, KeyError) as exc:
                raise UserError(f"the checkpoint's optimizer state does not fit optim.name={self.cfg.optim.name} "
                                f"({exc}); resume with --reset-optimizer") from None
            # Moments/momentum buffers come from the checkpoint; hyper-parameters from the (new) config.
            for group, settings in zip(self.optimizer.param_groups, fresh):
                group.update(settings)
            if ckpt.get("scaler_state") and self.scaler.is_enabled():
                self.scaler.load_state_dict(ckpt["scaler_state"])
        self.start_epoch = int(ckpt["epoch"])
        self.history = [dict(r) for r in ckpt.get("history", [])][: self.start_epoch]
        self.best_epoch, self.best_value = self._best_of(self.history)
        rng = ckpt.get("rng")
        if rng:
            per_rank = rng.get("ranks")
            if per_rank is None:
                ckpt_io.set_rng_state(rng)
            elif len(per_rank) == self.dist.world:
                ckpt_io.set_rng_state(per_rank[self.dist.rank])
            # else: a different number of processes; keep the fresh per-rank seeds

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        tc = self.cfg.train
        rep = self.reporter
        if self.dist.is_main:
            counts = ", ".join(f"{k} {v}" for k, v in self.data.counts().items())
            n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            rep.line(f"run {self.run.path}: model {self.cfg.model.name} ({n_params:,} trainable parameters), "
                     f"data {self.cfg.data.source} ({counts}), device {self.device}"
                     + (f" x {self.dist.world} processes" if self.dist.enabled else "")
                     + (f", amp {str(self.amp).removeprefix('torch.')}" if self.amp else ""))
        with GracefulStop() as stop:
            self.stop = stop
            try:
                for epoch in range(self.start_epoch, tc.epochs):
                    self.train_epoch(epoch)
            finally:
                rep.end_epoch()
                if self.dist.is_main:
                    self._plots()
                self.close()
        return FitResult(self.run.path, self.history, self.best_epoch, self.best_value, self.dist.is_main)

    def close(self) -> None:
        """Stop loader workers and close the log and TensorBoard files."""
        for loader in self.loaders.values():
            closer = getattr(loader, "close", None)
            if closer is not None:
                closer()
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        self.reporter.close()

    def lr_at(self, epoch: int, fraction: float = 0.0) -> float:
        return self.manual_lr if self.manual_lr is not None else self.schedule(epoch, fraction)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Train epoch `epoch` (0-based), validate, checkpoint; returns its history row.

        `fit` calls this for every epoch; call it directly to drive training epoch by epoch.
        """
        tc, rep = self.cfg.train, self.reporter
        loader = self.loaders["train"]
        loader.set_epoch(epoch)
        steps = len(loader)
        if steps == 0:
            raise UserError(f"the training split yields no batch for batch size {self.cfg.data.batch_size} "
                            f"(last_batch={self.cfg.data.last_batch}); lower data.batch_size")
        per_iter = self.schedule.per_iteration and self.manual_lr is None
        lr = self.lr_at(epoch)
        self._set_lr(lr)
        self.train_model.train()
        metrics = MetricAccumulator(self.device, tc.topk)
        accum = tc.grad_accum
        a, b = self.affine
        model, opt, scaler = self.train_model, self.optimizer, self.scaler
        scaled = scaler.is_enabled()
        label_smoothing = tc.label_smoothing
        device, amp = self.device, self.amp
        # only skip_corrupt empties batches; under DDP the ranks must agree on skipping (a collective per batch)
        check_empty = self.ddp is None or self.cfg.data.skip_corrupt
        rep.start_epoch(epoch, steps, tc.epochs)
        opt.zero_grad(set_to_none=True)
        t_epoch = t_window = time.perf_counter()
        done = 0
        for i, (x, y) in enumerate(loader):
            if check_empty and self._empty_batch(y):
                continue  # every record of the batch was corrupt and skipped (data.skip_corrupt)
            if per_iter:
                self._set_lr(self.lr_at(epoch, i / steps))
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            x = normalize_batch(x, a, b)  # uint8 -> normalised float in one pass, on the device
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = (i + 1) % accum == 0 or i + 1 == steps
            group = min(accum, steps - (i // accum) * accum)  # the epoch's last group may be shorter
            ctx = self.ddp.no_sync() if (self.ddp is not None and not sync) else _nullcontext
            with ctx:
                with torch.autocast(device.type, dtype=amp) if amp is not None else _nullcontext:
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
                step_loss = loss / group if group > 1 else loss
                (scaler.scale(step_loss) if scaled else step_loss).backward()
            if sync:
                if tc.clip_grad_norm:
                    if scaled:
                        scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad_norm)
                if scaled:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)
            metrics.update(logits.detach(), y, loss.detach())
            done = i + 1
            rep.advance()
            if self._stop_requested(done):
                self._interrupted(epoch, done, steps)
            if done % tc.log_every == 0:
                now = time.perf_counter()
                window = metrics.compute(self.dist.enabled, since_mark=True)
                rep.speedometer(epoch, done, window["count"] / max(now - t_window, 1e-9), window)
                metrics.mark()
                t_window = now
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_time = time.perf_counter() - t_epoch
        rep.end_epoch()
        train_m = metrics.compute(self.dist.enabled)
        total_seen = train_m["count"]
        rep.line(f"Epoch[{epoch}] Resetting Data Iterator", console=False)
        rep.metrics(epoch, "Train", train_m, console=False)
        rep.line(f"Epoch[{epoch}] Time cost={train_time:.3f}", console=False)
        val_m = self.validate() if "val" in self.loaders else None
        row = {
            "epoch": epoch + 1, "lr": lr,
            "train_loss": train_m["loss"], "train_acc": train_m["acc"], "train_top5": train_m["top5"],
            "val_loss": val_m["loss"] if val_m else None, "val_acc": val_m["acc"] if val_m else None,
            "val_top5": val_m["top5"] if val_m else None,
            "samples_per_s": total_seen / train_time, "seconds": time.perf_counter() - t_epoch,
        }
        self.history.append(row)
        self._end_of_epoch(epoch, row, val_m)
        return row

    def _empty_batch(self, y: torch.Tensor) -> bool:
        """Whether this batch is empty here or, under DDP, on any rank (then every rank skips it)."""
        empty = y.shape[0] == 0
        if self.ddp is None:
            return empty
        return bool(all_reduce_sum(torch.tensor([float(empty)], device=self.device)).item() > 0)

    def _stop_requested(self, batch: int) -> bool:
        flag = self.stop.requested
        if not self.dist.enabled:
            return flag
        if batch % 10:  # ranks agree every 10 batches (a collective per batch would stall GPUs)
            return False
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(all_reduce_sum(t).item() > 0)

    def _interrupted(self, epoch: int, done: int, steps: int) -> None:
        signum = self.stop.signum or 2
        self.reporter.end_epoch()
        self.reporter.line(f"Epoch[{epoch}] interrupted at batch {done}/{steps}; this epoch is abandoned, "
                           f"checkpoints up to epoch {epoch} are kept")
        if self.dist.is_main:
            self.run.update_state(status="interrupted", epochs_done=epoch)
        raise StopRequested(signum, epoch, str(self.run.path))

    @torch.no_grad()
    def validate(self, role: str = "val") -> dict[str, float]:
        """Score every sample of `role` exactly once (no padding) with the model in eval mode."""
        loader = self.loaders[role]
        model = self.model
        was_training = model.training
        model.eval()
        metrics = MetricAccumulator(self.device, self.cfg.train.topk)
        a, b = self.affine
        with torch.inference_mode():
            for x, y in loader:
                x = normalize_batch(x.to(self.device, non_blocking=True), a, b)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = y.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else _nullcontext:
                    logits = model(x).float()
                metrics.update(logits, y, F.cross_entropy(logits, y, reduction="sum"), mean=False)
        model.train(was_training)
        return metrics.compute(self.dist.enabled)

    # -- end of epoch: checkpoints, history, plots ----------------------------------------------------
    def _monitor(self, row: dict[str, Any]) -> tuple[float | None, bool]:
        key = self.cfg.checkpoint.monitor
        if key == "val_acc" and row.get("val_acc") is None:
            key = "train_acc"
        if key == "val_loss" and row.get("val_loss") is None:
            key = "train_loss"
        value = row.get(key)
        return value, key.endswith("loss")

    def _best_of(self, history: list[dict[str, Any]]) -> tuple[int | None, float | None]:
        best_epoch = best = None
        for row in history:
            value, lower = self._monitor(row)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if best is None or (value < best if lower else value > best):
                best_epoch, best = row["epoch"], value
        return best_epoch, best

    def checkpoint_payload(self, epochs_done: int, rng: Any = None) -> dict[str, Any]:
        return {
            "format": ckpt_io.FORMAT, "version": ckpt_io.VERSION,
            "epoch": epochs_done,
            "model": {"name": self.cfg.model.name, "num_classes": self.cfg.model.num_classes,
                      "in_channels": self.cfg.model.in_channels},
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": {**self.schedule.state_dict(), "manual_lr": self.manual_lr,
                                "last_lr": self.optimizer.param_groups[0]["lr"]},
            "scaler_state": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng if rng is not None else ckpt_io.rng_state(),
            "history": self.history,
            "config": to_dict(self.cfg),
            "preprocess": self.pre.to_dict(),
            "classes": list(self.data.classes),
        }

    def _end_of_epoch(self, epoch: int, row: dict[str, Any], val_m: dict[str, float] | None) -> None:
        rng = ckpt_io.rng_state()
        if self.dist.enabled:  # every rank's generators, so a resumed DDP run continues each stream
            rng = {"ranks": gather_object(rng, self.dist)}
        on_main(self.dist, lambda: self._save_epoch(epoch, row, val_m, rng))

    def _save_epoch(self, epoch: int, row: dict[str, Any], val_m: dict[str, float] | None, rng: Any) -> None:
        epochs_done = epoch + 1
        rep, run, cc = self.reporter, self.run, self.cfg.checkpoint
        payload = self.checkpoint_payload(epochs_done, rng)
        last = run.checkpoints / "last.pt"
        ckpt_io.atomic_save(payload, last)
        if epochs_done % cc.period == 0 or epochs_done == self.cfg.train.epochs:
            path = run.checkpoint_path(cc.prefix, epochs_done)
            link_or_copy(last, path)
            rep.line(f'Saved checkpoint to "{path}"', console=False)
            self._prune(cc.prefix)
        value, lower = self._monitor(row)
        if value is not None and not (isinstance(value, float) and math.isnan(value)) and (
                self.best_value is None or (value < self.best_value if lower else value > self.best_value)):
            self.best_epoch, self.best_value = epochs_done, value
            link_or_copy(last, run.checkpoints / "best.pt")
        if val_m is not None:
            rep.metrics(epoch, "Validation", val_m, console=False)
        val = f"  val: {_fmt_metrics(val_m)}" if val_m else ""
        rep.echo(f"epoch {epochs_done}/{self.cfg.train.epochs}  lr {row['lr']:.4g}  "
                 f"train: {_fmt_metrics(row, 'train_')}{val}  {row['seconds']:.1f}s "
                 f"{row['samples_per_s']:,.0f} samples/s")
        run.write_history(self.history)
        run.update_state(status="running", epochs_done=epochs_done, best_epoch=self.best_epoch)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and v is not None:
                    self.tb.add_scalar(k, v, epochs_done)
        if row["seconds"] > 30:
            self._plots()

    def _prune(self, prefix: str) -> None:
        keep = self.cfg.checkpoint.keep
        if not keep:
            return
        saved = self.run.saved_epochs()
        for epoch in list(saved)[:-keep]:
            saved[epoch].unlink(missing_ok=True)

    def _plots(self) -> None:
        if not self.history:
            return
        from deepvision.runs.plots import plot_history

        try:
            plot_history(self.history, self.run.plots)
        except OSError as exc:  # plots are a convenience; never lose a run over them
            self.reporter.line(f"could not write plots: {exc}")


def _resolve_data_paths(cfg: Config, pre: Any) -> None:
    """Write what the data resolved to into the config (so config.yaml is complete and a run can be
    evaluated or resumed from another working directory): channels, input size, absolute paths."""
    d = cfg.data
    d.channels = pre.channels
    if d.image_size is None and pre.size[0] == pre.size[1]:
        d.image_size = pre.size[0]
    if d.root and Path(d.root).exists():
        d.root = str(Path(d.root).resolve())
    if isinstance(d.mean, str):
        d.mean = str(resolve_path(d.root, d.mean).resolve())
    for role in ("train", "val", "test"):
        name = getattr(d, role)
        if name and Path(name).suffix in (".lst", ".rec", ".idx", ".txt", ".h5", ".hdf5"):
            path = resolve_path(d.root, name)
            if path.is_file():
                setattr(d, role, str(path.resolve()))
    if isinstance(d.options.get("labels"), str):
        path = resolve_path(d.root, d.options["labels"])
        if path.is_file():
            d.options["labels"] = str(path.resolve())
    if isinstance(d.options.get("idx"), dict):
        d.options["idx"] = {k: str(resolve_path(d.root, v).resolve()) for k, v in d.options["idx"].items()}


def _training_seed(seed: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + 7_777 + int(rank) * 104_729) % (2**63 - 1)


def _fmt_metrics(m: dict[str, Any], prefix: str = "") -> str:
    return f"acc {m[prefix + 'acc']:.4f}  top5 {m[prefix + 'top5']:.4f}  loss {m[prefix + 'loss']:.4f}"


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_nullcontext = _NullContext()


def link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` hold the same bytes as `src` (hard link when possible), atomically."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write {dst}: {exc.strerror or exc}; the previous file is intact") from None
