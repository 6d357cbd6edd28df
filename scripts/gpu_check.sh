#!/usr/bin/env bash
# The GPU figures in stages, each within one 10-minute call on one GPU; every step's text and JSON go to $R and,
# after each step, into $OUT/results.tgz, beside one log, $OUT/log.txt, so a stage cut short still leaves the
# earlier steps' results. Triton's and Inductor's caches live in .cache/ (git-ignored), so a later stage on the
# same warm machine does not compile again.
#   speed      (an estimated 6 minutes on an H100/H200) rt4ksr kernel-sweep of kernels v1 and v2 at x2 and x3 (55 option
#              sets each, checked against eager fp16, then timed in the same interleaved rounds; v1's fused groups
#              with 1, 2 and 4 programs per SM, whose scratch then fits L2 or not), the fastest set at batch 1 and 4
#              with its PSNR on set5, and the data side; leaves best_x2.txt / best_x3.txt (overrides) and best_v2.json
#   peers      (at most 9 minutes) scripts/peer_table.py (with peers_official.py and peers_floor.py beside it): one
#              process, x2 and x3, batch 1 and 4, interleaved rounds: eager fp16, torch.compile max-autotune of ours
#              and of the released code, kernels v1 and v2 (speed's best_v2.json when it ran on this machine), and
#              the floor estimate; raw JSON
#   video      (an estimated 5 minutes) scripts/video_e2e.py at x2 (1080p) and x3 (720p), 300 frames of H.264 to 4K with
#              `rt4ksr upscale`, against decode+encode alone; VIDEO_ARGS adds options (--override kernels=true)
#   train [MINUTES]  the x2 BSD200 run, 8 minutes by default, leaving its checkpoint, deploy weights and
#              metrics.json
#   arena      (at most 8 minutes; carry .whl and .device_arena) every arena design's deploy weights, from a sweep
#              folder of experiment=arena_x2/x3, re-timed at 1080p->4K (x2) or 720p->4K (x3), fp16, batch 1, eager
#              and torch.compile in one interleaved process: rt4ksr sweep-report device=cuda compile=true; the
#              report (.md/.png/.json) comes back. Prepare it with:
#                mkdir -p .device_arena && rsync -a --include='*/' --include='deploy_final.pth' \
#                  --include='metrics.json' --include='overrides.yaml' --exclude='*' <sweep folder>/ .device_arena/x2/
#   realworld  (at most 9 minutes; carry .whl and .device_train) times the real-world pipelines on the card and
#              trains experiment=realworld_x2 600 steps in 32-true, 16-mixed and bf16-mixed, checking each run with
#              scripts/precision_check.py (STEPS, PRECISIONS override)
#
# On a GPU machine without network access, prepare these from the repo root on another machine and carry them
# (64 MiB in all at most):
#   ../shared/tools/device-wheels.sh safetensors         # wheels of hydra, omegaconf, kornia into .whl/: about 8 MiB
#   video: ../shared/tools/device-wheels.sh safetensors av==18.1.0     # PyAV too: about 43 MiB; carry only .whl
#   mkdir -p .device/data/testsets .device/data/BSD200/HR && cp -r ../shared/data/testsets/set5 .device/data/testsets/ \
#     && cp ../shared/checkpoints/official/rt4ksr_x*.pth .device/
#   speed: 20 BSD200 images for the data timing (about 18 MiB in all)
#     ls ../shared/data/BSD200/HR | head -20 | xargs -I{} cp ../shared/data/BSD200/HR/{} .device/data/BSD200/HR/
#   peers: the released code at its pinned commit and the official weights in .device/peers (3.6 MiB), as
#     scripts/peer_table.py's header says (python scripts/peer_table.py --prepare-official <RT4KSR .git>)
#   train: all of BSD200 and set5's HR in .device_train/data (about 60 MiB with the wheels; the run validates on set5)
#     mkdir -p .device_train/data/testsets/set5/test .device_train/data/BSD200/HR
#     cp -r ../shared/data/testsets/set5/test/HR .device_train/data/testsets/set5/test/
#     cp ../shared/data/BSD200/HR/* .device_train/data/BSD200/HR/
# Then, on the GPU machine: bash scripts/gpu_check.sh speed     (or peers, video, train [MINUTES], arena, realworld)
set -uo pipefail
stage=${1:-speed}
OUT=${OUT:-/tmp/out}; R=/tmp/gpu_check; mkdir -p "$OUT" "$R"
exec > >(tee -a "$OUT/log.txt") 2>&1
save() { echo "[${SECONDS} s]"; tar -czf "$OUT/results.tgz" -C "$R" .; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:${PYTHONPATH:-} TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 \
  TRITON_CACHE_DIR=$PWD/.cache/triton TORCHINDUCTOR_CACHE_DIR=$PWD/.cache/inductor
data=$PWD/.device/data; [ "$stage" != speed ] && [ -d .device_train/data ] && data=$PWD/.device_train/data
export RT4KSR_DATA_DIR=$data RT4KSR_CACHE_DIR=/tmp/cache
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv
  python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__,
    'triton', triton.__version__)"; } | tee "$R/gpu.txt"

