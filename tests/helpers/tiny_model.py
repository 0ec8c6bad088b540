"""A tiny but real Seq2Seq family ("tiny") for testing the trainer and the sampler on their own.

The source's word embeddings, mean-pooled over its real tokens, are the initial state of a GRU
language model over `[CLS] y [SEP]`. Generation samples each candidate from its own
`candidate_generator(seed, source index)`, so a candidate never depends on its batch. Not a
baseline: it exists so that tests of `pipeline.train` and `pipeline.generate` do not depend on
the real families. Register it with `register()` (tests do so through monkeypatch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pipeline.models.base import (Batch, Family, GenerationOutput, Pair, Seq2Seq, TaskInfo,
                                  candidate_generator)

NAME = "tiny"
# A task for tests that need no tokenizer: ids 4..11 are words.
TOY_TASK = TaskInfo(vocab_size=12, seq_len=16, pad_id=0, cls_id=2, sep_id=3, unk_id=1,
                    tokenizer_dir="")


def toy_pairs(n: int, seed: int = 0) -> list[Pair]:
    """Random sources of 1-5 words; the target is the source reversed (learnable)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        src = rng.integers(4, 12, size=int(rng.integers(1, 6)))
        pairs.append((src, src[::-1].copy()))
    return pairs


@dataclass(frozen=True)
class ModelConfig:
    """hidden: embedding and GRU size. num_timesteps > 0 makes the loss report a stand-in
    timestep t = (source length mod num_timesteps), to exercise per-group logging.
    tie_embeddings: the output layer shares the embedding matrix (as DiffuSeq's lm_head does)."""

    hidden: int = 8
    num_timesteps: int = 0
    tie_embeddings: bool = False


@dataclass(frozen=True)
class DecodeConfig:
    """Ancestral sampling (or greedy), at most max_len tokens; trace_fractions: record the partial
    output after those fractions of max_len steps."""

    max_len: int = 6
    temperature: float = 1.0
    greedy: bool = False
    trace_fractions: list[float] = field(default_factory=list)

    def quality_decode(self) -> DecodeConfig:
        return dataclasses.replace(self, greedy=True, trace_fractions=[])


def _pad(rows: list[list[int]], pad_id: int) -> Tensor:
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)


class TinySeq2Seq(Seq2Seq):
    def __init__(self, cfg: ModelConfig, task: TaskInfo) -> None:
        super().__init__()
        self.cfg, self.task = cfg, task
        self.embed = nn.Embedding(task.vocab_size, cfg.hidden)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, batch_first=True)
        self.head = nn.Linear(cfg.hidden, task.vocab_size)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def collate(self, pairs: list[Pair]) -> Batch:
        task = self.task
        src = [[int(i) for i in s] for s, _ in pairs]
        trg = [[int(i) for i in t] for _, t in pairs]
        batch = {"src": _pad(src, task.pad_id),
                 "trg_in": _pad([[task.cls_id] + t for t in trg], task.pad_id),
                 "trg_out": _pad([t + [task.sep_id] for t in trg], task.pad_id)}
        if self.cfg.num_timesteps:
            batch["t"] = torch.tensor([len(s) % self.cfg.num_timesteps for s in src])
        return batch

    def _state(self, src: Tensor) -> Tensor:
        """Masked mean of the source embeddings, (1, B, H)."""
        mask = (src != self.task.pad_id).unsqueeze(-1).float()  # (B, L, 1)
        pooled = (self.embed(src) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.tanh(pooled).unsqueeze(0)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        out, _ = self.gru(self.embed(batch["trg_in"]), self._state(batch["src"]))
        logits = self.head(out)  # (B, L, V)
        target = batch["trg_out"]
        mask = (target != self.task.pad_id).float()
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, L)
        terms = {"loss": (nll * mask).sum(1) / mask.sum(1), "first_token": nll[:, 0]}
        if self.cfg.num_timesteps:
            terms["t"] = batch["t"]
        return terms

    def loss_groups(self, terms: dict[str, Tensor]) -> Tensor | None:
        if not self.cfg.num_timesteps:
            return None
        return (terms["t"] * 4 // self.cfg.num_timesteps).clamp(0, 3)

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        task, num_seeds = self.task, len(seeds)
        h = self._state(batch["src"]).repeat_interleave(num_seeds, dim=1)  # (1, B*S, H)
        gens = [candidate_generator(s, i, h.device) for i in source_indices for s in seeds]
        token = torch.full((h.shape[1], 1), task.cls_id, dtype=torch.long, device=h.device)
        banned = [task.pad_id, task.cls_id, task.unk_id]
        rows: list[list[int]] = [[] for _ in gens]
        done = [False] * len(gens)
        trace_at = {max(1, round(f * decode.max_len)): f for f in decode.trace_fractions}
        trace: dict[float, Any] = {}
        for step in range(1, decode.max_len + 1):
            out, h = self.gru(self.embed(token), h)
            logits = self.head(out[:, -1]) / max(decode.temperature, 1e-6)  # (B*S, V)
            logits[:, banned] = -float("inf")
            for r, gen in enumerate(gens):
                pick = (int(logits[r].argmax()) if decode.greedy else
                        int(torch.multinomial(logits[r].softmax(-1), 1, generator=gen)))
                done[r] = done[r] or pick == task.sep_id
                if not done[r]:
                    rows[r].append(pick)
                token[r, 0] = pick
            if step in trace_at:
                trace[trace_at[step]] = self._nest(rows, num_seeds)
        return GenerationOutput(ids=self._nest(rows, num_seeds), trace=trace)

    @staticmethod
    def _nest(rows: list[list[int]], num_seeds: int) -> list[list[list[int]]]:
        return [[list(r) for r in rows[i:i + num_seeds]] for i in range(0, len(rows), num_seeds)]

    def export_config(self) -> dict[str, Any]:
        return {"model": dataclasses.asdict(self.cfg), "task": dataclasses.asdict(self.task)}


def build(model_cfg: ModelConfig, task: TaskInfo) -> TinySeq2Seq:
    return TinySeq2Seq(model_cfg, task)


def from_export(config: dict[str, Any]) -> TinySeq2Seq:
    return TinySeq2Seq(ModelConfig(**config["model"]), TaskInfo(**config["task"]))


FAMILY = Family(NAME, ModelConfig, DecodeConfig, build, from_export,
                quality_decode=DecodeConfig.quality_decode)


def register(monkeypatch: Any) -> None:
    """Make "tiny" a known family for the duration of a test."""
    from pipeline.models.registry import family_modules

    monkeypatch.setitem(family_modules(), NAME, __name__)
