"""Kill training and folder upscaling with SIGKILL at random moments; check that every file under its final name
is complete and that each run resumes.

    python scripts/crash_test.py --kills 20 --out /tmp/crash
    python scripts/crash_test.py --kills 20 --out /tmp/crash --ckpt ../shared/checkpoints/official/rt4ksr_x2.pth

Training: ``experiment=quickstart`` with ``last.ckpt`` written every 5 steps, so kills land during steps,
validations and checkpoint writes. Half the kills come at a random moment after training starts, half the
moment a temporary checkpoint or output file appears (a write in progress). After each kill every
``.ckpt``/``.pth``/``.json``/``.yaml`` file under its final name is loaded; the next launch resumes from
``last.ckpt`` and must restore it. A last launch runs to the end. Folder upscaling: a folder of images is
upscaled, killed a few times and resumed; every output must equal the output of an uninterrupted run.
Prints a table of the counts and writes it as JSON to ``OUT/crash_test.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TEMP_MARKERS = (".tmp", ".partial-")


def launch(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if text in log.read_text(errors="ignore"):
            return True
        time.sleep(0.05)
    return False


def wait_for_temp_file(folder: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll until a temporary file of an atomic write exists (a write in progress)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        for _root, _, files in os.walk(folder):
            if any(m in f for f in files for m in TEMP_MARKERS):
                return True
        time.sleep(0.0005)
    return False


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the process group; False when the process had already ended."""
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def broken_files(folder: Path) -> list[str]:
    """Files under their final names that do not load."""
    import torch
    import yaml

    bad = []
    for path in folder.rglob("*"):
        if not path.is_file() or any(m in path.name for m in TEMP_MARKERS):
            continue
        try:
            if path.suffix in (".ckpt", ".pth"):
                torch.load(path, map_location="cpu", weights_only=True)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".yaml":
                yaml.safe_load(path.read_text())
            elif path.suffix == ".png":
                import cv2

                if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
                    raise ValueError("undecodable")
        except Exception as e:  # noqa: BLE001 - any failure to load is what this counts
            bad.append(f"{path}: {type(e).__name__}: {e}")
    return bad


