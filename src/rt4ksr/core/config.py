"""Where the Hydra configs are, and the resolvers they use."""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rt4ksr.core.errors import ConfigValueError

# The configs ship inside the package. Users add their own folder with Hydra's search path
# ('hydra.searchpath=[file:///path/to/configs]'): its files extend or override these, group by group.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def project_root() -> str:
    """Where default data, logs and caches are looked for: ``RT4KSR_ROOT``; else the source checkout this package
    runs from (so ``../shared`` beside it is found); else the current working directory (an installed package)."""
    if os.environ.get("RT4KSR_ROOT"):
        return str(Path(os.environ["RT4KSR_ROOT"]).resolve())
    checkout = Path(__file__).resolve().parents[3]
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


def named_on_command_line(group: str) -> bool:
    """Whether the command line set ``group`` or one of its keys (``model=rt4ksr_x3``, ``model.scale=3``), as
    opposed to the config's default: a choice the user made is checked, a default gives way."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    overrides = HydraConfig.get().overrides.task
    return any(o.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0] == group for o in overrides)


def resolve_device(name: str | int = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; a device this machine or this torch build does not have
    is a ``ConfigValueError`` that says why (a CPU-only torch, no GPU, an index past the last GPU)."""
    if name == "auto" or name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec = f"cuda:{name}" if isinstance(name, int) and not isinstance(name, bool) else str(name)
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigValueError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}") from None
    if device.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            raise ConfigValueError(f"device={spec}: this torch ({torch.__version__}) is a CPU-only build: install a "
                                   "CUDA build of torch (see docs/install.md), or use device=cpu")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigValueError(f"device={spec}: no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES): use "
                                   "device=cpu")
        if device.index is not None and device.index >= count:
            raise ConfigValueError(f"device={spec}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigValueError(f"device={spec}: Apple's MPS is not available here: use device=cpu")
    elif device.type != "cpu":
        raise ConfigValueError(f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return device


def int_option(key: str, value: object, low: int = 0, high: int | None = None, none: bool = False) -> int | None:
    """``value`` checked as an integer in [low, high] (None allowed when ``none``); a ``ConfigValueError`` that
    names ``key`` otherwise, before any work is done."""
    if value is None and none:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigValueError(f"{key} must be an integer {span}{' or null' if none else ''}, got {value!r}")
    return value


def int_list(key: str, value: object, length: int | None = None) -> list[int]:
    """``value`` checked as a list of positive integers (of ``length`` items when given), from a config list."""
    items = list(value) if isinstance(value, list | tuple) or hasattr(value, "__iter__") and not isinstance(
        value, str | bytes) else None
    if items is None or not items or (length is not None and len(items) != length) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        shape = f"{length} positive integers" if length else "a list of positive integers"
        raise ConfigValueError(f"{key} must be {shape}, e.g. {key}=[{', '.join(['64'] * (length or 2))}], "
                               f"got {value!r}")
    return items


def bool_list(key: str, value: object) -> list[bool]:
    """``value`` checked as a non-empty list of true/false, from a config list (``row_stores=[true,false]``)."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise ConfigValueError(f"{key} must be a list of true/false, e.g. {key}=[true,false], got {value!r}")
    return [bool(bool_option(key, v)) for v in value]


def choice_list(key: str, value: object, choices: tuple | list, example: str, single: bool = False) -> list:
    """``value`` checked as a non-empty list of ``choices`` (``single``: a lone choice counts as a list of one); the
    message shows ``example``."""
    items = [value] if single and (isinstance(value, str) or not isinstance(value, Sequence)) else value
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items or any(
            isinstance(v, bool) or v not in choices for v in items):
        raise ConfigValueError(f"{key} must be a list of {example}, got {value!r}")
    return list(items)


def choice_option(key: str, value: object, choices: tuple | list) -> Any:
    """``value`` checked as one of ``choices``; the message lists them (and the closest, for a typo)."""
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigValueError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}{hint}")


def bool_option(key: str, value: object, none: bool = False) -> bool | None:
    """``value`` checked as true or false (or null when ``none``); ``half=maybe`` is refused, not read as true."""
    if (value is None and none) or isinstance(value, bool):
        return value
    raise ConfigValueError(f"{key} must be {'true, false or null' if none else 'true or false'}, got {value!r}")


def number_option(key: str, value: object, low: float = 0.0, high: float | None = None,
                  none: bool = False) -> float | None:
    """``value`` checked as a number in (low, high] (None allowed when ``none``)."""
    if value is None and none:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not low < value or (
            high is not None and value > high) or value != value:
        span = f"in ({low:g}, {high:g}]" if high is not None else f"> {low:g}"
        raise ConfigValueError(f"{key} must be a number {span}{' or null' if none else ''}, got {value!r}")
    return float(value)
