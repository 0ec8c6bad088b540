"""The interface every model family implements, so one trainer and one sampler serve them all.

A family module (`pipeline/models/<family>.py`) defines `ModelConfig` and `DecodeConfig`
(frozen dataclasses: the `model:` and `decode:` blocks of a system in the parameter file) and a
`build(model_cfg, task: TaskInfo) -> Seq2Seq`. See `pipeline.models.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

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


class Seq2Seq(nn.Module):
    """A sequence-to-sequence model as the shared trainer and sampler see it.

    `collate` turns a list of (source ids, target ids) pairs into tensors; `loss` returns per-example
    terms, "loss" (B,) being the one optimised (others are logged); `generate` returns, for every
    source of the batch and every seed, the word-piece ids of the generated target (no specials).
    Candidate (source index i, seed s) must depend only on the weights, s and i, never on batch
    composition: draw its randomness from `candidate_generator(s, i)`.
    """

    def collate(self, pairs: list[Pair]) -> Batch:
        raise NotImplementedError

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    # The tokenizer that decodes this model's ids (a family with its own, e.g. pretrained GPT-2,
    # overrides it); outputs are then normalised with the task's tokenizer (pipeline.text).
    tokenizer_dir: str = ""

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: Any) -> GenerationOutput:
        raise NotImplementedError

    def export_config(self) -> dict[str, Any]:
        """The JSON-able configuration saved beside the weights (enough to rebuild the model)."""
        raise NotImplementedError


def candidate_generator(seed: int, source_index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of one candidate: a function of (seed, source index) only."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + source_index) % (2**63 - 1))
    return gen
