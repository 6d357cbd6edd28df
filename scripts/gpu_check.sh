#!/usr/bin/env bash
# One GPU session, one call: correctness of the fused kernels on CUDA, speed of every inference path (x2, x3),
# data-side timing on the GPU, and an 8-minute x2 training run on BSD200.
#
# Prepare on the CPU machine (from the repo root):
#   ../shared/tools/device-wheels.sh av safetensors onnx onnxruntime
#   mkdir -p .device && cp -r ../shared/data/testsets/set5 ../shared/data/testsets/set14 .device/ \
#     && mkdir -p .device/BSD200 && cp -r ../shared/data/BSD200/HR .device/BSD200/ \
#     && cp ../shared/checkpoints/official/rt4ksr_x*.pth .device/
# Then run with the device tool, carrying [".whl", ".device"]:  bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src TRITON_INTERPRET=0 RT4KSR_DATA_DIR=$PWD/.device/data RT4KSR_CACHE_DIR=/tmp/cache
mkdir -p .device/data/testsets && for s in set5 set14; do [ -e .device/data/testsets/$s ] || ln -s ../../$s .device/data/testsets/$s; done
[ -e .device/data/BSD200 ] || ln -s ../BSD200 .device/data/BSD200
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/kernels.txt"
import torch
from rt4ksr.kernels import TritonRTSRN
from rt4ksr.models import load_official, reparameterize
for s in (2, 3):
    d = reparameterize(load_official(f".device/rt4ksr_x{s}.pth")).cuda().half()
    x = torch.rand(1, 3, 1080 if s == 2 else 720, 1920 if s == 2 else 1280, device="cuda", dtype=torch.half)
    ref = d(x).float(); got = TritonRTSRN(d)(x).float()
    print(f"x{s}: kernels vs eager fp16 max abs diff {(got - ref).abs().max().item():.4g}")
PY
for s in 2 3; do
  timeout 240 python3 -m rt4ksr.benchmark model=rt4ksr_x$s ckpt_path=.device/rt4ksr_x$s.pth json="$OUT/bench_x$s.json" \
    hydra.run.dir=/tmp 2>&1 | tee "$OUT/bench_x$s.txt"
done
timeout 120 python3 -m rt4ksr.benchmark data data.num_workers=1 fidelity=false json="$OUT/data.json" 2>&1 | tail -5 | tee "$OUT/data.txt"
timeout 600 python3 -m rt4ksr.train experiment=bsd200_x2 trainer=gpu trainer.max_time=00:00:08:00 data.num_workers=8 \
  data.batch_size=64 data.lr_crop=128 hydra.run.dir="$OUT/train_x2" 2>&1 | tail -8 | tee "$OUT/train.txt"
