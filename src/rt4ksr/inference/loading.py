"""Loading a model for inference: one path from a file, a zoo entry or a config to a ``Loaded`` descriptor.

Every command and tool that runs a model goes through ``load_weights`` / ``load_file`` / ``load_state`` (and,
from a command's config, its adapter ``load_model``): the weights are read in any supported form (official,
Lightning, deploy files, safetensors, training or fused form), the architecture comes from the config the file
carries, else from the given model config, else (training form only) from the released design's shapes, and the
result is fused. ``Loaded.of`` describes a deploy-form network built elsewhere (a library user's, a test's)
the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from rt4ksr.core.config import named_on_command_line
from rt4ksr.core.errors import ConfigValueError
from rt4ksr.models import RTSRN, load_into, read_state_dict, reparameterize
from rt4ksr.models.catalog import class_of_config, identify, model_option, other_design
from rt4ksr.models.checkpoint import CONFIG_KEY, CheckpointMismatchError, is_deploy_state, network_state, read_config
from rt4ksr.models.pretrained import weights_path
from rt4ksr.models.profile import is_local, receptive_radius

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    """A model ready for inference and what its callers need to know: the fused network (fp32, CPU, eval),
    the training form when the weights were in it, and where the weights came from (None: random)."""

    model: nn.Module
    train_model: nn.Module | None = None
    source: str | None = None

    @classmethod
    def of(cls, model: nn.Module | Loaded) -> Loaded:
        """The descriptor of a deploy-form network (a ``Loaded`` is returned as it is)."""
        return model if isinstance(model, Loaded) else cls(model=model)

    @property
    def scale(self) -> int:
        return int(self.model.scale)

    @property
    def multiple(self) -> int:
        """The input grid the network pads to (its unshuffle factor): tiles start on it."""
        return int(getattr(self.model, "multiple", 1))

    @property
    def tileable(self) -> bool:
        """Tiles with enough context give the untiled output: no global operation."""
        return is_local(self.model)

    @property
    def radius(self) -> int:
        """LR pixels of context a tile needs for its output to equal the untiled one."""
        return receptive_radius(self.model)

    @property
    def supports_half(self) -> bool:
        """fp16 keeps the output within 0.01 dB (LayerNorm keeps fp32 statistics); bf16 does not."""
        return True


def model_from_config(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """The model a recorded config (``model.config``) describes: one of the catalog's designs (its
    ``_target_``; RTSRN when there is none), RTSRN's block given as a Hydra partial."""
    cfg = {k: v for k, v in dict(config).items() if k != "_target_"}
    cfg.update(overrides)
    cls = class_of_config(config)
    if cls is RTSRN:
        cfg["baseblock"] = instantiate(OmegaConf.create(dict(cfg["baseblock"])))
    return cls(**cfg)


def load_state(state: Mapping[str, Tensor], config: Mapping[str, Any] | None = None,
               model_cfg: DictConfig | Mapping[str, Any] | None = None, source: str = "checkpoint",
               model_named: bool = False) -> Loaded:
    """A state dict (wrapper prefixes and the carried config removed) as a ``Loaded`` model.

    The architecture is the carried ``config``; else ``model_cfg`` when the user named it (``model_named``),
    or when the keys show its design or none; else the design the keys show (published ``.pth`` files of
    every design in the catalog load without a model option), sized off its shapes. Fused weights of a
    re-parameterizing design with neither config cannot be rebuilt (fusing erases the block design). Weights of
    one design given to another are refused with the ``model=`` that fits them.
    """
    held = identify(state)
    configured = None if model_cfg is None else class_of_config(model_cfg, trusted=True)
    use_cfg = configured is not None and (model_named or held in (None, configured))
    if config is not None:
        cls = class_of_config(config)
    elif use_cfg:
        cls = configured
    elif held is not None:
        cls = held
    else:
        raise ConfigValueError(f"{source} carries no model config ('{CONFIG_KEY}') and its keys match no "
                               "architecture rt4ksr builds: give model=<preset> as well (model=rt4ksr_x2 or "
                               "model=rt4ksr_x3 for the released design), or use a file that carries it "
                               "(deploy_final.pth, a safetensors export, a zoo entry)")
    if held is not None and held is not cls:
        raise CheckpointMismatchError(f"{source} {other_design(held, cls, state)}")
    state = cls.adapt_state(state) if hasattr(cls, "adapt_state") else dict(state)
    deploy = is_deploy_state(state, config, cls)
    if config is not None:
        net = model_from_config(config, is_train=not deploy)
    elif use_cfg:
        net = instantiate(model_cfg, is_train=not deploy)
    elif not deploy or getattr(cls, "train_keys", None) is None:
        net = cls(**{**cls.config_of_state(state), "is_train": not deploy})
    else:
        raise ConfigValueError(f"{source} holds fused {cls.design} weights and carries no model config: give the "
                               f"model options it was trained with ({model_option(cls)} ...)")
    load_into(net, state, source)
    return Loaded(model=net if deploy else reparameterize(net), train_model=None if deploy else net, source=source)


