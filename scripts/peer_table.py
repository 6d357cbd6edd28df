"""Same-run GPU speed table: our deploy form, torch.compile of ours and of the official RT4KSR code, kernels v1
and v2, and the roofline floor, x2 (1080p -> 4K) and x3 (720p -> 4K), batch 1 and 4, fp16, in ONE process with
interleaved rounds (``rt4ksr.measure.peers`` says why and how).

Prepare, on a machine with the repository checkout (``.device/`` and ``.whl/`` are git-ignored; about 3.6 MiB
in .device/peers plus about 8 MiB of wheels, well under the 64 MiB carry limit):

    # 1. the official model code at the pinned commit fd6627a48d789adf5d9aad29f02ab2a3d2a25296 (from a clone
    #    of github eduardzamfir/RT4KSR: its .git folder, or a bare mirror), about 40 KiB: code/model/__init__.py,
    #    code/model/arch.py, code/model/modules.py, code/model/utils/rep_utils.py, code/test.py (for its
    #    reparameterize()), LICENSE, and a COMMIT file, into .device/peers/rt4ksr_official
    python scripts/peer_table.py --prepare-official /path/to/RT4KSR/.git
    #    which is, by hand:
    #    C=fd6627a48d789adf5d9aad29f02ab2a3d2a25296; G=/path/to/RT4KSR/.git; D=.device/peers/rt4ksr_official
    #    mkdir -p $D/model/utils; for f in model/__init__.py model/arch.py model/modules.py \
    #      model/utils/rep_utils.py test.py; do git --git-dir $G show $C:code/$f > $D/$f; done
    #    git --git-dir $G show $C:LICENSE > $D/LICENSE; echo $C > $D/COMMIT
    # 2. the official weights (../shared does not travel to a GPU machine), 3.4 MiB
    mkdir -p .device/peers/weights && cp ../shared/checkpoints/official/rt4ksr_x[23].pth .device/peers/weights/
    # 3. wheels of what the GPU image lacks (rt4ksr.models imports kornia, the CUDA-graph helper omegaconf)
    ../shared/tools/device-wheels.sh

Then carry ``.device/peers`` and ``.whl`` and run, on the GPU machine (from the repository root):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && \
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 && \
    python3 scripts/peer_table.py --rounds 10 --iters 10 --deadline-s 420 --json $OUT/peers.json \
      [--v2-json best_v2.json | --v2 tile=8x16 stages=2 ...]

Each (scale, batch) block compiles two models with max-autotune (minutes together, untested here): under a
10-minute command limit, ``--deadline-s`` stops starting blocks in time to print the table, the JSON is
rewritten after every block, and ``--scales``/``--batches``/``--candidates`` narrow a run.

The official code imports torchvision (present on the GPU image) for a Gaussian blur of a branch that its
released configuration never adds to the output; where torchvision is missing a stand-in is used and noted.
On a CPU, ``--device cpu --size 32 48`` runs the eager rows (official and ours) end to end, and with
``--compile-on-cpu --compile-mode default`` the compile rows too; the kernel rows say they need CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rt4ksr.core.files import write_json
from rt4ksr.core.scenario import timing_input
from rt4ksr.measure import peers
from rt4ksr.models import RTSRN, load_official, reparameterize

ROOT = Path(__file__).resolve().parents[1]


def default_weights_dir() -> Path:
    """``.device/peers/weights`` (what travels to a GPU machine), else the shared official checkpoints."""
    shared = Path(os.environ.get("RT4KSR_CHECKPOINTS_DIR", ROOT.parent / "shared" / "checkpoints")) / "official"
    local = ROOT / ".device" / "peers" / "weights"
    return local if local.is_dir() else shared


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--official-code",
        type=Path,
        default=ROOT / ".device" / "peers" / "rt4ksr_official",
        help="folder with the official model files (see --prepare-official)",
    )
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="folder with rt4ksr_x2.pth / rt4ksr_x3.pth (default: .device/peers/weights, else "
        "../shared/checkpoints/official)",
    )
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (one time per candidate each)")
    p.add_argument("--iters", type=int, default=10, help="calls per candidate per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per candidate before the rounds")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="LR size for every scale (default: the 4K scenario on CUDA, 1/8 of it on the CPU)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--candidates", nargs="+", default=list(peers.CANDIDATES), choices=peers.CANDIDATES)
    p.add_argument(
        "--v2",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="kernels v2 options (TritonRTSRN keywords), e.g. tile=8x16 stages=2 keep_weights=true",
    )
    p.add_argument(
        "--v2-json",
        type=Path,
        default=None,
        help='kernels v2 options as JSON: a dict of keywords, one per scale ({"2": {...}}), or a '
        'sweep row ({"options": {...}}); --v2 overrides its keys',
    )
    p.add_argument("--compile-mode", default="max-autotune")
    p.add_argument(
        "--compile-on-cpu",
        action="store_true",
        help="compile on the CPU too (Inductor's C++ backend, slow; try --compile-mode default): a dry run of "
        "the compile rows before a GPU session",
    )
    p.add_argument("--no-rotate", action="store_true", help="same candidate order in every round")
    p.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="start no further (scale, batch) block after this many seconds (compiling with max-autotune takes "
        "minutes per block): the table and JSON then list the blocks not run",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="raw results (every round's times), written atomically after each (scale, batch) block",
    )
    p.add_argument(
        "--prepare-official",
        type=Path,
        default=None,
        metavar="GIT_DIR",
        help="extract the official files at the pinned commit from GIT_DIR into --official-code, then exit",
    )
    return p.parse_args(argv)


def ours_for(scale: int, weights: Path) -> tuple[torch.nn.Module, str]:
    """Our deploy form of the released network: from the official weights, else random (said in the note)."""
    if weights.is_file():
        return reparameterize(load_official(weights)), f"official weights {weights.name}"
    return reparameterize(RTSRN(scale=scale)), f"random weights ({weights} not found)"


def official_for(
    args: argparse.Namespace, scale: int, weights: Path, device: torch.device
) -> tuple[torch.nn.Module | str, dict[str, Any]]:
    """The official deploy form, or the reason it is missing, and what the JSON says about it."""
    if not {"eager_official", "compile_official"} & set(args.candidates):
        return "not asked for", {"skipped": "not asked for"}
    try:
        model, code = peers.build_official(args.official_code, weights, scale, device)
    except Exception as e:  # a missing folder or file, an import error: the official rows say why
        reason = peers.one_line(e)
        return reason, {"skipped": reason}
    return model, {"commit": code.commit, "notes": code.notes, "params": sum(p.numel() for p in model.parameters())}


def agreement(a: torch.nn.Module, b: torch.nn.Module, device: torch.device) -> float:
    """Max abs difference of two networks in fp32 on one small seeded input: the peer is the same network."""
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1)).to(device)
    return (peers.fp32_output(a, x) - peers.fp32_output(b, x)).abs().max().item()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare_official is not None:
        for f in peers.prepare_official(args.prepare_official, args.official_code):
            print(f"{f} ({f.stat().st_size} bytes)")
        return 0
    device = torch.device(args.device)
    weights_dir = args.weights_dir or default_weights_dir()
    v2: dict[str, Any] = json.loads(args.v2_json.read_text()) if args.v2_json else {}
    v2_flat = peers.parse_options(args.v2)
    env = peers.environment(device, args.official_code)
    result: dict[str, Any] = {
        "env": env,
        "argv": sys.argv[1:] if argv is None else argv,
        "settings": {
            "rounds": args.rounds,
            "iters": args.iters,
            "warmup": args.warmup,
            "compile_mode": args.compile_mode,
            "rotate": not args.no_rotate,
            "compile_on_cpu": args.compile_on_cpu,
            "candidates": args.candidates,
            "dtype": "fp16",
            "channels_last": "eager and compile rows",
        },
        "scales": {},
        "groups": [],
        "not_run": [],
    }
    start = time.monotonic()
    for scale in args.scales:
        size = timing_input(scale, device.type, args.size)
        weights = weights_dir / f"rt4ksr_x{scale}.pth"
        ours, ours_note = ours_for(scale, weights)
        official, official_info = official_for(args, scale, weights, device)
        if not isinstance(official, str):
            official_info["fp32_max_abs_diff_vs_ours"] = agreement(official, ours, device)
        options = {**peers.options_for_scale(v2, scale), **v2_flat}
        macs = peers.conv_macs(ours, size)
        result["scales"][str(scale)] = {
            "size": list(size),
            "ours": ours_note,
            "official": official_info,
            "v2_options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        }
        for batch in args.batches:
            if args.deadline_s is not None and time.monotonic() - start > args.deadline_s:
                result["not_run"].append(f"x{scale} batch {batch}")
                continue
            t0 = time.monotonic()
            print(
                f"x{scale} batch {batch} {size[0]}x{size[1]}: building and timing {', '.join(args.candidates)}",
                file=sys.stderr,
                flush=True,
            )
            group = peers.run_group(
                scale,
                batch,
                size,
                ours,
                official,
                device,
                args.candidates,
                args.rounds,
                args.iters,
                args.warmup,
                options,
                args.compile_mode,
                not args.no_rotate,
                macs,
                args.compile_on_cpu,
            )
            group["seconds"] = round(time.monotonic() - t0, 1)
            result["groups"].append(group)
            print(peers.format_table([group]), file=sys.stderr, flush=True)  # a run cut short still shows it
            if args.json is not None:
                write_json(args.json, result)
    print(peers.format_table(result["groups"], env))
    for scale, info in result["scales"].items():
        off = info["official"]
        said = off.get("skipped") or (
            f"official vs ours fp32 max|diff| {off['fp32_max_abs_diff_vs_ours']:.2e}"
            + "".join(f"; {n}" for n in off["notes"])
        )
        print(f"x{scale}: ours from {info['ours']}; {said}")
    if result["not_run"]:
        print(f"not run (--deadline-s {args.deadline_s:g}): {', '.join(result['not_run'])}")
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
