#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py): paper-size DiffuSeq training (bf16, SDPA, fused
# AdamW, torch.compile where it pays), DDPM / respaced-DDIM sampling and Transformer-base decoding
# throughput. Run it wherever a GPU is available:
#   bench/gpu_check.sh [--size paper|tiny] [--device auto|cuda|cpu] [--compile auto|on|off]
# PYTHON picks the interpreter (default: the project's .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "nvidia-smi not found: no NVIDIA GPU visible"
fi
exec "$PYTHON" bench/gpu_check.py "$@"