def load_file(path: str | Path, model_cfg: DictConfig | Mapping[str, Any] | None = None,
              model_named: bool = False) -> Loaded:
    """Any supported weights file as a ``Loaded`` model; a file's own config wins over ``model_cfg``, since it
    describes the weights."""
    path = to_absolute_path(str(path))
    return load_state(read_state_dict(path), read_config(path), model_cfg, path, model_named)


def load_raw(obj: object, model_cfg: DictConfig | Mapping[str, Any] | None = None,
             source: str = "checkpoint") -> Loaded:
    """A loaded object (``torch.load``'s or a safetensors dict, as spandrel hands it over) as a ``Loaded``
    model: the network's weights and carried config are read out of it first."""
    state, config = network_state(obj, source)
    return load_state(state, config, model_cfg, source)


def load_weights(ckpt_path: str | Path | None, weights: str | None,
                 model_cfg: DictConfig | Mapping[str, Any] | None, default_scale: int | None = None,
                 model_named: bool = False) -> Loaded:
    """The model a command runs: the file ``ckpt_path``, the zoo entry ``weights``, or, given neither, the zoo's
    default at ``default_scale``; with no default scale, ``model_cfg``, randomly initialised.

    Files that carry their config decide the architecture; a model the user named (``model_named``: the command
    line's ``model=rt4ksr_x3``) must then agree with them on the scale, since that is what the user asked for.
    """
    path = weights_path(ckpt_path, weights, default_scale)
    if path is None:
        net = instantiate(model_cfg)
        return Loaded(model=reparameterize(net), train_model=net, source=None)
    loaded = load_file(path, model_cfg, model_named)
    wanted = None if model_cfg is None else model_cfg["scale"]
    given = f"weights={weights}" if weights else f"ckpt_path={ckpt_path or path}"
    asked = None if model_cfg is None else class_of_config(model_cfg, trusted=True)
    if model_named and not isinstance(loaded.model, asked):
        have = type(loaded.model)
        raise ConfigValueError(f"{given} holds {have.design} weights ({model_option(have, loaded.scale)}), but "
                               f"the model options ask for {asked.design}: drop them (the weights carry their "
                               f"config) or give {asked.design} weights")
    if model_named and loaded.scale != wanted:
        raise ConfigValueError(f"{given} is an x{loaded.scale} model, but the model options ask for "
                               f"x{wanted}: drop them (the weights carry their config) or give "
                               f"x{wanted} weights")
    return loaded


def load_model(cfg: DictConfig, default_scale: int | None = None) -> Loaded:
    """``load_weights`` with a command's config: its ``ckpt_path``, ``weights`` and ``model``, the last one
    checked against the weights when the command line named it."""
    return load_weights(cfg.get("ckpt_path"), cfg.get("weights"), cfg.get("model"), default_scale,
                        named_on_command_line("model"))
