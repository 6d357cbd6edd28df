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
        block = cfg.model.baseblock._target_
        print(f"model: {cfg.model._target_} x{s['scale']} (block {block.rsplit('.', 1)[-1]})")
        print(f"parameters, training form: {s['params_train']:,}")
    else:
        loaded = load_model(cfg)
        s = summarize_deploy(loaded.model)
        block = loaded.model.config["baseblock"]["_target_"]
        print(f"model: {loaded.source} x{s['scale']} (block {block.rsplit('.', 1)[-1]}, deploy form)")
    h, w = s["input"]
    print(f"parameters, deploy form:   {s['params_deploy']:,}")
    print(f"deploy MACs for {w}x{h} input: {s['macs_deploy'] / 1e9:.2f} G")
    if s["fusion_max_abs_diff"] is not None:
        print(f"fusion max abs diff:       {s['fusion_max_abs_diff']:.3g}")
    if cfg.json:
        print(json.dumps({k: s[k] for k in ("params_train", "params_deploy", "macs_deploy", "fusion_max_abs_diff")}))


if __name__ == "__main__":
    main()
