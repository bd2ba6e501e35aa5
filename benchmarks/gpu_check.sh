#!/usr/bin/env bash
# GPU smoke check: a few training steps of every recipe (bf16 autocast), then the throughput benchmark.
# Usage, from the repository root:   bash benchmarks/gpu_check.sh [--steps N] [recipe ...]
# Python: $PYTHON, else .venv/bin/python, else `python` when it can import mmssl.
# Exit status: 0 when every recipe trained (or there is no CUDA device), non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-.venv/bin/python}"
if [ -z "${PYTHON:-}" ] && [ ! -x "$PY" ]; then
    if command -v python >/dev/null 2>&1 && python -c "import mmssl" >/dev/null 2>&1; then
        PY=python
    else
        echo "gpu_check: no .venv/bin/python and no python with mmssl installed (run 'make install' or set PYTHON)" >&2
        exit 2
    fi
fi

exec "$PY" benchmarks/gpu_check.py "$@"
