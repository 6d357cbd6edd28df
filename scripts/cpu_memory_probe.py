"""CPU inference time, page faults and kernel time of the upscaler under each memory setting, in one run.

    python scripts/cpu_memory_probe.py --ckpt ../shared/checkpoints/official/rt4ksr_x2.pth --threads 2

Each setting runs in a fresh process (allocator settings are process-wide): ``default`` (glibc as it starts),
``keep`` (``rt4ksr.inference.cpu_memory.keep_freed_memory``), ``keep+tile`` (plus the upscaler's CPU tiles) and
``onnxruntime`` (plus the ONNX Runtime backend). Reports ms per image, minor page faults per image, and user
and system CPU seconds per image, for each input size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(ckpt: str, setting: str, size: tuple[int, int], images: int, threads: int, tile: int) -> dict:
    import numpy as np
    import torch

    from rt4ksr.inference.cpu_memory import keep_freed_memory
    from rt4ksr.inference.loading import load_file
    from rt4ksr.inference.upscaler import Upscaler

    torch.set_num_threads(threads)
    if setting != "default":
        keep_freed_memory()
    loaded = load_file(ckpt, {"_target_": "rt4ksr.models.RTSRN", "scale": 2})
    up = Upscaler(loaded, torch.device("cpu"), tile=tile if "tile" in setting else 0,
                  backend="onnxruntime" if setting == "onnxruntime" else "torch")
    img = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    up(img)  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(images):
        up(img)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {"setting": setting, "size": list(size), "ms": 1000 * wall / images,
            "faults": (r1.ru_minflt - r0.ru_minflt) / images, "user_s": (r1.ru_utime - r0.ru_utime) / images,
            "sys_s": (r1.ru_stime - r0.ru_stime) / images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="512x512,270x480,1080x1920")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--tile", type=int, default=512, help="LR tile size of the keep+tile setting")
    parser.add_argument("--settings", default="default,keep,keep+tile,onnxruntime")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a single measurement, in this process
    args = parser.parse_args()
    if args.one:
        setting, size = args.one.split("@")
        h, w = map(int, size.split("x"))
        print(json.dumps(measure(args.ckpt, setting, (h, w), args.images, args.threads, args.tile)))
        return
    rows = []
    for size in args.sizes.split(","):
        images = args.images if int(size.split("x")[0]) < 1000 else max(1, args.images // 3)
        for setting in args.settings.split(","):
            out = subprocess.run([sys.executable, __file__, "--ckpt", args.ckpt, "--threads", str(args.threads),
                                  "--images", str(images), "--tile", str(args.tile), "--one", f"{setting}@{size}"],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{size:>10} {setting:<12} {row['ms']:9.1f} ms/image {row['faults']:10.0f} faults/image "
                  f"user {row['user_s']:.3f} s  sys {row['sys_s']:.3f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
