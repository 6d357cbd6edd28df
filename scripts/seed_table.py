"""Train one recipe under several seeds and budgets, then tabulate what each run ended with.

    python scripts/seed_table.py --minutes 2 4 --seeds 1 2 3 4 5 --out logs/seed_table
    python scripts/seed_table.py --minutes 10 --seeds 1 2 3 --out logs/seed_table
    python scripts/seed_table.py --out logs/seed_table --report-only

Each run is ``python -m rt4ksr.train experiment=bsd200_x2 seed=S trainer.max_time=...`` (plus any overrides
after ``--``) in ``OUT/<minutes>min_seed<S>``; runs already there are kept, so an interrupted table resumes.
The report (``OUT/seed_table.md`` and ``.json``) gives the final state's figures, which a run reports, next to
its best validation and the network it started from, and its health verdict.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def run_one(out: Path, minutes: float, seed: int, experiment: str, extra: list[str]) -> None:
    run_dir = out / f"{minutes:g}min_seed{seed}"
    if (run_dir / "metrics.json").is_file():
        print(f"kept: {run_dir}")
        return
    cmd = [sys.executable, "-m", "rt4ksr.train", f"experiment={experiment}", f"seed={seed}",
           f"trainer.max_time=00:00:{int(minutes):02d}:{round(60 * (minutes % 1)):02d}", f"hydra.run.dir={run_dir}",
           "trainer.enable_progress_bar=false", *extra]
    print(" ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "train.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(f"failed (exit {proc.returncode}): see {run_dir / 'train.log'}", file=sys.stderr)


def rows(out: Path) -> list[dict]:
    table = []
    for f in sorted(out.glob("*min_seed*/metrics.json")):
        m = json.loads(f.read_text())
        minutes, seed = f.parent.name.split("min_seed")
        health = m.get("health") or {}
        base = (health.get("baseline") or {}).get("sets", {})
        first = next(iter(m["test_sets"]))
        table.append({
            "minutes": float(minutes), "seed": int(seed), "steps": m["global_step"], "set": first,
            "final": m["test_sets"][first]["psnr_y"],
            "final_sets": {k: v["psnr_y"] for k, v in m["test_sets"].items()},
            "best": m["best"]["test_sets"][first]["psnr_y"], "best_step": m["best"]["step"],
            "baseline": base.get(first, {}).get("psnr_y"), "status": health.get("status"),
        })
    return sorted(table, key=lambda r: (r["minutes"], r["seed"]))


def report(out: Path) -> str:
    table = rows(out)
    if not table:
        raise SystemExit(f"no runs with a metrics.json under {out}")
    sets = list(table[0]["final_sets"])
    head = ["minutes", "seed", "steps", *[f"final {s}" for s in sets], f"best {table[0]['set']} (step)",
            f"gain over start ({table[0]['set']})", "health"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        gain = f"{r['final'] - r['baseline']:+.3f}" if r["baseline"] is not None else "n/a"
        lines.append("| " + " | ".join([f"{r['minutes']:g}", str(r["seed"]), f"{r['steps']:,}",
                                        *[f"{r['final_sets'][s]:.3f}" for s in sets],
                                        f"{r['best']:.3f} ({r['best_step']:,})", gain, str(r["status"])]) + " |")
    for minutes in sorted({r["minutes"] for r in table}):
        finals = [r["final"] for r in table if r["minutes"] == minutes]
        lines.append(f"\n{minutes:g} min, {len(finals)} seeds: final {table[0]['set']} min {min(finals):.3f}, "
                     f"mean {sum(finals) / len(finals):.3f}, max {max(finals):.3f} dB")
    text = "\n".join(lines) + "\n"
    (out / "seed_table.md").write_text(text)
    (out / "seed_table.json").write_text(json.dumps(table, indent=2) + "\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="*", default=[2, 4])
    p.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    p.add_argument("--experiment", default="bsd200_x2")
    p.add_argument("--out", type=Path, default=Path("logs/seed_table"))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = p.parse_args()
    if not args.report_only:
        for minutes in args.minutes:
            for seed in args.seeds:
                run_one(args.out, minutes, seed, args.experiment, args.overrides)
    print(report(args.out))


if __name__ == "__main__":
    main()
