#!/usr/bin/env bash
# The GPU-ready check, for a machine with CUDA (at most ~8 minutes on one H100-class GPU):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      (default OUT_DIR: gpu-check-<date>)
#
# 1. the CUDA device(s), torch's build and the driver;
# 2. epoch times of the compact and the seed architecture, fp32 / bf16 / channels_last, full
#    60k images (benchmarks/train_throughput.py);
# 3. the demo grid (four compact trials) with four trials sharing one GPU
#    (resources.gpus_per_worker = 0.25) against one trial at a time (= 1.0), training only;
# 4. a 2-rank NCCL DDP trial, where two GPUs exist: the tiny sweep with resources.workers = 2
#    and one GPU per worker (Ray Train picks the nccl backend for GPU workers).
# Everything it prints also goes to OUT_DIR/report.txt; each step's JSON to OUT_DIR/*.json.
# On a machine without CUDA it says so in one line and exits 2, before doing anything.
# docs/BENCHMARKS.md ("GPU") lists what it measures and which figures are still unmeasured.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}

gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [ "$gpus" -lt 1 ]; then
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU node" >&2
    exit 2
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/report.txt") 2>&1
step() { printf '\n== %s (%s)\n' "$1" "$(date '+%H:%M:%S')"; }

step "1. device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices",
  [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
  "bf16 supported", torch.cuda.is_bf16_supported())'

step "2. epoch times: compact and seed, fp32 / bf16 / bf16 + channels_last (60k images)"
for arch in compact seed; do
    for mode in "--precision fp32" "--precision bf16" "--precision bf16 --channels-last"; do
        tag="$arch-$(echo "$mode" | tr -d ' -' | sed 's/precision//')"
        # shellcheck disable=SC2086  # $mode is two or three words on purpose
        timeout 240 "$PY" benchmarks/train_throughput.py --device cuda --arch "$arch" --epochs 2 $mode \
            > "$OUT/throughput-$tag.json" || echo "gpu_check: throughput $tag failed or timed out"
        "$PY" -c "import json,sys; r=json.load(open('$OUT/throughput-$tag.json')); print('$tag', json.dumps(r))" \
            2>/dev/null || true
    done
done

step "3. the demo grid: four trials sharing one GPU, then one at a time (training only)"
for share in 0.25 1.0; do
    start=$(date +%s)
    timeout 300 "$PY" -m jobs.sweep --config jobs/configs/demo.toml --out "$OUT/demo-share-$share" \
        --set resources.gpus_per_worker="$share" --set resources.cpus_per_worker=1 --no-postprocess \
        > "$OUT/demo-share-$share.log" 2>&1 || echo "gpu_check: demo with gpus_per_worker=$share failed"
    echo "gpus_per_worker=$share: $(( $(date +%s) - start )) s wall"
    tail -6 "$OUT/demo-share-$share.log"
done

step "4. a 2-rank NCCL DDP trial"
if [ "$gpus" -ge 2 ]; then
    timeout 180 "$PY" -m jobs.sweep --config jobs/configs/tiny.toml --out "$OUT/ddp-nccl" \
        --set resources.workers=2 --set resources.gpus_per_worker=1 --set resources.cpus_per_worker=1 \
        > "$OUT/ddp-nccl.log" 2>&1 || echo "gpu_check: the NCCL trial failed"
    tail -8 "$OUT/ddp-nccl.log"
else
    echo "one GPU only: the NCCL probe needs two (skipped)"
fi
step "done: $OUT/report.txt"
