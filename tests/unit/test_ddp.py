"""Data-parallel training (2 CPU processes, Gloo) equals one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from pipeline.config import TrainConfig
from pipeline.train import fit
from tests.helpers.ddp_fit import DDP_RUN, NUM_TRAIN, NUM_VALID, initial_model
from tests.helpers.tiny_model import toy_pairs

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow        # starts torchrun and two worker processes


def test_two_processes_match_one_process_with_accumulation(tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "tests" / "helpers" / "ddp_fit.py"), str(out), str(tmp_path / "ddp_state")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = safetensors.torch.load_file(out)

    torch.set_num_threads(1)
    # One process, micro-batch of half the global batch, two accumulation steps.
    single = fit(initial_model(), toy_pairs(NUM_TRAIN), toy_pairs(NUM_VALID, 1),
                 TrainConfig(micro_batch=DDP_RUN["batch_size"] // 2, **DDP_RUN),
                 tmp_path / "single_state", progress=False)
    assert (tmp_path / "ddp_state" / "step-00000005").is_dir()
    before = initial_model().state_dict()
    for name, value in single.state_dict().items():
        assert not torch.equal(value, before[name]), f"{name} did not train"
        torch.testing.assert_close(ddp[name], value, rtol=1e-5, atol=1e-6)
