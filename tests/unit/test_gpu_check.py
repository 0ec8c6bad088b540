"""bench/gpu_check.sh, the prepared GPU check, runs end to end at toy size on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_at_tiny_size_on_cpu():
    out = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--size", "tiny",
                          "--device", "cpu", "--repeats", "1"],
                         env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
                         check=True, capture_output=True, text=True, timeout=300).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["size"] == "tiny" and figures["train_mode"] == "eager"
    rates = ["train_tokens_per_s", "train_mfu", "train_peak_memory_mb", "ddpm_40_seq_per_s",
             "ddim_20_seq_per_s", "transformer_decode_seq_per_s"]
    assert all(figures[name] > 0 for name in rates)
    assert figures["train_flops_per_step"] > 0
