"""``python -m rt4ksr.summary``: parameters, deploy-form cost and fusion error of a configured model."""

from __future__ import annotations

import json

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rt4ksr.command import hydra_command
from rt4ksr.models.profile import summarize


@hydra_command("summary")
def main(cfg: DictConfig) -> None:
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model)
    s = summarize(model, cfg.seed)
    h, w = s["input"]
    print(f"model: {cfg.model._target_} x{s['scale']} (block {cfg.model.baseblock._target_.rsplit('.', 1)[-1]})")
    print(f"parameters, training form: {s['params_train']:,}")
    print(f"parameters, deploy form:   {s['params_deploy']:,}")
    print(f"deploy MACs for {w}x{h} input: {s['macs_deploy'] / 1e9:.2f} G")
    print(f"fusion max abs diff:       {s['fusion_max_abs_diff']:.3g}")
    if cfg.json:
        print(json.dumps({k: s[k] for k in ("params_train", "params_deploy", "macs_deploy", "fusion_max_abs_diff")}))


if __name__ == "__main__":
    main()
