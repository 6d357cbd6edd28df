"""Every main CPU path, idle and beside a competing load, in one run: the ratios a user sees on a busy machine.

    python scripts/busy_benchmark.py --out docs/results/busy.json [--rounds 3] [--policies auto,2]

Paths (each run as the user runs it, a whole ``rt4ksr`` process):

- ``network_eager``, ``network_onnxruntime``, ``network_openvino``: ``rt4ksr benchmark`` of the deploy form at the
  CPU scenario (240x135 at x2); the figure is its own median ms per frame;
- ``upscale_1080p``: ``rt4ksr upscale`` of a 1920x1080 PNG at x2, wall seconds of the process;
- ``train_quickstart``: ``rt4ksr train experiment=quickstart`` cut to ``--train-steps`` steps; the figure is
  seconds per training step (``train_seconds / global_step`` from its metrics.json);
- ``eval_set5``: ``rt4ksr eval weights=official-x2 data.test_sets=[set5]``, wall seconds (needs the test sets).

Loads, each started by this script: ``copy`` (a second copy of the same command, started with it) and ``burner``
(two pure-Python processes that spin for the whole measurement). Each round runs every path idle, beside the
copy and beside the burner, in a rotating order; the ratio of a round is its busy figure over the same round's
idle figure, and the table gives the median of each over the rounds (``rt4ksr.core.stats.Stats``). Every
figure of every round goes into the JSON. ``--policies`` repeats everything under other thread settings
(``threads=N``; ``auto`` is the default policy), in the same rounds, so the policies compare within one run.

Also measured, with ``--roofline``: the fp32 GEMM rate (a 2048^3 matmul on all cores, best of 10), and the
cost of ``rt4ksr upscale`` of the 1080p PNG (its time minus its time for a 16x16 PNG) for each CPU backend,
against the roofline: the deploy form's FLOPs at 1080p at that GEMM rate.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rt4ksr.core.stats import Stats

ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 2.0
BURNER = "import time\nt = time.time() + {s}\nwhile time.time() < t:\n    pass\n"


def rt4ksr(*args: str) -> list[str]:
    return [sys.executable, "-m", f"rt4ksr.{args[0]}", *args[1:]]


def write_png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    """An RGB PNG of ``h`` x ``w`` with a photo's statistics: a mosaic of urban100 and b100 HR crops when the test
    sets are there (``RT4KSR_DATA_DIR``, default ../shared/data), else smooth gradients with mild noise."""
    import cv2

    data = Path(os.environ.get("RT4KSR_DATA_DIR", ROOT.parent / "shared" / "data")) / "testsets"
    files = sorted([*data.glob("urban100/test/HR/*.png"), *data.glob("b100/test/HR/*.png")])
    img = np.zeros((h, w, 3), np.uint8)
    if files:
        rng = np.random.default_rng(seed)
        y = 0
        while y < h:
            x, row_h = 0, 0
            while x < w:
                src = cv2.imread(str(files[int(rng.integers(len(files)))]), cv2.IMREAD_COLOR)
                ch, cw = min(src.shape[0], h - y, 360), min(src.shape[1], w - x, 480)
                img[y:y + ch, x:x + cw] = src[:ch, :cw]
                x, row_h = x + cw, max(row_h, ch)
            y += row_h
    else:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([128 + 100 * np.sin(xx / 97 + c) * np.cos(yy / 61 - c) for c in range(3)], axis=2)
        img = np.clip(base + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return path


class Path_:
    """One measured path: the command, and how its figure is read (the process's own report, or wall time)."""

    def __init__(self, name: str, cmd: Callable[[Path, str], list[str]], read: Callable[[Path, float], float],
                 unit: str) -> None:
        self.name, self.cmd, self.read, self.unit = name, cmd, read, unit


def _json_ms(work: Path, wall: float) -> float:
    rows = json.loads((work / "bench.json").read_text())["rows"]
    return float(rows[0]["ms"])


def _json_threads(work: Path) -> dict[str, Any] | None:
    f = work / "bench.json"
    return json.loads(f.read_text()).get("threads") if f.is_file() else None


def _wall(work: Path, wall: float) -> float:
    return wall


def _step_s(work: Path, wall: float) -> float:
    (metrics,) = list(work.glob("logs/train/runs/*/metrics.json"))
    m = json.loads(metrics.read_text())
    return float(m["train_seconds"]) / max(1, int(m["global_step"]))


def make_paths(tmp: Path, train_steps: int, names: list[str]) -> list[Path_]:
    img = write_png(tmp / "in_1080p.png", 1080, 1920)
    bench = ["weights=official-x2", "batch_sizes=[1]", "fp16_check=false", "cpu_repeats=60", "warmup=5",
             "json=bench.json"]
    paths = [
        Path_("network_eager", lambda w, t: rt4ksr("benchmark", *bench, "modes=[deploy_fp32]", t), _json_ms, "ms"),
        Path_("network_onnxruntime", lambda w, t: rt4ksr("benchmark", *bench, "modes=[onnxruntime_cpu]", t),
              _json_ms, "ms"),
        Path_("network_openvino", lambda w, t: rt4ksr("benchmark", *bench, "modes=[openvino_cpu]", t),
              _json_ms, "ms"),
        Path_("upscale_1080p", lambda w, t: rt4ksr("upscale", f"input={img}", "output=out.png", t), _wall, "s"),
        Path_("train_quickstart", lambda w, t: rt4ksr(
            "train", "experiment=quickstart", f"trainer.max_steps={train_steps}", "trainer.max_epochs=1000",
            "data.test_sets=[set5]", t), _step_s, "s/step"),
        Path_("eval_set5", lambda w, t: rt4ksr("eval", "weights=official-x2", "data.test_sets=[set5]", "progress=false",
                                               t), _wall, "s"),
    ]
    return [p for p in paths if p.name in names]


def run_once(path: Path_, threads: str, load: str, env: dict[str, str], seconds_hint: float) -> dict[str, Any]:
    """One measurement of ``path`` under ``load`` (idle, copy, burner); the figure and both processes' times."""
    work = Path(tempfile.mkdtemp(prefix=f"busy-{path.name}-"))
    twin = Path(tempfile.mkdtemp(prefix=f"busy-{path.name}-copy-")) if load == "copy" else None
    arg = f"threads={threads}"
    burners: list[subprocess.Popen] = []
    time.sleep(SETTLE_S)  # the previous measurement's processes are gone and the machine is quiet again
    try:
        if load == "burner":
            code = BURNER.format(s=max(30.0, 4 * seconds_hint + 30))
            burners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
            time.sleep(0.5)
        other = None
        if twin is not None:
            other = subprocess.Popen(path.cmd(twin, arg), cwd=twin, env={**env, "RT4KSR_LOG_DIR": str(twin / "logs")},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        done = subprocess.run(path.cmd(work, arg), cwd=work, env={**env, "RT4KSR_LOG_DIR": str(work / "logs")},
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if other is not None:
            other.wait()
        if done.returncode != 0:
            raise RuntimeError(f"{path.name} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        said = [line for line in done.stderr.splitlines() if line.startswith("threads:")]
        return {"figure": path.read(work, wall), "wall_s": wall, "threads_line": said[0] if said else None,
                "threads_end": _json_threads(work)}
    finally:
        for b in burners:
            b.kill()
            b.wait()
        shutil.rmtree(work, ignore_errors=True)
        if twin is not None:
            shutil.rmtree(twin, ignore_errors=True)


def gemm_gflops(env: dict[str, str]) -> float:
    code = ("import time, torch\nn = 2048\na, b = torch.rand(n, n), torch.rand(n, n)\nfor _ in range(3): a @ b\n"
            "ts = []\nfor _ in range(10):\n    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)\n"
            "print(2 * n ** 3 / min(ts) / 1e9)")
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout.strip())


def deploy_gflop(h: int = 1080, w: int = 1920) -> float:
    from rt4ksr.inference.loading import load_file
    from rt4ksr.models.pretrained import weights_path
    from rt4ksr.models.profile import count_macs

    model = load_file(weights_path(None, "official-x2", None)).model
    return 2 * count_macs(model, (h, w)) / 1e9


def roofline(tmp: Path, env: dict[str, str], rounds: int, backends: list[str]) -> dict[str, Any]:
    """``rt4ksr upscale`` of the 1080p PNG and of a 16x16 PNG, per backend, interleaved, against the GEMM
    roofline measured in the same rounds."""
    big, tiny = write_png(tmp / "roof_1080p.png", 1080, 1920), write_png(tmp / "roof_16.png", 16, 16)
    gflop = deploy_gflop()
    times: dict[str, list[float]] = {f"{b}/{k}": [] for b in backends for k in ("1080p", "16x16")}
    rates: list[float] = []
    for r in range(rounds):
        rates.append(gemm_gflops(env))
        order = list(times)
        for key in order[r % len(order):] + order[: r % len(order)]:
            backend, size = key.split("/")
            src = big if size == "1080p" else tiny
            t0 = time.perf_counter()
            subprocess.run(rt4ksr("upscale", f"input={src}", f"output={tmp / 'roof_out.png'}", f"backend={backend}",
                                  "progress=false"), env=env, check=True, capture_output=True)
            times[key].append(time.perf_counter() - t0)
            print(f"  roofline round {r + 1}: {key} {times[key][-1]:.2f} s", flush=True)
    rate = Stats.of(rates, "GFLOP/s")
    roof_s = gflop / rate.median
    out: dict[str, Any] = {"gflop": gflop, "gemm_gflops": rate.to_dict(), "roofline_s": roof_s, "backends": {}}
    for b in backends:
        cost = [t1 - t0 for t1, t0 in zip(times[f"{b}/1080p"], times[f"{b}/16x16"], strict=True)]
        c = Stats.of(cost, "s")
        out["backends"][b] = {"1080p": Stats.of(times[f"{b}/1080p"], "s").to_dict(),
                              "16x16": Stats.of(times[f"{b}/16x16"], "s").to_dict(), "cost": c.to_dict(),
                              "x_roofline": c.median / roof_s}
    return out


def environment() -> dict[str, Any]:
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "torch": torch.__version__, "loadavg_at_start": load}


def table(report: dict[str, Any]) -> str:
    lines = ["| path | threads | idle | beside a copy | ratio | beside the burner | ratio |",
             "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['path']} | {row['threads']} | {row['idle']['median']:.3g} {row['unit']} | "
                     f"{row['copy']['median']:.3g} | {row['copy_ratio']['median']:.2f}x | "
                     f"{row['burner']['median']:.3g} | {row['burner_ratio']['median']:.2f}x |")
    roof = report.get("roofline")
    if roof:
        lines += ["", f"roofline: {roof['gflop']:.1f} GFLOP at {roof['gemm_gflops']['median']:.0f} GFLOP/s = "
                      f"{roof['roofline_s'] * 1000:.0f} ms", "",
                  "| backend | 1080p | 16x16 | cost | x roofline |", "|---|---|---|---|---|"]
        for b, r in roof["backends"].items():
            lines.append(f"| {b} | {r['1080p']['median']:.2f} s | {r['16x16']['median']:.2f} s | "
                         f"{r['cost']['median'] * 1000:.0f} ms | {r['x_roofline']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the JSON report (the table goes beside it, .md)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--policies", default="auto", help="thread settings to compare, e.g. auto,2")
    ap.add_argument("--paths", default="network_eager,network_onnxruntime,network_openvino,upscale_1080p,"
                                         "train_quickstart,eval_set5")
    ap.add_argument("--train-steps", type=int, default=75)
    ap.add_argument("--roofline", action="store_true")
    ap.add_argument("--roofline-only", action="store_true")
    ap.add_argument("--roofline-backends", default="torch,onnxruntime,openvino,auto")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RT4KSR_THREADS")}
    env["WANDB_MODE"] = "disabled"
    tmp = Path(tempfile.mkdtemp(prefix="busy-bench-"))
    report: dict[str, Any] = {"environment": environment(), "command": " ".join(sys.argv), "rows": [], "raw": {}}
    policies = args.policies.split(",")
    if not args.roofline_only:
        paths = make_paths(tmp, args.train_steps, args.paths.split(","))
        cases = [(p, pol, load) for p in paths for pol in policies for load in ("idle", "copy", "burner")]
        raw: dict[str, list[dict[str, Any]]] = {f"{p.name}|{pol}|{load}": [] for p, pol, load in cases}
        hint = {p.name: 10.0 for p in paths}
        for r in range(args.rounds):
            order = cases[r % len(cases):] + cases[: r % len(cases)]
            for p, pol, load in order:
                got = run_once(p, pol, load, env, hint[p.name])
                hint[p.name] = max(hint[p.name], got["wall_s"])
                raw[f"{p.name}|{pol}|{load}"].append(got)
                print(f"round {r + 1}: {p.name} threads={pol} {load}: {got['figure']:.4g} {p.unit} "
                      f"({got['threads_line']})", flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({**report, "raw": raw}, indent=1))
        report["raw"] = raw
        for p in paths:
            for pol in policies:
                fig = {load: [g["figure"] for g in raw[f"{p.name}|{pol}|{load}"]] for load in ("idle", "copy",
                                                                                               "burner")}
                row = {"path": p.name, "threads": pol, "unit": p.unit,
                       **{load: Stats.of(v, p.unit).to_dict() for load, v in fig.items()}}
                for load in ("copy", "burner"):
                    ratios = [b / i for b, i in zip(fig[load], fig["idle"], strict=True)]
                    row[f"{load}_ratio"] = Stats.of(ratios, "x").to_dict()
                report["rows"].append(row)
    if args.roofline or args.roofline_only:
        report["roofline"] = roofline(tmp, env, args.rounds, args.roofline_backends.split(","))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    md = table(report)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
