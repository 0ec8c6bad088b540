"""Train the tiny model under `torchrun` (test_ddp.py): `ddp_fit.py <weights out> <state dir>`.

Rank 0 writes the trained parameters to <weights out> (safetensors) for comparison with a single
process that uses the same global batch.
"""

import sys
from pathlib import Path

import safetensors.torch
import torch

from pipeline import distributed
from pipeline.train import fit
from tests.helpers.tiny_model import TOY_TASK, ModelConfig, build, toy_pairs

# The run both sides of the comparison share; micro_batch is set per side.
DDP_RUN = dict(steps=5, batch_size=4, lr=1e-2, warmup_steps=1, grad_clip=1.0, ema_rate=0.9,
               checkpoint_every=2, eval_every=2, eval_batches=2, seed=11)
NUM_TRAIN, NUM_VALID = 12, 4


def initial_model():
    torch.manual_seed(0)
    return build(ModelConfig(), TOY_TASK)


def main(out: Path, state_dir: Path) -> None:
    from pipeline.config import TrainConfig

    torch.set_num_threads(1)
    cfg = TrainConfig(micro_batch=2, **DDP_RUN)
    model = fit(initial_model(), toy_pairs(NUM_TRAIN), toy_pairs(NUM_VALID, 1), cfg, state_dir,
                progress=False)
    ctx = distributed.init("cpu")
    if ctx.is_main:
        safetensors.torch.save_model(model, str(out))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