if [ "$stage" = speed ]; then
  # in order of importance: a step cut by the call's 600 s limit takes the later ones with it
  for s in 2 3; do  # 1. kernels v1 and v2 on this card, one process per scale: every set checked against eager
    timeout 170 python3 -m rt4ksr.kernel_sweep weights=official-x$s 'kernels=[v1,v2]' 'fuse=[1,2,5]' 'block_p=[64]' \
      'tile=[[1,64],[4,16],[8,16],[8,32]]' 'keep_weights=[true,false]' 'stages=[1,2]' 'programs_per_sm=[1,2,4]' \
      json="$R/sweep_x$s.json" 2>&1 | tee "$R/sweep_x$s.txt"
    python3 - "$R/sweep_x$s.json" "$R/best_x$s.txt" "$R/best_v2.json" $s <<'PY' || echo "" > "$R/best_x$s.txt"
import json, os, sys
sweep, best_txt, best_v2, scale = sys.argv[1:]
ok = [r for r in json.load(open(sweep))["rows"] if r.get("ok") and "ms" in r]  # a sweep cut short keeps its rows
fastest = lambda rows: min(rows, key=lambda r: r["ms"])
open(best_txt, "w").write(fastest(ok)["overrides"] + "\n")
v2 = json.load(open(best_v2)) if os.path.exists(best_v2) else {}
if [r for r in ok if r["kernels"] == "v2"]:
    v2[scale] = fastest([r for r in ok if r["kernels"] == "v2"])["options"]
json.dump(v2, open(best_v2, "w"), indent=1)
PY
    save
  done
  for s in 2 3; do  # 2. the fastest set: batch 1 and 4, with and without a CUDA graph, and its PSNR on set5
    timeout 80 python3 -m rt4ksr.benchmark model=rt4ksr_x$s ckpt_path=.device/rt4ksr_x$s.pth repeats=50 \
      modes=[deploy_fp16_graph,kernels,kernels_nograph] $(cat "$R/best_x$s.txt") json="$R/bench_x$s.json" 2>&1 \
      | tee "$R/bench_x$s.txt"; save
  done
  # 3. degradation + augmentation on the GPU and the loader (their share of a training step)
  timeout 45 python3 -m rt4ksr.benchmark_data data.num_workers=1 fidelity=false json="$R/data.json" 2>&1 \
    | tee "$R/data.txt"; save
