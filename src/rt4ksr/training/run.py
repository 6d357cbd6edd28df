"""One training run, from a composed config to its checkpoints, deploy weights and metrics.json.

Each part does one job: build the module, fit, validate the final state, test the final and the best state
(Lightning's test loop, the best one from its checkpoint), save deploy-form weights, time, write the report.
``train(cfg)`` runs them in order.
"""

from __future__ import annotations

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

from rt4ksr.errors import ConfigValueError
from rt4ksr.files import torch_save, write_json, write_text
from rt4ksr.models import load_into, read_state_dict, reparameterize
from rt4ksr.models.checkpoint import is_deploy_state, portable_state_dict
from rt4ksr.quality.evaluate import format_table
from rt4ksr.training.callbacks import DeployTiming, LastCheckpoint, RunHealth
from rt4ksr.training.module import SRModule

log = logging.getLogger(__name__)

OOM_HINT = ("CUDA ran out of memory. Try a smaller batch or crop (data.batch_size=32, data.lr_crop=96), "
            "mixed precision (trainer.precision=bf16-mixed), or fewer validation sets (data.benchmarks=[set5]).")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def build_module(cfg: DictConfig) -> SRModule:
    """The configured network wrapped for training; ``init_from`` starts it from existing weights. The scheduler
    config carries its own ``interval`` (``step`` or ``epoch``)."""
    net = instantiate(cfg.model)
    if cfg.get("init_from"):
        state = read_state_dict(hydra.utils.to_absolute_path(cfg.init_from))
        if is_deploy_state(state):
            raise ConfigValueError(f"init_from={cfg.init_from} holds fused weights; training needs a training-form "
                             "checkpoint (official .pth, Lightning .ckpt or a training-form state dict)")
        load_into(net, state, cfg.init_from)
        log.info("weights initialised from %s", cfg.init_from)
    scheduler, interval = None, "epoch"
    if cfg.get("scheduler"):
        sched_cfg = OmegaConf.to_container(cfg.scheduler, resolve=True)
        interval = sched_cfg.pop("interval", "epoch")
        scheduler = instantiate(sched_cfg)
    return SRModule(net, loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer), scheduler=scheduler,
                    scheduler_interval=interval, ema_decay=cfg.ema_decay,
                    finite_check_every=cfg.get("finite_check_every", 50),
                    validate_form=cfg.get("validate_form", "deploy"))


def validate_final_state(trainer: L.Trainer, module: SRModule, datamodule: Any) -> None:
    """Validate the state the run ends with, unless its last step was just validated.

    A run stopped by its time or step budget between two validations would otherwise be judged, and its
    best checkpoint chosen, on an older state.
    """
    if trainer.limit_val_batches == 0 or not datamodule.benchmark_datasets():
        return
    if module.validated_step != trainer.global_step:
        log.info("validating the final state (step %d)", trainer.global_step)
        trainer.validate(module, datamodule=datamodule, verbose=False)


def measure_state(trainer: L.Trainer, module: SRModule, datamodule: Any, ckpt_path: str | None = None
               ) -> dict[str, dict[str, float | int]]:
    """Every benchmark set, in full, through Lightning's test loop: the module's current state, or the state in
    ``ckpt_path`` (which the module then holds). Returns {set: {psnr_y, ssim_y, n}}, reduced over processes."""
    if not datamodule.benchmark_datasets():
        return {}
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    return dict(module.results.get("test", {}))


def save_deploy(net: torch.nn.Module, path: Path, source: str) -> torch.nn.Module:
    """Fuse ``net`` (a copy: the training weights stay) and write its deploy-form weights atomically."""
    deploy = reparameterize(net)
    torch_save({"state_dict": portable_state_dict(deploy), "config": deploy.config, "source": source}, path)
    return deploy


def best_checkpoint(trainer: L.Trainer, final_value: float | None, final_step: int | None = None
                    ) -> tuple[str | None, float | None]:
    """The best validated checkpoint and its score, or (None, None) when the final state is that state or at
    least as good (the same answer on every process: the scores are reduced ones)."""
    ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt_cb is None or not ckpt_cb.best_model_path or ckpt_cb.best_model_score is None:
        return None, None
    score = float(ckpt_cb.best_model_score)
    if final_value is not None and final_value >= score - 1e-6:  # val/psnr is logged in float32
        return None, None
    if final_step is not None and Path(ckpt_cb.best_model_path).is_file():
        if torch.load(ckpt_cb.best_model_path, map_location="cpu", weights_only=True).get("global_step") == final_step:
            return None, None
    return ckpt_cb.best_model_path, score


def _mean_psnr(results: dict[str, dict[str, float | int]]) -> float | None:
    return sum(r["psnr_y"] for r in results.values()) / len(results) if results else None


def _find(trainer: L.Trainer, kind: type) -> Any:
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)


