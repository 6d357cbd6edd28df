"""Where the Hydra configs are, and the resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

_REPO_ROOT = Path(__file__).resolve().parents[2]
# the configs/ folder of the checkout this package was installed from (editable install), or RT4KSR_CONFIG_DIR
CONFIG_DIR = str(Path(os.environ.get("RT4KSR_CONFIG_DIR", _REPO_ROOT / "configs")).resolve())
PROJECT_ROOT = str(Path(CONFIG_DIR).parent)



def sample_images_dir() -> str:
    """scikit-image's bundled photos: a training set that needs no download."""
    import skimage

    return str(Path(skimage.__file__).parent / "data")


if not OmegaConf.has_resolver("rt4ksr_root"):
    OmegaConf.register_new_resolver("rt4ksr_root", lambda: PROJECT_ROOT)
if not OmegaConf.has_resolver("rt4ksr_sample_dir"):
    OmegaConf.register_new_resolver("rt4ksr_sample_dir", sample_images_dir)


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
