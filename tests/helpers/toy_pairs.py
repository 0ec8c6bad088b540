"""The toy task the model-family unit tests share: 40 ids, random pairs of a few tokens."""

import numpy as np

from pipeline.models.base import TaskInfo

TASK = TaskInfo(vocab_size=40, seq_len=12, pad_id=0, cls_id=2, sep_id=3, unk_id=1, tokenizer_dir="")


def toy_pairs(count: int = 16, seed: int = 0):
    """`count` (source, target) id arrays of 1–7 and 1–6 ordinary tokens (ids 5..39)."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(5, 40, rng.integers(1, 8)), rng.integers(5, 40, rng.integers(1, 7)))
            for _ in range(count)]


def mean_loss_terms(model, batch) -> dict[str, float]:
    """The batch mean of each loss term, without gradients."""
    import torch

    with torch.no_grad():
        return {name: float(value.mean()) for name, value in model.loss(batch).items()}


def overfit(model, state_dir, *, steps: int, lr: float, warmup_steps: int = 0):
    """Train `model` on the 16 toy pairs through the shared trainer (the overfitting check every
    family runs). Returns (model in eval mode, the pairs, their batch, the untrained model's
    `mean_loss_terms` on that batch): tests assert exact decodes and a relative drop of the loss,
    never an absolute trained value (its last digits depend on the CPU)."""
    from pipeline.config import TrainConfig
    from pipeline.train import fit

    pairs = toy_pairs()
    batch = model.collate(pairs)
    before = mean_loss_terms(model.eval(), batch)
    cfg = TrainConfig(steps=steps, batch_size=16, micro_batch=16, lr=lr, warmup_steps=warmup_steps,
                      grad_clip=1.0, seed=1, checkpoint_every=1000, eval_every=1000)
    model = fit(model, pairs, None, cfg, state_dir, progress=False).eval()
    return model, pairs, batch, before
