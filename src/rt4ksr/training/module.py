"""The LightningModule that trains any RTSRN variant."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rt4ksr.core import threads
from rt4ksr.core.errors import UserError
from rt4ksr.models import reparameterize
from rt4ksr.models.checkpoint import CONFIG_KEY, config_tensor
from rt4ksr.quality.metric import SRQuality, as_floats


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss became NaN or infinite: training stops, and the last good checkpoint stays as it was."""


class _Measured:
    """Holds the network a validation or test measures without registering it as a sub-module (so it is never
    in a checkpoint and never trained)."""

    net: nn.Module | None = None


class SRModule(L.LightningModule):
    """Training step on device-degraded batches; validation and test on the benchmark sets.

    What validation and test measure is ``eval_net``: with ``validate_form="deploy"`` (the default) a fused copy
    of ``validated_net``, made at the start of each validation or test, so the figures are those of the network
    that gets deployed; with ``"train"`` the training form itself. ``validated_net`` is the exponential moving
    average of the weights when ``ema_decay > 0``, else the trained weights. Callbacks read ``eval_net`` during
    a validation or test (``DeployTiming`` times it), and ``results[stage]`` and ``record`` after one.

    Per set, an ``SRQuality`` metric (Y channel, crop = scale, per-image mean) is reduced across processes
    by torchmetrics and logged as ``<stage>/<set>/psnr`` and ``/ssim``, with the means over sets as
    ``<stage>/psnr`` and ``<stage>/ssim``.
    """

    def __init__(self, net: nn.Module, loss: nn.Module, optimizer: Callable[..., Optimizer],
                 scheduler: Callable[..., Any] | None = None, scheduler_interval: str = "epoch",
                 ema_decay: float = 0.0, finite_check_every: int = 50, validate_form: str = "deploy") -> None:
        super().__init__()
        if validate_form not in ("deploy", "train"):
            raise ValueError(f"validate_form must be 'deploy' or 'train', got {validate_form!r}")
        self.validate_form = validate_form
        self.finite_check_every = finite_check_every
        self._nonfinite: Tensor | None = None  # accumulated on the device: no host sync per step
        self._checked_step = 0
        self.net, self.loss_fn = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.ema = None
        if ema_decay > 0:
            self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)
        self.metrics = nn.ModuleDict({"val": nn.ModuleDict(), "test": nn.ModuleDict()})
        self._measured = _Measured()
        self.results: dict[str, dict[str, dict[str, float | int]]] = {}  # stage -> set -> psnr_y, ssim_y, n
        self.validated_step: int | None = None  # the global step of the newest validation (sanity checks aside)
        # what the callbacks report for the end of the run: timing, health, last_checkpoint (see callbacks.py)
        self.record: dict[str, Any] = {}
        # training time travels with the checkpoint: a resumed run reports the time of all its parts
        self.prior_train_seconds = 0.0
        self._fit_started: float | None = None

    @property
    def scale(self) -> int:
        return self.net.scale

    @property
    def validated_net(self) -> nn.Module:
        """The weights that validation measures: the EMA when kept, else the trained ones."""
        return self.ema.module if self.ema is not None else self.net

    @property
    def eval_net(self) -> nn.Module | None:
        """The network the running validation or test measures; None outside one."""
        return self._measured.net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        sr = self.net(batch["lr"])
        loss = self.loss_fn(sr, batch["hr"])
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        if self.finite_check_every <= 1 or (self.global_step + 1) % self.finite_check_every == 0:
            self.check_finite()
        n = batch["lr"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False,
                 batch_size=n)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "skipped", 0):
            self.log("train/skipped_images", float(dm.skipped), on_step=True, on_epoch=False, batch_size=n)
        return loss

    def check_finite(self) -> None:
        """Raise if any loss since the last check was NaN or infinite. Called every ``finite_check_every``
        steps and always before an epoch's checkpoint or validation, so no checkpoint holds broken weights."""
        step, first = self.global_step, self._checked_step
        self._checked_step = step + 1
        if self._nonfinite is not None and bool(self._nonfinite):
            raise NonFiniteLossError(
                f"non-finite loss between steps {first} and {step} (epoch {self.current_epoch}): training stopped. "
                "The last checkpoint saved before it is intact; resume from it with a lower optimizer.lr, gradient "
                "clipping (trainer.gradient_clip_val) or 32-bit precision.")
        self._nonfinite = None

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        threads.follow_load()  # on a CPU: as many threads as are free (other jobs, this run's data workers)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    # --- validation and test: per-set metrics on the deploy form -----------------------------------------------

    def setup(self, stage: str) -> None:
        """One metric per benchmark set and stage, made before a strategy wraps the module."""
        self._add_metrics()

    def _add_metrics(self) -> None:
        for name in getattr(self.trainer.datamodule, "val_names", []):
            for sets in self.metrics.values():
                if _key(name) not in sets:
                    sets[_key(name)] = SRQuality(crop=self.scale).to(self.device)

    def _start(self, stage: str) -> None:
        net = self.validated_net
        self._measured.net = reparameterize(net) if self.validate_form == "deploy" else net
        self._add_metrics()
        for metric in self.metrics[stage].values():
            metric.reset()

    def _measure(self, stage: str, batch: dict[str, Any]) -> None:
        sr = self.eval_net(batch["lr"].float() / 255.0).float()
        self.metrics[stage][_key(batch["set"][0])].update(sr, batch["hr"])

    def _end(self, stage: str) -> None:
        results = {}
        for name in getattr(self.trainer.datamodule, "val_names", []):
            metric = self.metrics[stage][_key(name)]
            r = as_floats(metric.compute())  # reduced across processes by torchmetrics
            if r["n"] == 0:
                continue
            results[name] = r
            self.log(f"{stage}/{name}/psnr", r["psnr_y"], add_dataloader_idx=False, sync_dist=False)
            self.log(f"{stage}/{name}/ssim", r["ssim_y"], add_dataloader_idx=False, sync_dist=False)
        if results:
            mean = {m: sum(r[m] for r in results.values()) / len(results) for m in ("psnr_y", "ssim_y")}
            self.log(f"{stage}/psnr", mean["psnr_y"], prog_bar=stage == "val", add_dataloader_idx=False)
            self.log(f"{stage}/ssim", mean["ssim_y"], add_dataloader_idx=False)
        self.results[stage] = results
        self._measured.net = None

    def on_validation_epoch_start(self) -> None:
        self.check_finite()  # a validation precedes a checkpoint
        self._start("val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        threads.follow_load()
        self._measure("val", batch)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validated_step = self.global_step
        self._end("val")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._measure("test", batch)

    def on_test_epoch_end(self) -> None:
        self._end("test")

    # --- optimisation ------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return opt
        scheduler = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    # --- exact resume: the random state travels with the checkpoint; so does the model config, inside the state
    # dict, so that tools that read only a file's tensors (spandrel) rebuild the network -----------------------

    @property
    def train_seconds(self) -> float:
        """Seconds of training so far, the parts before a resume included."""
        now = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.prior_train_seconds + now

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"][CONFIG_KEY] = config_tensor(self.net.config)
        checkpoint["train_seconds"] = self.train_seconds
        for sched in checkpoint.get("lr_schedulers", []):  # MultiStepLR keeps its milestones in a Counter, which
            if isinstance(sched.get("milestones"), Counter):  # safe unpicklers (spandrel's) refuse: a plain dict
                sched["milestones"] = dict(sched["milestones"])
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {  # tensors and plain values only: loadable with weights_only=True
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.get("state_dict", {}).pop(CONFIG_KEY, None)
        if self._fit_started is None:  # a resume (not the end of a run testing its best checkpoint)
            self.prior_train_seconds = float(checkpoint.get("train_seconds", 0.0))
        for sched in checkpoint.get("lr_schedulers", []):
            if isinstance(sched.get("milestones"), dict):
                sched["milestones"] = Counter(sched["milestones"])
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(states["python"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def _key(name: str) -> str:
    """A set's name as a module key (ModuleDict keys cannot contain dots)."""
    return name.replace(".", "_")
