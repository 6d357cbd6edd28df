"""The ``rt4ksr`` console command: ``rt4ksr <command> [overrides]``, the same as ``python -m rt4ksr.<command>``."""

from __future__ import annotations

import difflib
import importlib
import sys

from rt4ksr import __version__
from rt4ksr.core.threads import prepare_process

COMMANDS = {
    "train": "rt4ksr.train",
    "eval": "rt4ksr.eval",
    "upscale": "rt4ksr.upscale",
    "export": "rt4ksr.export",
    "benchmark": "rt4ksr.benchmark",
    "benchmark-data": "rt4ksr.benchmark_data",
    "summary": "rt4ksr.summary",
    "zoo": "rt4ksr.zoo",
    "sweep-report": "rt4ksr.sweep_report",
    "make-lr": "rt4ksr.make_lr",
    "extract-subimages": "rt4ksr.extract_subimages",
    "kernel-sweep": "rt4ksr.kernel_sweep",
    "kernel-report": "rt4ksr.kernel_report",
}

SUMMARIES = {
    "train": "train, fuse, validate, time and save a model (experiment=quickstart: about a minute on a CPU)",
    "eval": "Y-channel PSNR/SSIM of a checkpoint on set5, set14, b100, urban100",
    "upscale": "upscale an image, a folder or a video (the zoo's model when no weights are given)",
    "export": "write ONNX, TorchScript or safetensors",
    "benchmark": "inference speed of every execution path (1080p->4K / 720p->4K on a GPU), and the fp16 check",
    "benchmark-data": "the data side: loader crops/s, degradation time per batch, LR fidelity",
    "summary": "parameters, deploy-form MACs and fusion error of a configured model",
    "zoo": "the models bundled with rt4ksr: figures, training, cards",
    "sweep-report": "a multirun's table and figure, every design re-timed in one process",
    "make-lr": "MATLAB-identical LR images for an HR folder",
    "extract-subimages": "cut large HR images into training sub-images",
    "kernel-sweep": "find the fastest Triton kernel options for this GPU",
    "kernel-report": "compile the Triton kernels for sm_90 and report registers, spills, occupancy",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: rt4ksr <command> [Hydra overrides]   (the same as: python -m rt4ksr.<command>)", "", "commands:"]
    lines += [f"  {name:<{width}}  {SUMMARIES[name]}" for name in COMMANDS]
    lines += ["", "rt4ksr <command> --help lists the command's config groups and options; rt4ksr --version prints "
              "the version."]
    return "\n".join(lines)


def version() -> str:
    """The installed distribution's version (the package's own when it runs from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("rt4ksr")
    except PackageNotFoundError:
        return __version__


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if args else 2)
    if args[0] in ("-V", "--version"):
        print(f"rt4ksr {version()}")
        raise SystemExit(0)
    name, rest = args[0], args[1:]
    if name == "benchmark" and rest[:1] == ["data"]:
        raise SystemExit("error: the data side is its own command: rt4ksr benchmark-data " + " ".join(rest[1:]))
    if name not in COMMANDS:
        near = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise SystemExit(f"error: unknown command {name!r}{hint}; commands: {', '.join(COMMANDS)}")
    sys.argv = [f"rt4ksr {name}", *rest]
    prepare_process(rest)  # before the command's module imports torch
    importlib.import_module(COMMANDS[name]).main()
