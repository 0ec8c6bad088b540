"""The data types that pass between the data stages, the trainer, the sampler and the model
families. A neutral module: it imports nothing of the project, so `pipeline.data`,
`pipeline.checkpoint` and every family can depend on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

Batch = dict[str, Tensor]
Pair = tuple[np.ndarray, np.ndarray]  # (source ids, target ids): word pieces, no special tokens


@dataclass(frozen=True)
class TaskInfo:
    """What a model needs to know of a task's tokenization (from `data/processed/<task>`)."""

    vocab_size: int
    seq_len: int
    pad_id: int
    cls_id: int
    sep_id: int
    unk_id: int
    tokenizer_dir: str


@dataclass
class GenerationOutput:
    """ids[i][k]: target ids for source i of the batch and seed k. trace[f][i][k]: the decoded
    intermediate output after a fraction f of the generation (diffusion steps or refinement
    iterations), when the decode config asks for it."""

    ids: list[list[list[int]]]
    trace: dict[float, list[list[list[int]]]] = field(default_factory=dict)
