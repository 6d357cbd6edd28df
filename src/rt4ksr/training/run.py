"""One training run, from a composed config to its checkpoints, deploy weights and metrics.json.

Each part does one job: build the module, fit, validate the final state, test the final and the best state
(Lightning's test loop, the best one from its checkpoint), save deploy-form weights, time, write the report.
``train(cfg)`` runs them in order. SIGTERM (a scheduler's stop, systemd, ``timeout``) and Ctrl-C stop it at a
batch boundary with ``last.ckpt`` saved and one line that gives the command to resume (``StopOnSignal``).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm

from rt4ksr.core import threads
from rt4ksr.core.errors import ConfigValueError, Stopped
from rt4ksr.core.files import torch_save, write_json, write_text
from rt4ksr.inference.evaluate import format_table
from rt4ksr.models import load_into, pretrained, read_state_dict, reparameterize
from rt4ksr.models.checkpoint import is_deploy_state, portable_state_dict
from rt4ksr.training.callbacks import RunProgress
from rt4ksr.training.module import SRModule

log = logging.getLogger(__name__)

OOM_HINT = ("CUDA ran out of memory. Try a smaller batch or crop (data.batch_size=32, data.lr_crop=96), "
            "mixed precision (trainer.precision=bf16-mixed), or fewer validation sets (data.test_sets=[set5]).")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def build_module(cfg: DictConfig) -> SRModule:
    """The configured network wrapped for training; ``init_from`` starts it from existing weights (a file or a
    zoo entry). The scheduler config carries its own ``interval`` (``step`` or ``epoch``)."""
    net = instantiate(cfg.model)
    if cfg.get("init_from"):
        source = str(cfg.init_from)
        path = hydra.utils.to_absolute_path(source)
        if not Path(path).exists() and source in pretrained.names():
            path = str(pretrained.entry(source).path)
        state = read_state_dict(path)
        if hasattr(net, "adapt_state"):  # a design's published .pth in its released names
            state = net.adapt_state(state)
        if is_deploy_state(state, None, type(net)) and net.config["is_train"]:
            raise ConfigValueError(f"init_from={source} holds fused weights; a training-form network needs a "
                                   "training-form checkpoint (official .pth, Lightning .ckpt or a training-form state "
                                   "dict), or train the deploy form itself (model.is_train=false)")
        load_into(net, state, source)
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


def validate_final_state(trainer: L.Trainer, module: SRModule, datamodule: Any,
                         stop: StopOnSignal | None = None) -> None:
    """Validate the state the run ends with, unless its last step was just validated.

    A run stopped by its time or step budget between two validations would otherwise be judged, and its
    best checkpoint chosen, on an older state.
    """
    if trainer.limit_val_batches == 0 or not datamodule.test_datasets():
        return
    if module.validated_step != trainer.global_step:
        log.info("validating the final state (step %d)", trainer.global_step)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        if stop is not None:
            stop.check()


def measure_state(trainer: L.Trainer, module: SRModule, datamodule: Any, ckpt_path: str | None = None,
                  stop: StopOnSignal | None = None) -> dict[str, dict[str, float | int]]:
    """Every benchmark set, in full, through Lightning's test loop: the module's current state, or the state in
    ``ckpt_path`` (which the module then holds). Returns {set: {psnr_y, ssim_y, n}}, reduced over processes."""
    if not datamodule.test_datasets():
        return {}
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    if stop is not None:
        stop.check()
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
    ckpt_cb = trainer.checkpoint_callback  # Lightning's ModelCheckpoint (monitoring the validation metric)
    if not isinstance(ckpt_cb, ModelCheckpoint) or not ckpt_cb.best_model_path or ckpt_cb.best_model_score is None:
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


def finish(cfg: DictConfig, trainer: L.Trainer, module: SRModule, datamodule: Any, out_dir: Path,
           train_seconds: float, stop: StopOnSignal | None = None) -> dict[str, Any]:
    """After ``fit``: validate and test the final state, test the best checkpoint when it is better, write both
    deploy-form weights, and write ``metrics.json`` from the module's results and run record (timing, health,
    last checkpoint: what the callbacks reported). The headline figures are the final state's; the best validated
    state is reported beside them. Runs on every process (the test loop is distributed); files are written by
    rank 0 only, and other ranks get an empty dict."""
    validate_final_state(trainer, module, datamodule, stop)
    step, rank0 = trainer.global_step, trainer.is_global_zero
    final_net = module.validated_net
    final = measure_state(trainer, module, datamodule, stop=stop)
    timing = module.record.get("timing")  # DeployTiming's, of the final state's test
    last = (module.record.get("last_checkpoint") or {}).get("path")
    deploy = None
    if rank0:
        deploy = save_deploy(final_net, out_dir / "deploy_final.pth", f"final state, step {step}")
        print(f"final state (step {step}):")
        print(format_table(final, deploy.scale))
    best_path, _ = best_checkpoint(trainer, _mean_psnr(final), step)
    if best_path is None:  # the final state is the best one validated
        best = {"source": "final state", "step": step, "checkpoint": last,
                "test_sets": final, "val_psnr": _mean_psnr(final)}
        if rank0:
            save_deploy(final_net, out_dir / "deploy_best.pth", f"final state, step {step}")
    else:
        best_results = measure_state(trainer, module, datamodule, ckpt_path=best_path, stop=stop)  # module holds it
        best_step = torch.load(best_path, map_location="cpu", weights_only=True).get("global_step")
        best = {"source": "best checkpoint", "step": best_step, "checkpoint": best_path,
                "test_sets": best_results, "val_psnr": _mean_psnr(best_results)}
        if rank0:
            save_deploy(module.validated_net, out_dir / "deploy_best.pth", best_path)
            print(f"best validated state (step {best_step}, {best_path}):")
            print(format_table(best_results, deploy.scale))
    if not rank0:
        return {}
    health = dict(module.record["health"]) if module.record.get("health") else None  # RunHealth's
    summary = health.pop("summary") if health else {}
    metrics = {
        "test_sets": final,
        "val_psnr": _mean_psnr(final),
        "source": "final state",
        "final_checkpoint": last,
        "deploy_weights": str(out_dir / "deploy_final.pth"),
        "best": {**best, "deploy_weights": str(out_dir / "deploy_best.pth")},
        "health": health,
        "timing": timing,
        "params_train": sum(p.numel() for p in final_net.parameters()),
        "params_deploy": sum(p.numel() for p in deploy.parameters()),
        "epochs": trainer.current_epoch,
        "global_step": step,
        "train_seconds": round(train_seconds, 1),
        "resumed_from": hydra.utils.to_absolute_path(cfg.ckpt_path) if cfg.get("ckpt_path") else None,
        "reproducible": _reproducible(cfg, trainer),
        "threads": threads.summary(),  # the CPU thread policy: its setting and how often the count moved
    }
    write_json(out_dir / "metrics.json", metrics)
    _wandb_summary(trainer, metrics, summary)
    if timing is not None:
        print(f"deploy-form speed: {timing['ms']:.2f} ms per {timing['width']}x{timing['height']} frame "
              f"({timing['fps']:.1f} FPS, {timing['dtype']}, {timing['device']})")
    if health is not None and health["status"] != "ok":
        log.warning("this run's health: %s (%d warning(s), listed in metrics.json)", health["status"],
                    len(health["warnings"]))
    log.info("deploy-form weights: %s (final), %s (best); metrics: %s", out_dir / "deploy_final.pth",
             out_dir / "deploy_best.pth", out_dir / "metrics.json")
    return metrics


def _reproducible(cfg: DictConfig, trainer: L.Trainer) -> bool:
    """Whether the same seed and config give the same weights: a seed, a step (not time) budget, and the CPU or
    deterministic algorithms."""
    deterministic = trainer.accelerator.__class__.__name__ == "CPUAccelerator" or bool(cfg.trainer.get("deterministic"))
    return cfg.get("seed") is not None and not cfg.trainer.get("max_time") and deterministic


def _wandb_summary(trainer: L.Trainer, metrics: dict[str, Any], health: dict[str, Any]) -> None:
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            flat = {f"final/{k}/{m}": v for k, r in metrics["test_sets"].items() for m, v in r.items()}
            flat.update({f"best/{k}/{m}": v for k, r in metrics["best"]["test_sets"].items() for m, v in r.items()})
            flat.update({"final/val_psnr": metrics["val_psnr"], "best/val_psnr": metrics["best"]["val_psnr"],
                         "best/step": metrics["best"]["step"], "final/params_deploy": metrics["params_deploy"]})
            if metrics["timing"]:
                flat.update({"final/ms": metrics["timing"]["ms"], "final/fps": metrics["timing"]["fps"]})
            flat.update(health)
            lg.experiment.summary.update(flat)


class StopOnSignal(Callback):
    """SIGTERM and SIGINT (Ctrl-C) during a run, handled as Lightning handles SIGTERM (its ``SignalConnector``,
    as under SLURM): the first signal sets ``trainer.received_sigterm``, Lightning's loops stop at their next
    batch boundary with ``SIGTERMException``, ``LastCheckpoint`` saves ``last.ckpt``, and ``train`` ends with
    ``Stopped``: one line with the command that resumes, status 143 (SIGTERM) or 130 (SIGINT). Outside
    Lightning's loops (setting up, writing the final files) a signal stops at once, as does a second signal.

    A signal sent to the whole process group reaches the DataLoader workers too. They inherit these handlers,
    which leave SIGINT to the main process; SIGTERM ends them (PyTorch's worker handler exits on it), and their
    end is part of the stop: from the first signal, PyTorch's SIGCHLD check, which would raise "DataLoader
    worker ... killed" wherever the main process is (in the middle of writing last.ckpt), is off, and a worker
    found dead when the next batch is fetched ends the run as the signal does, with last.ckpt saved.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    # Lightning's own lines about a signal ("Received SIGTERM", "Detected KeyboardInterrupt, attempting graceful
    # shutdown"): the stop is said in one line instead
    QUIET = ("lightning.pytorch.trainer.connectors.signal_connector", "lightning.pytorch.utilities.rank_zero")

    def __init__(self) -> None:
        self.signum: int | None = None
        self.trainer: L.Trainer | None = None
        self.finished_fit = False
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}
        self._sigchld: Any = None  # PyTorch's SIGCHLD handler, set aside from the first signal on
        self._levels: dict[str, int] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        self._quiet(self.QUIET[0])
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if self._sigchld is not None:
            signal.signal(signal.SIGCHLD, self._sigchld)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def _quiet(self, name: str) -> None:
        logger = logging.getLogger(name)
        self._levels.setdefault(name, logger.level)
        logger.setLevel(logging.WARNING)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the main process ends the run
            return
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        self._quiet(self.QUIET[1])
        if hasattr(signal, "SIGCHLD"):  # workers the signal ended: said when fetching, not mid-save
            self._sigchld = signal.signal(signal.SIGCHLD, _ignore)  # a Python no-op: a SIGCHLD already on its way
            # finds a Python handler (with SIG_DFL, Python would print "Signal 17 ignored due to race condition")
        connector = getattr(self.trainer, "_signal_connector", None)
        if connector is not None and connector._original_handlers:  # Lightning's loops run and check the flag
            connector.received_sigterm = True
            return
        raise KeyboardInterrupt  # setting up or writing the final files: nothing is half-trained

    def check(self) -> None:
        """Stop here if a signal came while Lightning ran a loop to its end (a signal on a loop's last batch)."""
        if self.signum is not None:
            raise KeyboardInterrupt

    def stopped(self, cfg: DictConfig) -> BaseException:
        """What ends the command: ``Stopped`` with the line to print (on rank 0; a quiet exit elsewhere)."""
        code = 128 + int(self.signum or signal.SIGINT)
        trainer = self.trainer
        if trainer is not None and not trainer.is_global_zero:
            return SystemExit(code)
        what = "terminated" if self.signum == signal.SIGTERM else "interrupted"
        module = trainer.lightning_module if trainer is not None else None
        last = getattr(module, "record", {}).get("last_checkpoint")  # LastCheckpoint's report
        step = last.get("step") if last and Path(last["path"]).is_file() else None
        if step is not None:
            path = Path(last["path"]).resolve()
            now = trainer.global_step
            where = (f"after training (step {now}), before its final files were written" if self.finished_fit
                     else f"at step {now}")
            saved = (f"checkpoint saved to {path}" if step == now
                     else f"the newest checkpoint, of step {step}, is {path}")
            return Stopped(f"{what} {where}: {saved}; resume with: {resume_command(path)}", code)
        given = Path(hydra.utils.to_absolute_path(cfg.ckpt_path)) if cfg.get("ckpt_path") else None
        again = f"resume with: {resume_command(given)}" if given else f"start again with: {resume_command(None)}"
        start = (last.get("start_step") or 0) if last else 0
        if trainer is not None and trainer.global_step > start:  # trained, but nothing saved
            why = ("the callbacks have no last_checkpoint" if last is None
                   else "fast_dev_run writes none" if trainer.fast_dev_run else "the stop came mid-step")
            return Stopped(f"{what} at step {trainer.global_step}: no checkpoint written ({why}); {again}", code)
        if given is not None:  # nothing trained past the checkpoint the run started from
            return Stopped(f"{what} before training went past {given}; {again}", code)
        return Stopped(f"{what} before the first training step: nothing to resume; {again}", code)


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


