"""``python -m rt4ksr.summary``: parameters, deploy-form cost and fusion error of a configured model, or the cost
of the model a weights file holds (``weights=NAME``, ``ckpt_path=FILE``)."""

from __future__ import annotations

import json

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.inference.loading import load_model
from rt4ksr.models.profile import summarize, summarize_deploy


@hydra_command("summary")
def main(cfg: DictConfig) -> None:
    torch.manual_seed(cfg.seed)
    if cfg.weights is None and cfg.ckpt_path is None:
        model = instantiate(cfg.model)
        s = summarize(model, cfg.seed)
        print(f"model: {_describe(model)} x{s['scale']}")
        print(f"parameters, training form: {s['params_train']:,}")
    else:
        loaded = load_model(cfg)
        model = loaded.model
        s = summarize_deploy(model)
        print(f"model: {loaded.source}: {_describe(model)} x{s['scale']}, deploy form")
    h, w = s["input"]
    print(f"parameters, deploy form:   {s['params_deploy']:,}")
    print(f"deploy MACs for {w}x{h} input: {s['macs_deploy'] / 1e9:.2f} G")
    published = model.published_params() if callable(getattr(model, "published_params", None)) else None
    if published is not None:
        print(f"parameters, published:     {published[0]:,} ({published[1]})")
    if s["fusion_max_abs_diff"] is not None:
        print(f"fusion max abs diff:       {s['fusion_max_abs_diff']:.3g}")
    if cfg.json:
        keys = ("params_train", "params_deploy", "macs_deploy", "fusion_max_abs_diff")
        print(json.dumps({**{k: s[k] for k in keys}, "params_published": published and published[0]}))


def _describe(model: torch.nn.Module) -> str:
    """The design's name, with RTSRN's block (its designs differ by block)."""
    name = getattr(model, "design", type(model).__name__)
    block = getattr(model, "config", {}).get("baseblock")
    return f"{name} (block {str(block['_target_']).rsplit('.', 1)[-1]})" if isinstance(block, dict) else name


if __name__ == "__main__":
    main()