def training(out: Path, kills: int, rng: random.Random) -> dict:
    run = out / "train_run"
    last = run / "checkpoints" / "last.ckpt"
    base = [sys.executable, "-m", "rt4ksr.train", "experiment=quickstart", f"hydra.run.dir={run}",
            "trainer.enable_progress_bar=false", "callbacks.last_checkpoint.every_n_steps=5", "data.num_workers=1",
            "trainer.max_steps=600", "trainer.max_epochs=1000", "data.test_sets=[]"]
    stats = {"kills": 0, "during_write": 0, "resumes_tried": 0, "resumes_ok": 0, "broken_files": [], "launches": 0}
    steps = []
    for i in range(kills + 1):
        resuming = last.is_file()
        cmd = base + ([f"ckpt_path={last}"] if resuming else [])
        log = out / f"train_{i:02d}.log"
        proc = launch(cmd, log)
        stats["launches"] += 1
        started = wait_for_text(log, "baseline" if not resuming else "Restored all states", proc, 180)
        if resuming:
            stats["resumes_tried"] += 1
            stats["resumes_ok"] += int(started and "Traceback" not in log.read_text(errors="ignore"))
        if i == kills:  # the last launch runs to the end
            proc.wait()
            stats["final_exit"] = proc.returncode
            stats["final_metrics"] = (run / "metrics.json").is_file()
            break
        if i % 2 and wait_for_temp_file(run, proc, 30):
            stats["during_write"] += 1
        else:
            time.sleep(rng.uniform(0.0, 12.0))
        stats["kills"] += int(kill(proc))
        stats["broken_files"] += broken_files(run)
        if last.is_file():
            import torch

            steps.append(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
        print(f"kill {i + 1}/{kills}: last.ckpt at step {steps[-1] if steps else None}", flush=True)
    stats["last_ckpt_steps"] = steps
    stats["broken_files"] += broken_files(run)
    return stats


def folder(out: Path, ckpt: str | None, kills: int, rng: random.Random) -> dict:
    import cv2

    src, ref, dst = out / "images", out / "reference", out / "upscaled"
    src.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    for i in range(120):
        cv2.imwrite(str(src / f"img_{i:03d}.png"), g.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    model = [f"ckpt_path={ckpt}"] if ckpt else []
    cmd = [sys.executable, "-m", "rt4ksr.upscale", *model, f"input={src}", "progress=false"]
    if not ref.is_dir():
        subprocess.run([*cmd, f"output={ref}"], check=True, capture_output=True)
    stats = {"kills": 0, "during_write": 0, "broken_files": [], "differing_outputs": []}
    for i in range(kills + 1):
        log = out / f"folder_{i:02d}.log"
        proc = launch([*cmd, f"output={dst}"], log)
        if i == kills:
            proc.wait()
            stats["final_exit"] = proc.returncode
            break
        while proc.poll() is None and not (dst.is_dir() and any(dst.iterdir())):  # upscaling has begun
            time.sleep(0.01)
        if i % 2 and wait_for_temp_file(dst, proc, 30):
            stats["during_write"] += 1
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        stats["kills"] += int(kill(proc))
        stats["broken_files"] += broken_files(dst) if dst.is_dir() else []
    for r in sorted(ref.iterdir()):
        a, b = cv2.imread(str(r), cv2.IMREAD_UNCHANGED), cv2.imread(str(dst / r.name), cv2.IMREAD_UNCHANGED)
        if b is None or a.shape != b.shape or (a != b).any():
            stats["differing_outputs"].append(r.name)
    stats["outputs"] = len(list(dst.glob("*.png")))
    stats["leftover_temp_files"] = [p.name for p in dst.iterdir() if any(m in p.name for m in TEMP_MARKERS)]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the training run")
    parser.add_argument("--folder-kills", type=int, default=6, help="SIGKILLs of the folder upscale")
    parser.add_argument("--ckpt", default=None, help="weights for the folder upscale (default: a random network)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    if args.ckpt is None:  # a small random deploy file that carries its config
        import torch

        from rt4ksr.core.files import torch_save
        from rt4ksr.models import RTSRN, reparameterize
        from rt4ksr.models.checkpoint import portable_state_dict

        deploy = reparameterize(RTSRN())
        args.ckpt = str(torch_save({"state_dict": portable_state_dict(deploy), "config": deploy.config},
                                   args.out / "random_deploy.pth"))
        del torch
    previous = args.out / "crash_test.json"
    report = json.loads(previous.read_text()) if previous.is_file() else {}
    if args.kills:  # --kills 0 reruns the folder part only
        report["training"] = training(args.out, args.kills, rng)
    report["folder"] = folder(args.out, args.ckpt, args.folder_kills, rng)
    (args.out / "crash_test.json").write_text(json.dumps(report, indent=2) + "\n")
    t, f = report["training"], report["folder"]
    print(f"training: {t['kills']} kills ({t['during_write']} during a checkpoint write), "
          f"{t['resumes_ok']}/{t['resumes_tried']} resumes restored last.ckpt, {len(t['broken_files'])} broken "
          f"files, final run exit {t.get('final_exit')} (metrics.json: {t.get('final_metrics')})")
    print(f"folder: {f['kills']} kills ({f['during_write']} during an image write), {f['outputs']} outputs, "
          f"{len(f['differing_outputs'])} differ from an uninterrupted run, {len(f['broken_files'])} broken "
          f"files, {len(f['leftover_temp_files'])} temporary files left, final exit {f.get('final_exit')}")
    for line in t["broken_files"] + f["broken_files"]:
        print("  broken:", line)


if __name__ == "__main__":
    main()