def resume_command(ckpt: Path | None) -> str:
    """The command that goes on with this run: ``rt4ksr train``, the overrides it was given, ``ckpt_path``
    set to ``ckpt``; quoted for a POSIX shell."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [*HydraConfig.get().overrides.hydra, *HydraConfig.get().overrides.task]
    except ValueError:  # composed without Hydra's main (tests, notebooks): no command line to repeat
        overrides = []
    skip = ("ckpt_path=", "+ckpt_path=", "++ckpt_path=", "hydra.mode=")
    args = [o for o in overrides if not o.startswith(skip)]
    if ckpt is not None:
        args.append(f"ckpt_path={_override_value(str(ckpt))}")
    return " ".join(["rt4ksr", "train", *(shlex.quote(a) for a in args)])


def _override_value(value: str) -> str:
    """A path as a Hydra override value: quoted when it holds characters the override grammar would parse."""
    if all(c.isalnum() or c in "/._-:~+" for c in value):
        return value
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)  # inside quotes, backslashes are literal
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body) + "'"  # except before a quote or at the end


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job as configured and return the final metrics (empty on ranks other than 0). SIGTERM
    or Ctrl-C during it saves ``last.ckpt`` and raises ``Stopped`` (see ``StopOnSignal``)."""
    with StopOnSignal() as stop, logging_redirect_tqdm():  # log lines print above Lightning's bar, not inside it
        try:
            return _train(cfg, stop)
        except (KeyboardInterrupt, SystemExit, RuntimeError):  # SystemExit: Lightning's, after a KeyboardInterrupt
            if stop.signum is None:  # RuntimeError: a DataLoader worker the signal reached first
                raise
            raise stop.stopped(cfg) from None


def _train(cfg: DictConfig, stop: StopOnSignal) -> dict[str, Any]:
    datamodule = instantiate(cfg.data)
    datamodule.check_sources()  # a missing data folder is said before anything starts
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    out_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None and not cfg.trainer.get("max_time"):
        threads.hold()  # a seeded step-budget run gives the same weights only on one thread count
    module = build_module(cfg)
    callbacks = [*_instantiate_all(cfg.get("callbacks")), RunProgress(), stop]
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    stop.trainer = trainer
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    for lg in loggers:
        lg.log_hyperparams(resolved)
    try:
        trainer.fit(module, datamodule=datamodule,
                    ckpt_path=hydra.utils.to_absolute_path(cfg.ckpt_path) if cfg.get("ckpt_path") else None)
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(OOM_HINT) from e
    stop.finished_fit = True
    stop.check()
    seconds = module.train_seconds  # the parts before a resume included
    return finish(cfg, trainer, module, datamodule, out_dir, seconds, stop)
