"""The deploy network on every CPU runtime at several input sizes, timed in one interleaved run.

    python scripts/cpu_runtimes.py --out docs/results/cpu_runtimes.json [--sizes 135x240 540x960 1080x1920]

Runtimes: eager PyTorch (whole image, NCHW), eager in the upscaler's 512-pixel tiles, eager channels_last,
``torch.compile`` (Inductor, CPU), ONNX Runtime and OpenVINO through ``rt4ksr.inference.runtimes`` (cached
export, the thread policy). Each size is its own interleaved run (``rt4ksr.core.stats.interleaved``): median and
IQR of ms per image over ``--rounds``, all on the threads the policy gives an idle machine. This is what
``backend=auto`` is chosen from (``rt4ksr.inference.upscaler.choose_backend``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import sys
from pathlib import Path

import torch

from rt4ksr.core import threads
from rt4ksr.core.stats import interleaved, wall_ms
from rt4ksr.inference import runtimes
from rt4ksr.inference.cpu_memory import keep_freed_memory
from rt4ksr.inference.loading import load_file
from rt4ksr.inference.upscaler import Upscaler
from rt4ksr.models.pretrained import weights_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weights", default="official-x2")
    ap.add_argument("--sizes", nargs="+", default=["135x240", "540x960", "1080x1920"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=3, help="calls per round (their mean is the round's figure)")
    args = ap.parse_args()
    policy = threads.configure(None, announce=False)
    keep_freed_memory()
    torch.set_grad_enabled(False)
    model = load_file(weights_path(None, args.weights, None)).model.eval()
    report = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "weights": args.weights,
              "threads": policy.describe(), "torch": torch.__version__, "python": platform.python_version(),
              "sizes": {}}
    cpu = torch.device("cpu")
    tiled, whole = Upscaler(model, cpu, tile=None), Upscaler(model, cpu, tile=0)
    cl = model.to(memory_format=torch.channels_last)
    compiled = torch.compile(model)
    extra = {b: runtimes.RUNNERS[b](model) for b in ("onnxruntime", "openvino") if runtimes.available(b)}
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        xcl = x.contiguous(memory_format=torch.channels_last)
        runs = {"eager": lambda x=x: whole.run(x), "eager_tiles": lambda x=x: tiled.run(x),
                "eager_channels_last": lambda xcl=xcl: cl(xcl), "compile": lambda x=x: compiled(x),
                **{b: (lambda x=x, r=r: r(x)) for b, r in extra.items()}}
        # a few calls per round: a runtime whose pool spins on after a call slows the first call of the next one
        stats, failed = interleaved(runs, args.rounds, warmup=1, measure=functools.partial(wall_ms, iters=args.iters))
        report["sizes"][size] = {"stats": {k: v.to_row() for k, v in stats.items()}, "failed": failed}
        best = min(stats, key=lambda k: stats[k].median)
        print(f"{size}: " + ", ".join(f"{k} {v.median:.1f} ms" for k, v in stats.items()) + f" -> {best}",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
