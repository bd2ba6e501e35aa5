#!/usr/bin/env bash
# The whole GPU check as one prepared script, sized for a lent GPU machine with ~10 minutes of command time
# (one H100/H200; a bare image with its own python3 + PyTorch, no internet, no ../shared beside the checkout).
#
#   here, once:      bash benchmarks/gpu_session.sh --prepare   # CIFAR-10 subset into .device_data/ (ignored)
#   on the GPU box:  bash benchmarks/gpu_session.sh OUT_DIR     # logs and tables land in OUT_DIR
#
# --prepare copies the first 1,000 JPEGs of each class of ../shared/data/images/cifar10/train (~9 MiB) into
# .device_data/cifar10/train, which the device call carries; on the GPU box the script links it where the
# recipes look (../shared/data/images/cifar10/train) when that path is absent. Steps, each under `timeout`
# and joined with `;` so that one failing step cannot hide the others' results:
#   1. environment: nvidia-smi, python, torch, CUDA, which optional packages import (env.txt);
#   2. benchmarks/gpu_check.py: 20 training steps through the real pipeline of every CIFAR-10 GPU profile and
#      of the GPU profiles of the quickstart and of one recipe per other modality (procedural data; a recipe
#      whose optional package is missing is reported skipped), 4 recipes at a time: a smoke check; samples/s
#      of a shared GPU (gpu_check.log);
#   3. benchmarks/throughput.py: the Trainer against the bare loop, one recipe at a time (throughput.log);
#   4. benchmarks/gpu_profile.py: bf16 peak, SimCLR fp32/bf16/channels_last/compile matrix, the optimizer step
#      alone (LARS vs SGD), MAE ViT-B/16 MFU, loader-only vs training rate (gpu_profile.log).
# GPU_SESSION_DEVICE=cpu runs the same steps at tiny sizes on the CPU: a test of this script, not a measurement.
# Exit status: 0 when every step exited 0, else the number of steps that failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
CIFAR=../shared/data/images/cifar10/train
SUBSET=.device_data/cifar10/train
PER_CLASS=1000

if [ "${1:-}" = "--prepare" ]; then
    if [ ! -d "$CIFAR" ]; then
        echo "gpu_session: $CIFAR not found (the CIFAR-10 training JPEGs; see ../shared/data/README.md)" >&2
        exit 2
    fi
    rm -rf "$SUBSET"
    for class_dir in "$CIFAR"/*/; do
        class=$(basename "$class_dir")
        mkdir -p "$SUBSET/$class"
        find "$class_dir" -maxdepth 1 -type f | sort | head -n "$PER_CLASS" | xargs -d '\n' cp -t "$SUBSET/$class"
    done
    echo "gpu_session: $(find "$SUBSET" -type f | wc -l) images in $SUBSET ($(du -sh --apparent-size "$SUBSET" | cut -f1));" \
        "carry .device_data in the device call"
    exit 0
fi

OUT_DIR="${1:-${OUT:-runs/gpu_session}}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
if [ ! -e "$CIFAR" ] && [ -d "$SUBSET" ]; then
    mkdir -p "$(dirname "$CIFAR")" && ln -s "$ROOT/$SUBSET" "$CIFAR"
fi

failed=0
step() {  # step NAME SECONDS COMMAND...: run under a time limit, log to OUT_DIR/NAME.log, count failures
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "=== $name: exit $rc"; failed=$((failed + 1)); }
}

{
    date -u
    nvidia-smi || true
    "$PY" - <<'EOF'
import importlib.util, platform, sys
import torch
print(f"python {platform.python_version()} ({sys.executable}), torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}")
optional = ["torchvision", "torchaudio", "av", "soundfile", "decord", "torchcodec", "webdataset", "open3d", "coacd",
            "transformers", "tokenizers", "lightly", "timm", "safetensors", "tensorboard"]
print("importable:", ", ".join(n for n in optional if importlib.util.find_spec(n)))
print("missing:", ", ".join(n for n in optional if not importlib.util.find_spec(n)) or "none")
EOF
} 2>&1 | tee "$OUT_DIR/env.txt"

RECIPES=(quickstart_gpu video/crw_gpu audio/simclr_gpu pointcloud/point_mae_gpu text/mlm_gpu)
for r in recipes/image/cifar10/*_gpu.yaml recipes/semi/cifar10/*_gpu.yaml; do RECIPES+=("$r"); done
if [ "${GPU_SESSION_DEVICE:-cuda}" = cpu ]; then  # a test of this script on a machine without a GPU
    step gpu_check 600 "$PY" benchmarks/gpu_check.py "${RECIPES[@]}" --device cpu --steps 2 --timeout 300 --no-throughput
    step throughput 120 "$PY" benchmarks/throughput.py --device cpu --batch-size 8 --steps 1 --warmup 1
    step gpu_profile 300 "$PY" benchmarks/gpu_profile.py --device cpu --quick
else
    step gpu_check 240 "$PY" benchmarks/gpu_check.py "${RECIPES[@]}" --steps 20 --jobs 4 --timeout 150 --no-throughput
    step throughput 90 "$PY" benchmarks/throughput.py --device cuda --steps 100 --warmup 20
    step gpu_profile 240 "$PY" benchmarks/gpu_profile.py --warmup 10 --steps 30 --mae-steps 10
fi
echo "gpu_session: $failed step(s) failed; logs in $OUT_DIR"
exit "$failed"
