#!/usr/bin/env bash
# The GPU figures in two stages, each within 10 minutes on one GPU: `speed` (4.5 minutes on an H200: kernel
# tuning and correctness on CUDA, every inference path at x2 and x3 with torch.compile in the same run, the fp16
# checks, data-side timing) and `train [MINUTES]` (the x2 BSD200 run, 8 minutes by default, leaving its
# checkpoint, deploy weights and metrics.json); run `speed` first. `realworld` (at most 9 minutes; carry .whl and
# .device_train) times the real-world pipelines on the card and trains experiment=realworld_x2 600 steps in
# 32-true, 16-mixed and bf16-mixed, checking each run with scripts/precision_check.py (STEPS, PRECISIONS
# override). Every
# step's text and JSON go to $R and, after each step, into $OUT/results.tgz, beside one log, $OUT/log.txt, so a
# stage cut short still leaves the earlier steps' results.
#
# On a GPU machine without network access, prepare these from the repo root on another machine and copy them
# over (64 MiB in all is enough):
#   ../shared/tools/device-wheels.sh safetensors         # wheels of hydra, omegaconf, kornia into .whl/: about 8 MiB
#   mkdir -p .device/data/testsets .device/data/BSD200/HR && cp -r ../shared/data/testsets/set5 .device/data/testsets/ \
#     && cp ../shared/checkpoints/official/rt4ksr_x*.pth .device/
#   speed: 20 BSD200 images for the data timing (about 18 MiB in all)
#     ls ../shared/data/BSD200/HR | head -20 | xargs -I{} cp ../shared/data/BSD200/HR/{} .device/data/BSD200/HR/
#   train: all of BSD200 and set5's HR in .device_train/data (about 60 MiB with the wheels; the run validates on set5)
#     mkdir -p .device_train/data/testsets/set5/test .device_train/data/BSD200/HR
#     cp -r ../shared/data/testsets/set5/test/HR .device_train/data/testsets/set5/test/
#     cp ../shared/data/BSD200/HR/* .device_train/data/BSD200/HR/
# Then, on the GPU machine: bash scripts/gpu_check.sh speed        (or: train [MINUTES], default 8; or: realworld)
set -uo pipefail
stage=${1:-speed}
OUT=${OUT:-/tmp/out}; R=/tmp/gpu_check; mkdir -p "$OUT" "$R"
exec > >(tee -a "$OUT/log.txt") 2>&1
save() { echo "[${SECONDS} s]"; tar -czf "$OUT/results.tgz" -C "$R" .; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:${PYTHONPATH:-} TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
data=$PWD/.device/data; [ "$stage" != speed ] && [ -d .device_train/data ] && data=$PWD/.device_train/data
export RT4KSR_DATA_DIR=$data RT4KSR_CACHE_DIR=/tmp/cache
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv
  python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__,
    'triton', triton.__version__)"; } | tee "$R/gpu.txt"

if [ "$stage" = speed ]; then
  # in order of importance: a step cut by the call's 600 s limit takes the later ones with it
  for s in 2 3; do  # 1. tune and check the kernels on this card (fp16 against eager fp16, CUDA graphs, batch 1)
    timeout 100 python3 -m rt4ksr.kernel_sweep weights=official-x$s 'fuse=[1,2,5]' 'block_p=[64]' \
      'row_stores=[true,false]' json="$R/sweep_x$s.json" 2>&1 | tee "$R/sweep_x$s.txt"
    python3 - "$R/sweep_x$s.json" > "$R/best_x$s.txt" <<'PY' 2>/dev/null || echo "kernel_options.fuse=1" > "$R/best_x$s.txt"
import json, sys
b = json.load(open(sys.argv[1]))["best"]
print(f"kernel_options.fuse={b['fuse']} kernel_options.block_p={b['block_p']} "
      f"kernel_options.row_stores={str(b['row_stores']).lower()}")
PY
    save
  done
  for s in 2 3; do  # 2. the goal's comparison: torch.compile max-autotune and the chosen kernels, batch 1
    timeout 150 python3 -m rt4ksr.benchmark model=rt4ksr_x$s ckpt_path=.device/rt4ksr_x$s.pth repeats=50 \
      modes=[compile,kernels] batch_sizes=[1] fp16_check=false $(cat "$R/best_x$s.txt") \
      json="$R/compile_x$s.json" 2>&1 | tee "$R/compile_x$s.txt"; save
  done
  # 3. degradation + augmentation on the GPU and the loader (their share of a training step)
  timeout 45 python3 -m rt4ksr.benchmark_data data.num_workers=1 fidelity=false json="$R/data.json" 2>&1 \
    | tee "$R/data.txt"; save
  for s in 2 3; do  # 4. every other path, batch 1 and 4, plus the fp16 checks (eager and kernels) on set5
    timeout 100 python3 -m rt4ksr.benchmark model=rt4ksr_x$s ckpt_path=.device/rt4ksr_x$s.pth repeats=50 \
      modes=[train_fp32,deploy_fp32,deploy_fp16,deploy_fp16_cl,deploy_fp16_graph,kernels,kernels_nograph] \
      $(cat "$R/best_x$s.txt") json="$R/bench_x$s.json" 2>&1 | tee "$R/bench_x$s.txt"; save
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
  echo "usage: gpu_check.sh speed|train [MINUTES]|realworld" >&2; exit 2
fi
