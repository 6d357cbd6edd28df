"""Callbacks: deploy-form timing after each validation and test, sample images for wandb, an always-current
last.ckpt, run health checks, and the whole run's progress and time left.

Each callback reports what the end of a run needs (timing, health, the last checkpoint) in the module's run
record, ``SRModule.record``; the end of a run reads that record, never a callback's internals."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, Timer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from rt4ksr.core.scenario import timing_size
from rt4ksr.data.degradation import imresize
from rt4ksr.inference.evaluate import evaluate
from rt4ksr.inference.timing import time_inference
from rt4ksr.models import reparameterize
from rt4ksr.training.module import NonFiniteLossError, SRModule

log = logging.getLogger(__name__)


class DeployTiming(Callback):
    """After each validation and test, times the network it measured (``SRModule.eval_net``, the fused deploy
    form) in the product's scenario: 1080p-to-4K (x2), 720p-to-4K (x3) or 540p-to-4K (x4), fp16 and
    channels_last on CUDA (warm-up, CUDA events, median); on the CPU, fp32 at the scenario's stand-in, 1/8 of it
    per side (``rt4ksr.core.scenario``), or ``cpu_size``. Validations log ``val/ms`` and ``val/fps``; every
    timing goes to the module's run record (``pl_module.record["timing"]``), which ``metrics.json`` reports.
    """

    def __init__(self, time_inference: bool = True, cuda_warmup: int = 10, cuda_repeats: int = 50,
                 cpu_size: tuple[int, int] | list[int] | None = None, cpu_repeats: int = 3) -> None:
        self.time_inference, self.cuda_warmup, self.cuda_repeats = time_inference, cuda_warmup, cuda_repeats
        self.cpu_size, self.cpu_repeats = cpu_size, cpu_repeats

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: SRModule) -> None:
        timing = self._time(trainer, pl_module)  # eval_net is still set: callbacks' hooks run before the module's
        if timing is not None:
            pl_module.log("val/ms", timing["ms"], rank_zero_only=True)
            pl_module.log("val/fps", timing["fps"], rank_zero_only=True)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: SRModule) -> None:
        self._time(trainer, pl_module)

    def _time(self, trainer: L.Trainer, pl_module: SRModule) -> dict[str, Any] | None:
        deploy = pl_module.eval_net
        if not self.time_inference or deploy is None or trainer.sanity_checking or not trainer.is_global_zero:
            return None
        device = pl_module.device
        size = timing_size(pl_module.scale, device.type, self.cpu_size if device.type != "cuda" else None)
        cuda = device.type == "cuda"
        timing = time_inference(deploy, size, device, warmup=self.cuda_warmup if cuda else 1,
                                repeats=self.cuda_repeats if cuda else self.cpu_repeats)
        _record(pl_module)["timing"] = timing
        return timing


class SampleImages(Callback):
    """With a wandb logger, after each validation: a table of ``count`` crops of the first validation set (LR,
    bicubic, the fused network's SR, HR), so a dashboard shows what the figures mean."""

    def __init__(self, count: int = 2, crop: int = 96) -> None:
        self.count, self.crop = count, crop

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: SRModule) -> None:
        deploy = pl_module.eval_net
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if deploy is None or trainer.sanity_checking or not trainer.is_global_zero or not loggers or not self.count:
            return
        sets = getattr(trainer.datamodule, "test_datasets", lambda: [])()
        if not sets:
            return
        import wandb

        s, c = pl_module.scale, self.crop
        rows = []
        for i in range(min(self.count, len(sets[0]))):
            item = sets[0][i]
            lr = item["lr"][None].float().div(255)
            h, w = lr.shape[-2:]
            y, x = max(0, (h - c) // 2), max(0, (w - c) // 2)
            lr = lr[..., y: y + c, x: x + c]
            hr = item["hr"][None, :, y * s: (y + c) * s, x * s: (x + c) * s].float().div(255)
            sr = deploy(lr.to(pl_module.device)).cpu().clamp(0, 1)
            bicubic = imresize(lr, float(s)).clamp(0, 1)
            nearest = torch.nn.functional.interpolate(lr, scale_factor=s, mode="nearest")
            rows.append([item["name"]] + [wandb.Image(_to_hwc(t)) for t in (nearest, bicubic, sr, hr)])
        table = wandb.Table(columns=["image", "lr (nearest)", "bicubic", "sr (deploy form)", "hr"], data=rows)
        for lg in loggers:
            lg.experiment.log({f"val/{sets[0].name}/samples": table, "trainer/global_step": trainer.global_step})


def _record(pl_module: L.LightningModule) -> dict[str, Any]:
    """The module's run record (``SRModule.record``); a plain LightningModule gets one."""
    if not hasattr(pl_module, "record"):
        pl_module.record = {}
    return pl_module.record


def _to_hwc(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` always holds the newest state, whatever the monitored metric does.

    It is written after every validation, every ``every_n_steps`` steps and every ``every_minutes`` minutes of
    training, when the run ends (by epochs, steps or time), and when a signal stops it (SIGTERM, Ctrl-C: Lightning
    stops at a batch boundary and raises ``SIGTERMException``), so a crash loses at most one interval and
    ``ckpt_path=.../last.ckpt`` resumes from where the run was. A stop before this run trained a step saves
    nothing: the checkpoint it started from stays as it was. A save that falls on an epoch's last batch waits
    for the epoch's end, where Lightning resumes exactly; a mid-epoch save resumes with that epoch's remaining
    batches redrawn (a stop during a validation ends it there: the resumed run trains on and validates at its
    next check). Each write goes to a temporary file that then replaces the old one, so a crash while saving
    leaves the previous ``last.ckpt`` whole, and the loss is checked for NaN/inf first, so no ``last.ckpt``
    holds broken weights.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None, every_minutes: float | None = 5.0,
                 filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.every_n_steps, self.every_minutes = every_n_steps, every_minutes
        self._saved_step: int | None = None
        self._start_step: int | None = None  # where this process's training started (None: not yet)
        self._pending = False
        self._last_time = time.monotonic()

    @property
    def start_step(self) -> int | None:
        """The global step this process's training started from (None: it has not started)."""
        return self._start_step

    @property
    def saved_step(self) -> int | None:
        """The global step this process last wrote to ``last.ckpt`` (None: it wrote none)."""
        return self._saved_step if self.path.is_file() else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_time = time.monotonic()
        self._start_step = trainer.global_step
        _record(pl_module)["last_checkpoint"] = {"path": str(self.path), "step": None,
                                                 "start_step": trainer.global_step}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        due = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0
        if self.every_minutes:
            late = time.monotonic() - self._last_time >= 60 * self.every_minutes
            due = bool(trainer.strategy.broadcast(due or late))  # one decision for every rank
        if due:
            self._save_now_or_at_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._save_now_or_at_epoch_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Save on Ctrl-C and on a signal (also when it killed a DataLoader worker first), while fitting and past
        the step this run started from; not after a non-finite loss or a second signal (the last whole save
        stays), and never in a test or validation outside fitting, where the module may hold other weights."""
        stopped = isinstance(exception, KeyboardInterrupt | SIGTERMException) or trainer.received_sigterm
        if (not stopped or isinstance(exception, NonFiniteLossError) or trainer.state.fn != TrainerFn.FITTING
                or self._start_step is None or trainer.global_step <= self._start_step):
            return
        if isinstance(exception, KeyboardInterrupt) and trainer.received_sigterm:
            return  # a second signal, which stops at once, perhaps mid-step: the last whole save stays
        self.save(trainer, pl_module)

    def _save_now_or_at_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._pending = True
        else:
            self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the current state to ``last.ckpt`` atomically, unless this step is already there."""
        self._pending = False
        if trainer.fast_dev_run or (self._saved_step == trainer.global_step and self.path.is_file()):
            return
        check = getattr(pl_module, "check_finite", None)
        if check is not None:
            check()
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # the whole state: a resume continues exactly
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self._saved_step, self._last_time = trainer.global_step, time.monotonic()
        _record(pl_module).setdefault("last_checkpoint", {"path": str(self.path), "start_step": self._start_step})
        _record(pl_module)["last_checkpoint"]["step"] = self._saved_step


class RunProgress(Callback):
    """The whole run's progress and time left, one line after each validation and every ``every_minutes``
    minutes of training (Lightning's bar shows one epoch's): ``progress: step 400/2000 (20%), 0:05:10 elapsed,
    about 0:20:40 left``. The budget is whichever runs out first of ``max_steps``, ``max_epochs`` x the steps
    of an epoch, and ``max_time`` (``progress: step 400, 0:05:10 of the 0:10:00 time budget (52%), about
    0:04:50 left``); the time a step budget leaves is measured from this process's pace, validations included.
    """

    def __init__(self, every_minutes: float | None = 5.0) -> None:
        self.every_minutes = every_minutes
        self._start: tuple[float, int] | None = None  # (time, global step) when this process started training
        self._last = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = (time.monotonic(), trainer.global_step)
        self._last = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.every_minutes and time.monotonic() - self._last >= 60 * self.every_minutes:
            self.report(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.report(trainer)

    def report(self, trainer: L.Trainer) -> None:
        self._last = time.monotonic()
        if trainer.is_global_zero:
            log.info("progress: %s", self.status(trainer))

    @staticmethod
    def step_budget(trainer: L.Trainer) -> int | None:
        """The steps the run may take: ``max_steps`` or ``max_epochs`` x the optimizer steps of an epoch, the
        fewer (None: neither bounds it)."""
        budgets = [trainer.max_steps] if trainer.max_steps and trainer.max_steps > 0 else []
        batches = trainer.num_training_batches
        if trainer.max_epochs and trainer.max_epochs > 0 and batches and batches != float("inf"):
            budgets.append(trainer.max_epochs * -(-int(batches) // trainer.accumulate_grad_batches))
        return min(budgets) if budgets else None

    def status(self, trainer: L.Trainer) -> str:
        """``step N/M (P%), T elapsed, about T left`` for a step (or epoch) budget, ``step N, T of the T time
        budget (P%), about T left`` when the time budget runs out first."""
        step, now = trainer.global_step, time.monotonic()
        started, first = self._start or (now, step)
        elapsed = now - started
        pace = (step - first) / elapsed if elapsed > 0 and step > first else None
        steps = self.step_budget(trainer)
        steps_left = (steps - step) / pace if steps and pace else None
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)  # Lightning's, for max_time
        remaining = timer.time_remaining("train") if timer is not None else None
        if remaining is not None:
            used = timer.time_elapsed("train")
            budget, time_left = used + remaining, max(0.0, remaining)
            if steps_left is None or time_left <= steps_left:
                return (f"step {step}, {_clock(used)} of the {_clock(budget)} time budget "
                        f"({100 * min(used / budget, 1):.0f}%), about {_clock(time_left)} left")
        if steps:
            left = f"about {_clock(steps_left)} left" if steps_left is not None else "time left not known yet"
            return f"step {step}/{steps} ({100 * step / steps:.0f}%), {_clock(elapsed)} elapsed, {left}"
        return f"step {step}, {_clock(elapsed)} elapsed (no step or time budget)"


def _clock(seconds: float) -> str:
    """``1:02:03`` (hours:minutes:seconds)."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class RunHealth(Callback):
    """Says plainly when a run goes wrong, instead of letting best-checkpoint selection hide it.

    Before training it validates the network the run starts from (the baseline: for a zero-initialised
    global-skip network, the interpolation alone). After each validation it warns when ``metric`` is still
    within ``stall_db`` of that baseline once ``stall_after_steps`` steps are done (the network is not
    learning), or has fallen more than ``drop_db`` below its best (the run is losing ground). The end-of-run
    validation is always checked. The record (baseline, every validation, best, warnings, status) goes to
    ``metrics.json`` and, with wandb, to the run's summary as ``health/*``.
    """

    def __init__(self, metric: str = "val/psnr", stall_db: float = 0.1, drop_db: float = 0.25,
                 stall_after_steps: int = 500, baseline: bool = True) -> None:
        self.metric, self.stall_db, self.drop_db = metric, stall_db, drop_db
        self.stall_after_steps, self.measure_baseline = stall_after_steps, baseline
        self.baseline: dict[str, Any] | None = None
        self.validations: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.status = "ok"

    @property
    def best(self) -> dict[str, Any] | None:
        return max(self.validations, key=lambda v: v[self.metric], default=None)

    @property
    def last_step(self) -> int | None:
        return self.validations[-1]["step"] if self.validations else None

    def on_train_start(self, trainer: L.Trainer, pl_module: SRModule) -> None:
        if self.baseline is not None or not self.measure_baseline or not trainer.is_global_zero:
            return  # a resumed run keeps the baseline of the network it first started from
        sets = getattr(trainer.datamodule, "test_datasets", lambda: [])() if trainer.datamodule else []
        if not sets:
            return
        deploy = reparameterize(pl_module.validated_net)
        results = {ds.name: evaluate(deploy, ds) for ds in sets}
        self.baseline = {"step": trainer.global_step, "sets": results,
                         self.metric: sum(r["psnr_y"] for r in results.values()) / len(results)}
        log.info("baseline (the network the run starts from): %s %.4f dB", self.metric, self.baseline[self.metric])
        self._report(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.metric not in trainer.callback_metrics:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("val/") and k.endswith(("/psnr", "/ssim"))}
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch, self.metric: metrics[self.metric],
                  "sets": {k[4:-5]: v for k, v in metrics.items() if k.endswith("/psnr") and k != self.metric}}
        if self.validations and self.validations[-1]["step"] == record["step"]:
            self.validations[-1] = record
        else:
            self.validations.append(record)
        self.check(record, final=trainer.state.fn != TrainerFn.FITTING or trainer.should_stop)
        self._to_wandb(trainer)
        self._report(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run that ends on a validation step has its last validation judged as the final one (the stall check,
        skipped before ``stall_after_steps``, always applies to the end of a run)."""
        last = self.validations[-1] if self.validations else None
        if (trainer.is_global_zero and last and last["step"] == trainer.global_step
                and last["step"] < self.stall_after_steps):
            self.check(last, final=True)
            self._to_wandb(trainer)
        self._report(pl_module)

    def _report(self, pl_module: L.LightningModule) -> None:
        """This run's health into the module's run record, for metrics.json and the wandb summary."""
        _record(pl_module)["health"] = {"status": self.status, "warnings": self.warnings, "metric": self.metric,
                                        "baseline": self.baseline, "validations": self.validations,
                                        "summary": self.summary()}

    def _to_wandb(self, trainer: L.Trainer) -> None:
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.experiment.summary.update(self.summary())

    def check(self, record: dict[str, Any], final: bool = False) -> None:
        """Warn about ``record`` (one validation) against the baseline and the best so far."""
        value, step, best = record[self.metric], record["step"], self.best
        if self.baseline is not None and (final or step >= self.stall_after_steps):
            base = self.baseline[self.metric]
            if value - base < self.stall_db:
                self._warn("stalled", f"{self.metric} {value:.4f} dB at step {step} is within {self.stall_db} dB of "
                           f"the network the run started from ({base:.4f} dB): the network is not learning. Try a "
                           "lower optimizer.lr or a longer warm-up (scheduler.warmup_steps).")
                return
        if best is not None and best[self.metric] - value > self.drop_db:
            self._warn("regressed", f"{self.metric} {value:.4f} dB at step {step} is {best[self.metric] - value:.2f} "
                       f"dB below its best ({best[self.metric]:.4f} dB at step {best['step']}): the run is losing "
                       "ground. Try a lower optimizer.lr; the best state is kept as the best checkpoint.")

    def _warn(self, status: str, message: str) -> None:
        if self.status != "stalled":  # the worse verdict stays
            self.status = status
        self.warnings.append(message)
        log.warning(message)

    def summary(self) -> dict[str, Any]:
        """Flat figures for a wandb summary."""
        best = self.best or {}
        out = {"health/status": self.status, "health/warnings": len(self.warnings)}
        if self.baseline is not None:
            out["health/baseline"] = self.baseline[self.metric]
        if best:
            out.update({"health/best": best[self.metric], "health/best_step": best["step"]})
        if self.validations:
            out["health/final"] = self.validations[-1][self.metric]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "validations": self.validations, "warnings": self.warnings,
                "status": self.status}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.baseline = state_dict.get("baseline")
        self.validations = list(state_dict.get("validations", []))
        self.warnings = list(state_dict.get("warnings", []))
        self.status = state_dict.get("status", "ok")
