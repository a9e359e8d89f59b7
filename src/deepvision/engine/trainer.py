"""The training loop: epochs of train + validate over a resolved run, with events for callbacks.

One `Trainer` runs one segment of a run: from scratch, or from a checkpoint (resume). It knows no
task (the `Task` prepares batches, computes the loss and the metrics) and writes no file itself
(callbacks do: checkpoints, history, log, TensorBoard, plots; `RunDir` owns the files). Everything
that shapes the numbers (model, optimizer, scaler, RNG states, history) is restored on resume, the
epoch order depends only on (seed, epoch), and the learning rate only on the position in training,
so resuming gives the same metrics as an uninterrupted run on the CPU.

Why one module of ~500 lines: set-up, the training pass, validation and the stop/skip checks share the
trainer's state (model, optimizer, scaler, loaders, the frozen parts); the step itself is `_train_pass`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.config.coerce import to_dict
from deepvision.data.protocols import check_skip_limit, close_loader
from deepvision.engine.allocator import keep_freed_memory
from deepvision.engine.callbacks import Callback, CallbackList, Checkpointer, FreezeBody, default_callbacks
from deepvision.engine.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_sum,
    gather_object,
    restart_store_note,
)
from deepvision.engine.optim import build_optimizer
from deepvision.engine.precision import amp_dtype, flush_denormals, train_amp_dtype
from deepvision.engine.reporting import Reporter, open_log
from deepvision.engine.resolve import ResolvedRun
from deepvision.engine.schedules import Schedule
from deepvision.engine.signals import GracefulStop, StopRequested
from deepvision.engine.threads import fit_threads_to_load
from deepvision.errors import UserError
from deepvision.models.build import build_model
from deepvision.models.memory_format import to_channels_last
from deepvision.models.shapes import check_batch_memory
from deepvision.models.weights import load_weights
from deepvision.runs import checkpoint as ckpt_io
from deepvision.runs.history import EpochRecord
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


class Trainer:
    def __init__(
        self,
        resolved: ResolvedRun,
        run: RunDir,
        *,
        dist: DistInfo,
        device: torch.device,
        resume: dict[str, Any] | None = None,
        manual_lr: float | None = None,
        reset_optimizer: bool = False,
        callbacks: list[Callback] | None = None,
    ) -> None:
        """`callbacks` replace the default ones (log, terminal, history, TensorBoard, plots); the
        checkpointing callback always runs first, and fine-tuning's `FreezeBody` when configured."""
        self.resolved, self.run, self.dist, self.device = resolved, run, dist, device
        self._threads, self._threads_note = fit_threads_to_load(device)  # before any loader worker starts
        self.cfg, self.task, self.data, self.pre = resolved.cfg, resolved.task, resolved.data, resolved.pre
        cfg, tc = self.cfg, self.cfg.train
        # a resumed run loads its own checkpoint below: no second network surgery from the initial weights
        model = build_model(_without_initial_weights(cfg) if resume is not None else cfg, self.pre)
        if self.task.check_input:
            self._check_input(model)
        report = getattr(model, "pretrained_report", None)
        # default on for CPU too: oneDNN's NHWC kernels train most of the zoo faster than NCHW
        # (benchmarks/cpu_memory_format.py, docs/performance.md);
        # to_channels_last steers clear of the one NHWC CPU kernel known to crash
        self.channels_last = tc.channels_last if tc.channels_last is not None else True
        self.channels_last = self.channels_last and self.task.supports_channels_last
        model = model.to(device)
        if self.channels_last:
            model = to_channels_last(model, device)
        if tc.sync_bn and dist.enabled:
            if device.type != "cuda":
                raise UserError("train.sync_bn needs CUDA GPUs (SyncBatchNorm has no CPU implementation); "
                                "set train.sync_bn=false")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model  # the plain module: evaluation, checkpoints
        self.optimizer = build_optimizer(model, cfg.optim, split_head=tc.freeze.body_epochs > 0)
        self.frozen: set[str] = set()  # parameter-group parts ("body") trained with a zero learning rate
        # the training step's autocast dtype, and scoring's (float32 on the CPU unless train.amp says bf16)
        self.amp = train_amp_dtype(tc.amp, device, self.task.cpu_autocast)
        self.eval_amp = amp_dtype(tc.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.schedule = Schedule(cfg.schedule, cfg.optim.lr, tc.epochs)
        cfg.data.augment.refuse_unread("data.augment")
        self.manual_lr = manual_lr
        self.stop = GracefulStop()  # fit() installs its signal handlers; until then nothing is requested
        self._position = (0, 0)  # (batches done, steps) of the epoch in progress
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0

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
        self.task.setup(self.pre, device, self.channels_last)
        self.loaders = self.data.loaders(("train", "val"), seed=tc.seed, rank=dist.rank, world=dist.world,
                                         device=device, max_steps=tc.max_steps)
        for loader in self.loaders.values():
            # reported and limited once per epoch and role, across ranks, by `_check_skipped`
            loader.skips.warn, loader.skips.limit = False, None
        self.reporter = Reporter(run.log_path, enabled=dist.is_main, progress=tc.progress, topk=tc.topk)
        monitor = cfg.checkpoint.monitor
        self.checkpointer = Checkpointer(self.history, monitor, self.task.lower_is_better(monitor))
        extra = callbacks if callbacks is not None else default_callbacks(cfg)
        core: list[Callback] = [self.checkpointer]
        if tc.freeze.body_epochs:
            core.append(FreezeBody(tc.freeze.body_epochs))
        self.callbacks = CallbackList([*core, *extra], self, dist.is_main)
        # On the CPU denormal floats are flushed to zero while training, as TensorFlow's CPU kernels do: the
        # tiny gradients of saturated tanh units are denormals, many times slower to compute with
        # (docs/performance.md). close() restores the default; set last, once nothing in here can fail any more.
        self._flushing = device.type == "cpu" and flush_denormals(True)
        if device.type == "cpu":
            keep_freed_memory()  # no page faults for each step's activations (engine/allocator.py)
        if report and dist.is_main:
            self.reporter.line(f"pretrained weights {cfg.model.pretrained}: {len(report['missing'])} missing "
                               f"keys {report['missing'][:4]}, {len(report['unexpected'])} unexpected keys")

    @property
    def best_epoch(self) -> int | None:
        return self.checkpointer.best_epoch

    @property
    def best_value(self) -> float | None:
        return self.checkpointer.best_value

    # -- set-up helpers ----------------------------------------------------------------------------
    def _check_input(self, model: nn.Module) -> None:
        try:
            from deepvision.models.summary import check_input_size
        except ImportError:
            return
        shape = (self.pre.channels, *self.pre.size)
        check_input_size(model, shape, self.cfg.model.name)
        # on a GPU the layers' outputs live in its memory, which CUDA refuses itself; the batch is read here
        check_batch_memory(model, shape, self.cfg.data.batch_size, activations=self.device.type == "cpu",
                           eval_batch=self.cfg.data.eval_batch_size or self.cfg.data.batch_size)

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
        with GracefulStop() as stop, self.reporter.crash_reports():
            self.stop = stop
            self._announce()  # under the stop handlers: a Ctrl+C while it prints stops at the first batch
            try:
                self.callbacks.on_train_start()
                for epoch in range(self.start_epoch, self.cfg.train.epochs):
                    try:
                        self.train_epoch(epoch)
                    except (RuntimeError, ConnectionError, EOFError, FileNotFoundError):
                        # a signal sent to the whole process group also ends the loader's workers (a batch they
                        # were handing over is lost: the socket a worker hands its shared memory through is gone,
                        # FileNotFoundError) and, under DDP, may end one rank while another waits in a
                        # collective: torch raises these as errors; the stop they follow goes on
                        if not self.stop.requested:
                            raise
                        if self.history and self.history[-1].get("epoch") == epoch + 1:
                            self._stopped_after(epoch)  # the epoch was saved; its test scoring was cut short
                        self._interrupted(epoch, *self._position)
            finally:
                self.callbacks.on_train_end()
                self.close()
            if self.history and self._stop_requested(1, 1):  # a stop while the last epoch's reports were written:
                # every epoch is saved and the test split scored (or there was none), so the run is complete
                raise StopRequested(self.stop.signum or 2, self.history[-1]["epoch"], str(self.run.path),
                                    complete=True)
        return FitResult(self.run.path, self.history, self.best_epoch, self.best_value, self.dist.is_main)

    def _announce(self) -> None:
        """The run's first lines: model, data, device, and the notes about them."""
        if self.dist.is_main:
            counts = ", ".join(f"{k} {v}" for k, v in self.data.counts().items())
            n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            self.reporter.line(
                f"run {self.run.path}: model {self.cfg.model.name} ({n_params:,} trainable parameters), "
                f"data {self.cfg.data.source} ({counts}), device {self.device}"
                + (f" x {self.dist.world} processes" if self.dist.enabled else "")
                + (f", amp {str(self.amp).removeprefix('torch.')}" if self.amp else "")
                + (" (training step)" if self.amp and self.eval_amp != self.amp else ""))
        if self._threads_note and self.dist.is_main:
            self.reporter.line(self._threads_note)
        for note in self.task.notes(self.data) if self.dist.is_main else []:
            self.reporter.line(note)
        store_note = restart_store_note()
        if store_note and self.dist.is_main:
            self.reporter.line(store_note)

    def close(self) -> None:
        """Stop loader workers and close the log file."""
        for loader in self.loaders.values():
            close_loader(loader)
        self.reporter.close()
        torch.set_num_threads(self._threads)  # the caller's process keeps its own setting
        if self._flushing:
            flush_denormals(False)

    def lr_at(self, epoch: int, fraction: float = 0.0) -> float:
        return self.manual_lr if self.manual_lr is not None else self.schedule(epoch, fraction)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            part = group.get("part")
            group["lr"] = 0.0 if part in self.frozen else lr * group.get("lr_mult", 1.0)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Train epoch `epoch` (0-based), validate, run the epoch-end callbacks; returns its history row.

        `fit` calls this for every epoch; call it directly to drive training epoch by epoch.
        """
        t_epoch = time.perf_counter()
        lr, train_m, seconds = self._train_pass(epoch)
        self._check_skipped(epoch, "train", train_m["count"])
        self.callbacks.on_train_epoch_end(epoch, train_m, seconds)
        val_m = self.validate() if "val" in self.loaders else None
        if val_m is not None:
            self._check_skipped(epoch, "val", val_m["count"])
        record = EpochRecord(epoch + 1, lr, train_m, val_m, train_m["count"] / seconds,
                             time.perf_counter() - t_epoch, self.task.history_fields())
        self.history.append(record.row())
        self.callbacks.on_epoch_end(epoch, record)
        return self.history[-1]

    def _train_pass(self, epoch: int) -> tuple[float, dict[str, float], float]:
        """One pass over the training loader: (learning rate, metrics, seconds)."""
        tc, task, cb = self.cfg.train, self.task, self.callbacks
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
        meter = self.train_meter = task.meter(self.device, "train")  # the running metrics callbacks may read
        accum, model, device, amp = tc.grad_accum, self.train_model, self.device, self.amp
        # only skip_corrupt empties batches; under DDP the ranks must agree on skipping (a collective per batch)
        check_empty = self.ddp is None or self.cfg.data.skip_corrupt
        cb.on_epoch_start(epoch, steps)
        self._position = (0, steps)  # the batch reached, should the loader fail under a stop signal
        self.optimizer.zero_grad(set_to_none=True)
        t_epoch = t_window = time.perf_counter()
        for i, batch in enumerate(loader):
            if check_empty and self._empty_batch(batch[1]):
                continue  # every record of the batch was corrupt and skipped (data.skip_corrupt)
            if per_iter:
                self._set_lr(self.lr_at(epoch, i / steps))
            x, y = task.to_device(batch, device)
            sync = (i + 1) % accum == 0 or i + 1 == steps
            group = min(accum, steps - (i // accum) * accum)  # the epoch's last group may be shorter
            with self.ddp.no_sync() if (self.ddp is not None and not sync) else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss, out = task.train_loss(model, x, y)
                self._backward(loss / group if group > 1 else loss)
            if sync:
                self._step()
            meter.update(out.detach() if isinstance(out, torch.Tensor) else out, y, loss.detach())
            done = i + 1
            self._position = (done, steps)
            cb.on_batch_end(epoch, done)
            if self._stop_requested(done, steps):
                self._interrupted(epoch, done, steps)
            if done % tc.log_every == 0:
                now = time.perf_counter()
                window = meter.compute(self.dist.enabled, since_mark=True)
                cb.on_log(epoch, done, window["count"] / max(now - t_window, 1e-9), window)
                meter.mark()
                t_window = now
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return lr, meter.compute(self.dist.enabled), time.perf_counter() - t_epoch

    def _check_skipped(self, epoch: int, role: str, scored: int) -> None:
        """data.skip_corrupt: list the epoch's unreadable samples in skipped.txt with one line on the
        console, and stop when a split is left empty or more than data.max_skipped_fraction is skipped."""
        if not self.cfg.data.skip_corrupt:
            return
        skipped = list(self.loaders[role].skips.epoch)
        count = len(skipped)
        if self.dist.enabled:  # every rank takes part; rank 0 writes the listing
            sums = all_reduce_sum(torch.tensor([float(count), float(scored)], dtype=torch.float64, device=self.device))
            count, scored = (int(v) for v in sums.tolist())
            skipped = [s for rank in gather_object(skipped, self.dist) or [] for s in rank]
        if not count:
            return
        listing = self.run.path / "skipped.txt"
        if self.dist.is_main:
            with open_log(listing) as f:  # never through a link planted in the run folder
                f.writelines(f"{epoch}\t{role}\t{s}\n" for s in skipped)
        self.reporter.line(f"Epoch[{epoch}] skipped {count} of {count + scored} {role} samples as unreadable "
                           f"(data.skip_corrupt); listed in {listing}")
        check_skip_limit(count, scored, self.cfg.data.max_skipped_fraction, role, f"listed in {listing}",
                         training=role == "train")

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler.is_enabled() else loss).backward()

    def _step(self) -> None:
        """Clip (when configured), step and zero the gradients of one optimizer step."""
        opt, scaler, clip = self.optimizer, self.scaler, self.cfg.train.clip_grad_norm
        if clip:
            if scaler.is_enabled():
                scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if scaler.is_enabled():
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def _empty_batch(self, y: Any) -> bool:
        """Whether this batch is empty here or, under DDP, on any rank (then every rank skips it)."""
        empty = len(y) == 0
        if self.ddp is None:
            return empty
        return bool(all_reduce_sum(torch.tensor([float(empty)], device=self.device)).item() > 0)

    def _stop_requested(self, batch: int, steps: int) -> bool:
        flag = self.stop.requested
        if not self.dist.enabled:
            return flag
        # ranks agree every 10 batches (a collective per batch would stall GPUs) and at the epoch's last
        # batch, so an epoch of fewer than 10 batches still stops (it used to train on to the end)
        if batch % 10 and batch != steps:
            return False
        # the signal's number travels with the flag: a rank that was not signalled (another node's
        # agent got the SIGTERM) stops with the same exit code as the one that was
        t = torch.tensor([float(self.stop.signum or 0)], device=self.device)
        signum = int(all_reduce_max(t).item())
        if signum and not flag:
            self.stop.signum = signum
        return signum > 0

    def _interrupted(self, epoch: int, done: int, steps: int) -> None:
        signum = self.stop.signum or 2
        self.reporter.end_epoch()
        kept = (f"checkpoints up to epoch {epoch} are kept" if epoch else
                "no epoch was completed, so there is no checkpoint; `deepvision resume` starts the run again")
        self.reporter.line(f"Epoch[{epoch}] interrupted at batch {done}/{steps}; this epoch is abandoned, {kept}",
                           console=f"epoch {epoch + 1} interrupted at batch {done}/{steps} and abandoned; {kept}")
        if self.dist.is_main:
            self.run.update_state(status="interrupted", epochs_done=epoch)
        raise StopRequested(signum, epoch, str(self.run.path))

    def _stopped_after(self, epoch: int) -> None:
        """A stop during the work after epoch `epoch` (0-based) was saved: scoring the test split."""
        done = epoch + 1
        self.reporter.line(f"Epoch[{epoch}] saved; stopped while scoring the test split",
                           console=f"stopped after epoch {done} was saved, before the test split was scored")
        if self.dist.is_main:
            self.run.update_state(status="interrupted", epochs_done=done)
        raise StopRequested(self.stop.signum or 2, done, str(self.run.path),
                            unscored=done == self.cfg.train.epochs)

    def stop_point(self, epoch: int) -> None:
        """In the work after epoch `epoch` (0-based) was saved (the test split scored, its reports written): a
        stop requested meanwhile ends the run here. Under DDP the ranks agree: every rank calls it at this point."""
        if self._stop_requested(1, 1):
            self._stopped_after(epoch)

    def validate(self, role: str = "val") -> dict[str, float]:
        """Score every sample of `role` exactly once (no padding) with the model in eval mode."""
        loader, cb = self.loaders[role], self.callbacks
        cb.on_val_start(len(loader))
        metrics = self.score(loader, on_batch=cb.on_val_batch_end)
        cb.on_val_end(metrics)
        return metrics

    @torch.no_grad()
    def score(self, loader: Any, model: nn.Module | None = None, on_batch: Any = None,
              after_epoch: int | None = None) -> dict[str, float]:
        """The task's evaluation metrics of `model` (default: the trained one) over `loader`, every sample
        once, the model in eval mode; under DDP every rank scores its share and the metrics are reduced.
        `on_batch(i)` follows each batch. `after_epoch`: the scoring follows that saved epoch (0-based), and a
        stop requested before or during it ends the run (`stop_point`) at the next batch; under DDP, whose ranks
        may score different numbers of batches, once the pass is over."""
        model = model if model is not None else self.model
        task = self.task
        was_training = model.training
        model.eval()
        meter = task.meter(self.device, "val")
        stoppable = after_epoch is not None and not self.dist.enabled
        try:
            with torch.inference_mode():
                for i, batch in enumerate(loader):
                    if stoppable and self.stop.requested:
                        self._stopped_after(after_epoch)
                    x, y = task.to_device(batch, self.device)
                    with torch.autocast(self.device.type, dtype=self.eval_amp, enabled=self.eval_amp is not None):
                        out, loss = task.eval_outputs(model, x, y)
                    meter.update(out, y, loss)
                    if on_batch is not None:
                        on_batch(i + 1)
        finally:
            model.train(was_training)
        if after_epoch is not None:
            self.stop_point(after_epoch)
        return meter.compute(self.dist.enabled)

    # -- checkpoints ---------------------------------------------------------------------------------
    def checkpoint_payload(self, epochs_done: int, rng: Any = None) -> dict[str, Any]:
        """The plain checkpoint dict (tensors and primitives only: loads with weights_only=True)."""
        return {
            "format": ckpt_io.FORMAT, "version": ckpt_io.VERSION,
            "epoch": epochs_done,
            "run_id": self.run.run_id,
            "task": self.task.name,
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
            **({"data_splits": record} if (record := self.task.data_record()) is not None else {}),
        }


def _without_initial_weights(cfg: Any) -> Any:
    import copy

    cfg = copy.deepcopy(cfg)
    cfg.model.pretrained = None
    return cfg


def _training_seed(seed: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + 7_777 + int(rank) * 104_729) % (2**63 - 1)
