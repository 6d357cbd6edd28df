"""Callbacks: fuse-validate-time before each validation, and a checkpoint on Ctrl-C."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from rt4ksr.data.degradation import imresize
from rt4ksr.lit import SRModule
from rt4ksr.models import reparameterize
from rt4ksr.timing import time_inference, uhd_input

log = logging.getLogger(__name__)


class FuseValidateTime(Callback):
    """Before each validation: a fused (deploy-form) copy of the model is what gets validated. After it: the
    copy's 1080p-to-4K (x2) or 720p-to-4K (x3) inference is timed and logged as ``val/ms`` and ``val/fps``.

    The training weights are never touched. On CUDA the timing is the deployment setting (fp16,
    channels_last, warm-up, CUDA events, median); on the CPU fp32 at ``cpu_size``, since 4K is slow there.
    With a wandb logger, a table of ``log_images`` crops of the first set (LR, bicubic, SR, HR) is logged.
    """

    def __init__(self, time_inference: bool = True, cuda_warmup: int = 10, cuda_repeats: int = 50,
                 cpu_size: tuple[int, int] | list[int] = (135, 240), cpu_repeats: int = 3, log_images: int = 2,
                 image_crop: int = 96) -> None:
        self.time_inference, self.cuda_warmup, self.cuda_repeats = time_inference, cuda_warmup, cuda_repeats
        self.cpu_size, self.cpu_repeats = tuple(cpu_size), cpu_repeats
        self.log_images, self.image_crop = log_images, image_crop
        self.last_timing: dict[str, Any] | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: SRModule) -> None:
        pl_module.set_eval_net(reparameterize(pl_module.validated_net))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: SRModule) -> None:
        deploy = pl_module.__dict__["_eval_net"]
        try:
            if deploy is None or trainer.sanity_checking:
                return
            if self.time_inference and trainer.is_global_zero:
                self.last_timing = self.measure(deploy, pl_module.device, pl_module.scale)
                pl_module.log("val/ms", self.last_timing["ms"], rank_zero_only=True)
                pl_module.log("val/fps", self.last_timing["fps"], rank_zero_only=True)
            if self.log_images and trainer.is_global_zero:
                self._log_images(trainer, deploy, pl_module)
        finally:
            pl_module.set_eval_net(None)

    def measure(self, deploy: torch.nn.Module, device: torch.device, scale: int) -> dict[str, Any]:
        if device.type == "cuda":
            return time_inference(deploy, uhd_input(scale), device, warmup=self.cuda_warmup,
                                  repeats=self.cuda_repeats)
        return time_inference(deploy, self.cpu_size, device, warmup=1, repeats=self.cpu_repeats)

    @torch.no_grad()
    def _log_images(self, trainer: L.Trainer, deploy: torch.nn.Module, pl_module: SRModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        sets = getattr(trainer.datamodule, "benchmark_datasets", lambda: [])()
        if not loggers or not sets:
            return
        import wandb

        s, c = pl_module.scale, self.image_crop
        rows = []
        for i in range(min(self.log_images, len(sets[0]))):
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


def _to_hwc(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class InterruptCheckpoint(Callback):
    """Ctrl-C saves ``last.ckpt`` (the state at that moment), so ``ckpt_path=.../last.ckpt`` resumes."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return  # e.g. a non-finite loss: the last good checkpoint stays as it was
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        log.warning("interrupted: checkpoint saved to %s (resume with ckpt_path=%s)", path, path)
