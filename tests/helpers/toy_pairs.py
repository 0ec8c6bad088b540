"""The toy task the model-family unit tests share: 40 ids, random pairs of a few tokens."""

import numpy as np

from pipeline.models.base import TaskInfo

TASK = TaskInfo(vocab_size=40, seq_len=12, pad_id=0, cls_id=2, sep_id=3, unk_id=1, tokenizer_dir="")


def toy_pairs(count: int = 16, seed: int = 0):
    """`count` (source, target) id arrays of 1–7 and 1–6 ordinary tokens (ids 5..39)."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(5, 40, rng.integers(1, 8)), rng.integers(5, 40, rng.integers(1, 7)))
            for _ in range(count)]
