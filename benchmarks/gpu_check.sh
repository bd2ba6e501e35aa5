#!/usr/bin/env bash
# GPU smoke check: a few training steps of every recipe (bf16 autocast), then the throughput benchmark.
# Usage, from the repository root:   bash benchmarks/gpu_check.sh [--steps N] [recipe ...]
# Python: $PYTHON, else .venv/bin/python, else a python3 or python that imports torch (a bare GPU image:
# gpu_check.py puts this checkout on sys.path, so mmssl need not be installed).
# Exit status: 0 when every recipe trained (or there is no CUDA device), non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for candidate in .venv/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
            PY=$candidate
            break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "gpu_check: no .venv/bin/python, python3 or python that imports torch (run 'make install' or set PYTHON)" >&2
    exit 2
fi

exec "$PY" benchmarks/gpu_check.py "$@"
