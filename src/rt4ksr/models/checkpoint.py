"""Reading weights: the official RT4KSR checkpoints, Lightning checkpoints and plain state dicts."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from rt4ksr.core.errors import InputNotFoundError
from rt4ksr.models.catalog import CheckpointMismatchError, identify, other_design
from rt4ksr.models.rtsrn import RTSRN

# prefixes that wrappers add to the network's own keys: DataParallel/DDP, LightningModules, torch.compile
_PREFIXES = ("module.", "net.", "model.", "_orig_mod.")
_EMA = "ema.module."
# The model config travels inside the state dict as a uint8 tensor of JSON, so that tools which keep only the
# tensors of a file (spandrel, chaiNNer, ComfyUI, safetensors readers) still know the architecture.
CONFIG_KEY = "rt4ksr_config"


def config_tensor(config: Mapping) -> Tensor:
    """A model config as the uint8 tensor stored under ``CONFIG_KEY``."""
    return torch.tensor(list(json.dumps(dict(config), sort_keys=True).encode()), dtype=torch.uint8)


def config_from_tensor(t: Tensor) -> dict:
    """The model config stored by ``config_tensor``."""
    return json.loads(bytes(t.cpu().numpy().tobytes()).decode())


def portable_state_dict(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """The model's weights on the CPU (in ``dtype`` for floating tensors) with its config under ``CONFIG_KEY``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v.contiguous() for k, v in state.items()}
    state[CONFIG_KEY] = config_tensor(model.config)
    return state


def export_kind(path: Path) -> str | None:
    """``ONNX`` or ``TorchScript`` when ``path`` is such an export (which holds a graph, not a state dict to load
    into the configured model), else None. TorchScript is a zip with ``code/`` and ``constants.pkl``; ONNX is a
    protobuf (no magic number) named ``.onnx``, or one whose first field is the IR version and that names its
    producer and opset near the start."""
    if path.suffix.lower() == ".onnx":
        return "ONNX"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "TorchScript"
        return None
    with open(path, "rb") as f:
        head = f.read(256)
    if head[:1] == b"\x08" and b"\x12" in head[:16] and (b"pytorch" in head or b"onnx" in head.lower()):
        return "ONNX"
    return None


def _load(path: Path) -> object:
    """A ``.pth``/``.ckpt`` file's object; an unreadable file is a ``CheckpointMismatchError`` naming it."""
    kind = export_kind(path)
    if kind is not None:
        runtime = " (backend=onnxruntime runs them through ONNX Runtime)" if kind == "ONNX" else ""
        raise CheckpointMismatchError(f"{path} is a{'n' if kind == 'ONNX' else ''} {kind} export, not weights: give "
                                      f"the .pth, .ckpt or .safetensors weights it was exported from{runtime}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects beyond tensors and plain values
        raise CheckpointMismatchError(f"cannot read {path} as a checkpoint ({type(e).__name__}: "
                                      f"{str(e).splitlines()[0][:160]})") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The network weights in any supported file, with wrapper prefixes removed (the EMA weights when a
    Lightning checkpoint has them)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint not found: {path}")
    obj = _load_safetensors(path) if path.suffix == ".safetensors" else _load(path)
    return network_state(obj, str(path))[0]


def network_state(obj: object, source: str = "checkpoint") -> tuple[dict[str, Tensor], dict | None]:
    """The network's weights and the config it carries (or None) in a loaded file: an official checkpoint,
    a Lightning checkpoint (EMA weights when there are any), a deploy file, an export or a bare state dict."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # official (epoch, state_dict, optimizer, ...) and Lightning checkpoints
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors")
    config = config_from_tensor(obj[CONFIG_KEY]) if CONFIG_KEY in obj else None
    obj = {k: v for k, v in obj.items() if k != CONFIG_KEY}
    if any(k.startswith(_EMA) for k in obj):  # a run with an EMA validated (and keeps) the averaged weights
        return {_strip(k[len(_EMA):]): v for k, v in obj.items() if k.startswith(_EMA)}, config
    return {_strip(k): v for k, v in obj.items() if not k.startswith("ema.")}, config


def read_config(path: str | Path) -> dict | None:
    """The model config a file carries (``deploy_best.pth``, exports), or None."""
    path = Path(path)
    obj = _load_safetensors(path) if path.suffix == ".safetensors" else _load(path)
    if not isinstance(obj, Mapping):
        return None
    state = obj.get("state_dict")
    if isinstance(state, Mapping) and isinstance(state.get(CONFIG_KEY), Tensor):
        return config_from_tensor(state[CONFIG_KEY])
    if isinstance(obj.get(CONFIG_KEY), Tensor):
        return config_from_tensor(obj[CONFIG_KEY])
    cfg = obj.get("config")
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if path.suffix == ".safetensors":  # files that carry the config in their metadata only
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta[CONFIG_KEY]) if CONFIG_KEY in meta else None
    return None


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointMismatchError(f"cannot read {path} as safetensors ({e})") from None


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def is_deploy_state(state: Mapping[str, Tensor], config: Mapping | None = None,
                    design: type[nn.Module] = RTSRN) -> bool:
    """Whether a state dict is fused. A carried config says it (``is_train``); otherwise the keys do: a fused
    state has none of the keys that only the design's training form has (``train_keys``; for RTSRN the
    expand/fea/reduce convolutions, RepConv and the unused high-frequency branch, kept only by ``forget=true``
    networks, which therefore need their config). A design that does not re-parameterize has one form."""
    if config is not None and "is_train" in config:
        return not config["is_train"]
    pattern = getattr(design, "train_keys", None)
    return pattern is not None and not any(re.search(pattern, k) for k in state)


def load_into(model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint") -> nn.Module:
    """Strict loading; a mismatch is one line naming the first differing keys and, where the shapes tell it,
    the setting that fits (``model=rt4ksr_x3``, ``model.feature_channels=...``)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        held = identify(state)
        if held is not None and not isinstance(model, held):
            raise CheckpointMismatchError(f"{source} {other_design(held, type(model), state)}")
        found = [f"{len(items)} {title} ({', '.join(items[:2])}{', ...' if len(items) > 2 else ''})"
                 for title, items in (("shape mismatches", shapes), ("missing keys", missing),
                                      ("unexpected keys", unexpected)) if items]
        raise CheckpointMismatchError(f"{source} does not fit the configured model: {'; '.join(found)}. "
                                      f"{_fitting_setting(state, getattr(model, 'config', {}), type(model))}")
    model.load_state_dict(state, strict=True)
    return model


