"""``python -m rt4ksr.train model=rt4ksr_x2 [experiment=...] [overrides]``: train, fuse, validate, time, save."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from rt4ksr.callbacks import FuseValidateTime
from rt4ksr.config import CONFIG_DIR
from rt4ksr.evaluation import evaluate, format_table
from rt4ksr.lit import SRModule
from rt4ksr.models import load_into, read_state_dict, reparameterize
from rt4ksr.models.checkpoint import is_deploy_state

log = logging.getLogger(__name__)

OOM_HINT = ("CUDA ran out of memory. Try a smaller batch or crop (data.batch_size=32, data.lr_crop=96), "
            "mixed precision (trainer.precision=bf16-mixed), or fewer validation sets (data.benchmarks=[set5]).")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def build_module(cfg: DictConfig) -> SRModule:
    """The configured network wrapped for training; ``init_from`` starts it from existing weights."""
    net = instantiate(cfg.model)
    if cfg.get("init_from"):
        state = read_state_dict(hydra.utils.to_absolute_path(cfg.init_from))
        if is_deploy_state(state):
            raise ValueError(f"init_from={cfg.init_from} holds fused weights; training needs a training-form "
                             "checkpoint (official .pth, Lightning .ckpt or a training-form state dict)")
        load_into(net, state, cfg.init_from)
        log.info("weights initialised from %s", cfg.init_from)
    return SRModule(net, loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer),
                    scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                    scheduler_interval=cfg.get("scheduler_interval", "epoch"), ema_decay=cfg.ema_decay,
                    finite_check_every=cfg.get("finite_check_every", 50))


def finalize(cfg: DictConfig, trainer: L.Trainer, module: SRModule, datamodule: Any, out_dir: Path,
             train_seconds: float) -> dict[str, Any]:
    """Deploy-form weights of the best model, its benchmark results and timing, in the run directory."""
    ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = ckpt_cb.best_model_path if ckpt_cb and ckpt_cb.best_model_path else None
    net = instantiate(cfg.model)
    if best:
        load_into(net, read_state_dict(best), best)
    else:
        net.load_state_dict(module.validated_net.state_dict())
    deploy = reparameterize(net).to(module.device)
    deploy_path = out_dir / "deploy_best.pth"
    torch.save({"state_dict": {k: v.cpu() for k, v in deploy.state_dict().items()}, "config": deploy.config,
                "source": best or "final weights"}, deploy_path)
    results = {ds.name: evaluate(deploy, ds) for ds in datamodule.benchmark_datasets()}
    print(format_table(results, deploy.scale))
    fvt = next((c for c in trainer.callbacks if isinstance(c, FuseValidateTime)), None)
    timing = fvt.measure(deploy, module.device, deploy.scale) if fvt and fvt.time_inference else None
    metrics = {
        "benchmarks": results,
        "val_psnr": sum(r["psnr_y"] for r in results.values()) / len(results) if results else None,
        "timing": timing,
        "params_train": sum(p.numel() for p in net.parameters()),
        "params_deploy": sum(p.numel() for p in deploy.parameters()),
        "best_checkpoint": best,
        "deploy_weights": str(deploy_path),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "train_seconds": round(train_seconds, 1),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            flat = {f"final/{k}/{m}": v for k, r in results.items() for m, v in r.items()}
            flat.update({"final/val_psnr": metrics["val_psnr"], "final/params_deploy": metrics["params_deploy"]})
            if timing:
                flat.update({"final/ms": timing["ms"], "final/fps": timing["fps"]})
            lg.experiment.summary.update(flat)
    log.info("deploy-form weights: %s; metrics: %s", deploy_path, out_dir / "metrics.json")
    return metrics


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job as configured and return the final metrics (empty on ranks other than 0)."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    out_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    for lg in loggers:
        lg.log_hyperparams(resolved)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule,
                    ckpt_path=hydra.utils.to_absolute_path(cfg.ckpt_path) if cfg.get("ckpt_path") else None)
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(OOM_HINT) from e
    seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return {}
    return finalize(cfg, trainer, module, datamodule, out_dir, seconds)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass
    return metrics.get("val_psnr")


if __name__ == "__main__":
    main()