elif [ "$stage" = peers ]; then
  # one process: eager, torch.compile (max-autotune, channels_last) of ours and of the released code, kernels v1
  # and v2 (the speed stage's fastest v2 sets when this machine ran it, else the defaults), and the floor;
  # x2 and x3, batch 1 and 4, interleaved rounds
  v2=(); [ -s "$R/best_v2.json" ] && v2=(--v2-json "$R/best_v2.json")
  timeout 560 python3 scripts/peer_table.py --rounds 10 --iters 10 --deadline-s 480 "${v2[@]}" \
    --json "$R/peers.json" 2>&1 | tee "$R/peers.txt"; save
elif [ "$stage" = video ]; then
  for s in 2 3; do  # the clip is made on the machine (seeded), 1080p for x2 and 720p for x3
    timeout 280 python3 scripts/video_e2e.py --scale $s --frames 300 --no-what-if ${VIDEO_ARGS:-} \
      --json "$R/video_x$s.json" 2>&1 | tee "$R/video_x$s.txt"; save
  done
elif [ "$stage" = train ]; then
  minutes=${2:-8}; secs=$(python3 -c "print(round(float('$minutes') * 60))")
  timeout $((secs + 90)) python3 -m rt4ksr.train experiment=bsd200_x2 trainer=${TRAINER:-gpu} \
    trainer.max_time=00:00:$(printf '%02d:%02d' $((secs / 60)) $((secs % 60))) trainer.enable_progress_bar=false \
    data.num_workers=8 data.batch_size=64 data.lr_crop=128 data.test_sets=[set5] hydra.run.dir=/tmp/train_x2 2>&1 \
    | tee "$R/train.txt"
  ls -la /tmp/train_x2 /tmp/train_x2/checkpoints | tee "$R/train_files.txt"
  cp /tmp/train_x2/metrics.json /tmp/train_x2/config.yaml "$R/" 2>/dev/null
  python3 -c "import json; t = json.load(open('$R/metrics.json'))['timing']; print('final timing:', t)" 2>&1 \
    | tee -a "$R/train.txt"  # must name the card and 1080p (x2), not the CPU
  cp /tmp/train_x2/deploy_best.pth /tmp/train_x2/deploy_final.pth "$OUT/" 2>/dev/null; save
elif [ "$stage" = arena ]; then
  for sweep in .device_arena/*/; do  # one folder per scale (x2, x3): each model timed against the others of its scale
    name=$(basename "$sweep")
    timeout 230 python3 -m rt4ksr.sweep_report multirun_dir="$sweep" out="$R/arena_$name" device=cuda compile=true \
      rounds=20 2>&1 | tee "$R/arena_$name.txt"; save
  done
elif [ "$stage" = realworld ]; then
  # 1. the real-world pipelines' cost per batch of 64 256x256 crops on this card (goal: < 5% of a training step)
  for deg in realesrgan bicubic_jpeg; do
    timeout 60 python3 -m rt4ksr.benchmark_data data/degradation=$deg data.num_workers=1 fidelity=false \
      devices=[cuda] crops=200 json="$R/data_$deg.json" 2>&1 | tee "$R/data_$deg.txt"; save
  done
  # 2. experiment=realworld_x2 in each precision, training form (so that fusion is checked), the same steps
  for p in ${PRECISIONS:-32-true 16-mixed bf16-mixed}; do
    timeout 120 python3 -m rt4ksr.train experiment=realworld_x2 trainer=${TRAINER:-gpu} trainer.precision=$p \
      model.is_train=true trainer.max_time=null trainer.max_steps=${STEPS:-600} trainer.enable_progress_bar=false \
      data.num_workers=8 data.batch_size=64 data.lr_crop=128 'data.test_sets=[set5,set5_bicubic_n5_q75]' \
      hydra.run.dir=/tmp/rw_$p 2>&1 | tee "$R/train_$p.txt"
    python3 scripts/precision_check.py /tmp/rw_$p 2>&1 | tee "$R/precision_$p.json"; save
  done
else
  echo "usage: gpu_check.sh speed|peers|video|train [MINUTES]|arena|realworld" >&2; exit 2
fi