def finish(cfg: DictConfig, trainer: L.Trainer, module: SRModule, datamodule: Any, out_dir: Path,
           train_seconds: float) -> dict[str, Any]:
    """After ``fit``: validate and test the final state, test the best checkpoint when it is better, write both
    deploy-form weights, time the final one, and write ``metrics.json``. The headline figures are the final
    state's; the best validated state is reported beside them. Runs on every process (the test loop is
    distributed); files are written by rank 0 only, and other ranks get an empty dict."""
    validate_final_state(trainer, module, datamodule)
    health, last = _find(trainer, RunHealth), _find(trainer, LastCheckpoint)
    step, rank0 = trainer.global_step, trainer.is_global_zero
    final_net = module.validated_net
    final = measure_state(trainer, module, datamodule)
    deploy = None
    if rank0:
        deploy = save_deploy(final_net, out_dir / "deploy_final.pth", f"final state, step {step}")
        print(f"final state (step {step}):")
        print(format_table(final, deploy.scale))
    best_path, _ = best_checkpoint(trainer, _mean_psnr(final), step)
    if best_path is None:  # the final state is the best one validated
        best = {"source": "final state", "step": step, "checkpoint": str(last.path) if last else None,
                "benchmarks": final, "val_psnr": _mean_psnr(final)}
        if rank0:
            save_deploy(final_net, out_dir / "deploy_best.pth", f"final state, step {step}")
    else:
        best_results = measure_state(trainer, module, datamodule, ckpt_path=best_path)  # the module now holds it
        best_step = torch.load(best_path, map_location="cpu", weights_only=True).get("global_step")
        best = {"source": "best checkpoint", "step": best_step, "checkpoint": best_path,
                "benchmarks": best_results, "val_psnr": _mean_psnr(best_results)}
        if rank0:
            save_deploy(module.validated_net, out_dir / "deploy_best.pth", best_path)
            print(f"best validated state (step {best_step}, {best_path}):")
            print(format_table(best_results, deploy.scale))
    if not rank0:
        return {}
    timing_cb = _find(trainer, DeployTiming)
    device = trainer.strategy.root_device  # Lightning's teardown has moved the module back to the CPU by now
    timing = timing_cb.measure(deploy.to(device), device, deploy.scale) \
        if timing_cb and timing_cb.time_inference else None
    metrics = {
        "benchmarks": final,
        "val_psnr": _mean_psnr(final),
        "source": "final state",
        "final_checkpoint": str(last.path) if last else None,
        "deploy_weights": str(out_dir / "deploy_final.pth"),
        "best": {**best, "deploy_weights": str(out_dir / "deploy_best.pth")},
        "health": _health_record(health),
        "timing": timing,
        "params_train": sum(p.numel() for p in final_net.parameters()),
        "params_deploy": sum(p.numel() for p in deploy.parameters()),
        "epochs": trainer.current_epoch,
        "global_step": step,
        "train_seconds": round(train_seconds, 1),
        "reproducible": _reproducible(cfg, trainer),
    }
    write_json(out_dir / "metrics.json", metrics)
    _wandb_summary(trainer, metrics, health)
    if health is not None and health.status != "ok":
        log.warning("this run's health: %s (%d warning(s), listed in metrics.json)", health.status,
                    len(health.warnings))
    log.info("deploy-form weights: %s (final), %s (best); metrics: %s", out_dir / "deploy_final.pth",
             out_dir / "deploy_best.pth", out_dir / "metrics.json")
    return metrics


def _health_record(health: RunHealth | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {"status": health.status, "warnings": health.warnings, "metric": health.metric,
            "baseline": health.baseline, "validations": health.validations}


def _reproducible(cfg: DictConfig, trainer: L.Trainer) -> bool:
    """Whether the same seed and config give the same weights: a seed, a step (not time) budget, and the CPU or
    deterministic algorithms."""
    deterministic = trainer.accelerator.__class__.__name__ == "CPUAccelerator" or bool(cfg.trainer.get("deterministic"))
    return cfg.get("seed") is not None and not cfg.trainer.get("max_time") and deterministic


def _wandb_summary(trainer: L.Trainer, metrics: dict[str, Any], health: RunHealth | None) -> None:
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            flat = {f"final/{k}/{m}": v for k, r in metrics["benchmarks"].items() for m, v in r.items()}
            flat.update({f"best/{k}/{m}": v for k, r in metrics["best"]["benchmarks"].items() for m, v in r.items()})
            flat.update({"final/val_psnr": metrics["val_psnr"], "best/val_psnr": metrics["best"]["val_psnr"],
                         "best/step": metrics["best"]["step"], "final/params_deploy": metrics["params_deploy"]})
            if metrics["timing"]:
                flat.update({"final/ms": metrics["timing"]["ms"], "final/fps": metrics["timing"]["fps"]})
            if health is not None:
                flat.update(health.summary())
            lg.experiment.summary.update(flat)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job as configured and return the final metrics (empty on ranks other than 0)."""
    datamodule = instantiate(cfg.data)
    datamodule.check_sources()  # a missing data folder is said before anything starts
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    out_dir = Path(cfg.paths.output_dir)
    module = build_module(cfg)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    for lg in loggers:
        lg.log_hyperparams(resolved)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule,
                    ckpt_path=hydra.utils.to_absolute_path(cfg.ckpt_path) if cfg.get("ckpt_path") else None)
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(OOM_HINT) from e
    seconds = time.perf_counter() - start
    return finish(cfg, trainer, module, datamodule, out_dir, seconds)