def _fitting_setting(state: Mapping[str, Tensor], config: Mapping, design: type[nn.Module] = RTSRN) -> str:
    """What to change so that the model fits the checkpoint, read off the checkpoint's shapes."""
    hints = []
    if design is not RTSRN and hasattr(design, "config_of_state") and config:
        try:
            fits = design.config_of_state(state)
        except Exception:  # a partial state dict: no shapes to read
            fits = {}
        hints = [f"model.{k}={v}" for k, v in fits.items() if config.get(k) != v]
    elif "head.0.weight" in state and "upsample.0.weight" in state and config:
        channels = config.get("num_channels", 3)
        up = round((state["upsample.0.weight"].shape[0] / channels) ** 0.5)
        downscaling = config.get("downscaling", 2)
        scale = up / downscaling
        if scale != config.get("scale") and scale == int(scale):
            scale = int(scale)
            family = {2: "rt4ksr", 1: "rtsrn_base"}.get(downscaling)  # the presets of configs/model, x2 to x4
            hints.append(f"model={family}_x{scale}" if family and scale in (2, 3, 4) else f"model.scale={scale}")
        c = state["head.0.weight"].shape[0]
        if c != config.get("feature_channels"):
            hints.append(f"model.feature_channels={c}")
        blocks = len({k.split(".")[1] for k in state if k.startswith("body.")})
        if blocks and blocks != config.get("num_blocks"):
            hints.append(f"model.num_blocks={blocks}")
    if hints:
        return f"The checkpoint's shapes say: {' '.join(hints)}"
    return ("Give the model config it was trained with (a run's .hydra/config.yaml, or model=<preset> and "
            "model.baseblock=<block>)")


def official_config(state: Mapping[str, Tensor]) -> dict:
    """The released architecture's hyper-parameters, read off an official state dict's shapes."""
    return RTSRN.config_of_state(state)


def load_official(path: str | Path) -> RTSRN:
    """The published RT4KSR network (x2 or x3, detected from the weights), strictly loaded in training form."""
    state = read_state_dict(path)
    if "upsample.0.weight" not in state or "head.0.weight" not in state:
        raise CheckpointMismatchError(f"{path} is not an RT4KSR checkpoint (no head/upsample weights)")
    model = RTSRN(**official_config(state))  # the defaults are the released design
    return load_into(model, state, str(path))
