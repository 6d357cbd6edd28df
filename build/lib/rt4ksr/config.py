"""Where the Hydra configs are, and the resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

# The configs ship inside the package. Users add their own folder with Hydra's search path
# ('hydra.searchpath=[file:///path/to/configs]'): its files extend or override these, group by group.
CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")


def project_root() -> str:
    """Where default data, logs and caches are looked for: ``RT4KSR_ROOT``; else the source checkout this package
    runs from (so ``../shared`` beside it is found); else the current working directory (an installed package)."""
    if os.environ.get("RT4KSR_ROOT"):
        return str(Path(os.environ["RT4KSR_ROOT"]).resolve())
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "rt4ksr").is_dir():
        return str(checkout)
    return str(Path.cwd())



def sample_images_dir() -> str:
    """scikit-image's bundled photos: a training set that needs no download."""
    import skimage

    return str(Path(skimage.__file__).parent / "data")


def wandb_offline() -> bool:
    """Offline unless wandb can authenticate without asking: WANDB_MODE wins, then an API key or a netrc login.

    Decided without any network call, so a run never waits on a connection; ``wandb sync`` uploads later.
    """
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return True
    if mode == "online":
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def sweep_group() -> str | None:
    """The multirun's folder name, so that every run of one sweep lands in one wandb group."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


if not OmegaConf.has_resolver("rt4ksr_root"):
    OmegaConf.register_new_resolver("rt4ksr_root", project_root)
if not OmegaConf.has_resolver("rt4ksr_sample_dir"):
    OmegaConf.register_new_resolver("rt4ksr_sample_dir", sample_images_dir)
if not OmegaConf.has_resolver("rt4ksr_wandb_offline"):
    OmegaConf.register_new_resolver("rt4ksr_wandb_offline", wandb_offline)
if not OmegaConf.has_resolver("rt4ksr_sweep_group"):
    OmegaConf.register_new_resolver("rt4ksr_sweep_group", sweep_group)


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """A config as the command line would build it, without running a Hydra app (tests, notebooks)."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = _compose(config_name, overrides=overrides or [], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = cfg.hydra.run.dir
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} resolves as in a real run
    return cfg


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
