"""The LightningModule that trains any RTSRN variant."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rt4ksr.metrics import y_psnr_ssim


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stops, and the last good checkpoint stays as it was."""


class SRModule(L.LightningModule):
    """Training step on device-degraded batches; validation of the deploy form on the benchmarks.

    ``FuseValidateTime`` hands in the fused copy to validate (``eval_net``) before each validation; without it
    the training form is validated. With ``ema_decay > 0`` an exponential moving average of the weights is
    kept and is what gets fused and validated.
    """

    def __init__(self, net: nn.Module, loss: nn.Module, optimizer: Callable[..., Optimizer],
                 scheduler: Callable[..., Any] | None = None, scheduler_interval: str = "epoch",
                 ema_decay: float = 0.0, finite_check_every: int = 50) -> None:
        super().__init__()
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
        self._val: dict[str, Tensor] = {}
        self.validated_step: int | None = None  # the global step of the newest validation (sanity checks aside)
        self.__dict__["_eval_net"] = None  # not a registered sub-module: never in checkpoints

    @property
    def scale(self) -> int:
        return self.net.scale

    @property
    def validated_net(self) -> nn.Module:
        """The weights that validation measures: the EMA when kept, else the trained ones."""
        return self.ema.module if self.ema is not None else self.net

    def set_eval_net(self, net: nn.Module | None) -> None:
        self.__dict__["_eval_net"] = net

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

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    # --- validation: per-image Y-PSNR/SSIM sums, reduced exactly across ranks -------------------------------

    def on_validation_epoch_start(self) -> None:
        self.check_finite()  # a validation precedes a checkpoint
        names = getattr(self.trainer.datamodule, "val_names", [])
        self._val = {n: torch.zeros(3, dtype=torch.float64, device=self.device) for n in names}

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        net = self.__dict__["_eval_net"] if self.__dict__["_eval_net"] is not None else self.validated_net
        lr = batch["lr"].float() / 255.0
        sr = net(lr).float()
        p, s = y_psnr_ssim(sr, batch["hr"], crop=self.scale)
        acc = self._val.setdefault(batch["set"][0], torch.zeros(3, dtype=torch.float64, device=self.device))
        acc += torch.tensor([sum(p), sum(s), len(p)], dtype=torch.float64, device=self.device)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validated_step = self.global_step
        psnrs, ssims = [], []
        for name in sorted(self._val):
            total = self.trainer.strategy.reduce(self._val[name], reduce_op="sum")
            if total[2] == 0:
                continue
            psnr, ssim = float(total[0] / total[2]), float(total[1] / total[2])
            self.log(f"val/{name}/psnr", psnr, add_dataloader_idx=False)
            self.log(f"val/{name}/ssim", ssim, add_dataloader_idx=False)
            psnrs.append(psnr)
            ssims.append(ssim)
        if psnrs:
            self.log("val/psnr", sum(psnrs) / len(psnrs), prog_bar=True, add_dataloader_idx=False)
            self.log("val/ssim", sum(ssims) / len(ssims), add_dataloader_idx=False)

    # --- optimisation ------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return opt
        scheduler = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    # --- exact resume: the random state travels with the checkpoint ------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {  # tensors and plain values only: loadable with weights_only=True
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(states["python"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
