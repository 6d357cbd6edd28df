"""Probe a training recipe's stability: a plain step-budgeted loop over the recipe's data and network that
reports, as it goes, set5 PSNR, gradient-norm spikes and the share of dead GELU outputs.

    python scripts/stability_probe.py --lr 3e-3 --steps 4000 --seed 1
    python scripts/stability_probe.py --lr 1e-3 --beta2 0.999 --warmup 300 --schedule cosine --steps 12000

A spike is a step whose gradient norm exceeds 10x the median of the previous 100 steps. A dead output is a
GELU output within 1e-3 of zero (its input far in the negative tail, where the gradient vanishes); the report
gives the largest share over the blocks. Deterministic for a seed (no loader workers), so a collapse can be
replayed and inspected step by step.
"""

from __future__ import annotations

import argparse
import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from rt4ksr.core.config import compose
from rt4ksr.inference.evaluate import evaluate
from rt4ksr.training.schedules import warmup_cosine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="bsd200_x2")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--warmup", type=int, default=300, help="linear warm-up, optimizer steps")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--every", type=int, default=500, help="steps between reports")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for the experiment (data, model)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose("train", [f"experiment={args.experiment}", f"seed={args.seed}", *args.overrides])
    L.seed_everything(args.seed, workers=True)
    dm = instantiate(cfg.data, num_workers=0)
    dm.setup("fit")
    net = instantiate(cfg.model)
    set5 = next(d for d in dm.test_datasets() if d.name == "set5")
    opt = torch.optim.Adam([q for q in net.parameters() if q.requires_grad], lr=args.lr, betas=(0.9, args.beta2))
    loader = DataLoader(dm.train_dataset, batch_size=dm.batch_size, shuffle=True, drop_last=True)
    acts: dict[int, torch.Tensor] = {}
    for i, block in enumerate(net.body):
        if hasattr(block, "act"):
            block.act.register_forward_hook(lambda m, x, y, k=i: acts.__setitem__(k, y.detach()))
    print(f"step 0 set5 {evaluate(net.eval(), set5)['psnr_y']:.4f} (the network it starts from)", flush=True)
    net.train()
    step, norms, spikes, start, history = 0, [], 0, time.time(), []
    while step < args.steps:
        for batch in loader:
            if step >= args.steps:
                break
            fraction = step / args.steps if args.schedule == "cosine" else 0.0
            for g in opt.param_groups:
                g["lr"] = args.lr * warmup_cosine(step, fraction, args.warmup, 0.01)
            pair = dm.make_pairs(batch["hr"])
            loss = F.l1_loss(net(pair["lr"]), pair["hr"])
            opt.zero_grad()
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), math.inf))
            if len(norms) >= 100 and norm > 10 * sorted(norms[-100:])[50]:
                spikes += 1
            norms.append(norm)
            opt.step()
            step += 1
            if step % args.every == 0 or step == args.steps:
                psnr = evaluate(net.eval(), set5)["psnr_y"]
                net.train()
                history.append(psnr)
                dead = max(((a.abs() < 1e-3).float().mean().item() for a in acts.values()), default=0.0)
                print(f"step {step} set5 {psnr:.4f} spikes {spikes} max_dead {dead:.2f} "
                      f"({time.time() - start:.0f} s)", flush=True)
    print(f"seed {args.seed} lr {args.lr:g} beta2 {args.beta2} warmup {args.warmup} {args.schedule} {args.steps} "
          f"steps: final {history[-1]:.4f}, lowest after the first report {min(history[1:] or history):.4f}, "
          f"spikes {spikes}")


if __name__ == "__main__":
    main()
