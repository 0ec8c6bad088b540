"""Quick evaluation of a model on a slice of a split, without writing a sample folder: the texts
exactly as the sample stage writes them, scored with the project's sentence BLEU (one candidate,
or the MBR pick). The sampler sweep and the convergence probe use it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import metrics
from pipeline.decoding import mbr
from pipeline.generate import NO_TARGET, generate_candidates
from pipeline.models.base import Pair, Seq2Seq


@dataclass
class EvalSet:
    """Sources (targets removed) and normalised references of one split, and its tokenizer."""

    pairs: list[Pair]
    references: list[str]
    tokenizer: Any


def load_eval_set(data_dir: Path, split: str, num_sources: int | None = None) -> EvalSet:
    """The first `num_sources` examples (all when None) of a prepared split."""
    from pipeline.data.dataset import load_split, load_tokenizer, read_texts
    from pipeline.text import normalize

    tokenizer = load_tokenizer(data_dir)
    texts = read_texts(data_dir, split)[:num_sources]
    pairs = [(src, NO_TARGET) for src, _ in load_split(data_dir, split)[:len(texts)]]
    return EvalSet(pairs, [normalize(tokenizer, row["trg"]) for row in texts], tokenizer)


def generate_texts(model: Seq2Seq, data: EvalSet, seeds: list[int], decode: Any,
                   batch_size: int) -> tuple[list[list[str]], dict[str, float]]:
    """Candidates as the sample stage writes them, [i][k] for source i and seed k, and the cost
    of generating them (all seeds batched together; text decoding not counted): "wall_s", and
    "cpu_s", the process's CPU seconds, which on a shared machine tracks the work better."""
    from pipeline.generate import text_writer

    wall, cpu = time.perf_counter(), time.process_time()
    out = generate_candidates(model, data.pairs, seeds, decode, batch_size, progress=False)
    cost = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    to_text = text_writer(model, data.tokenizer)
    return [[to_text(ids) for ids in row] for row in out.ids], cost


def single_candidate_bleu(candidates: list[list[str]], references: Sequence[str]) -> float:
    """Mean sentence BLEU of every candidate against its source's reference: the expected BLEU of
    one sample (averaged over the seeds rather than taking the first, for less noise)."""
    return float(np.mean([metrics.sentence_bleu(ref, c)
                          for ref, row in zip(references, candidates, strict=True) for c in row]))


def mbr_bleu(candidates: list[list[str]], references: Sequence[str], utility: str = "bleu") -> float:
    """Mean sentence BLEU of each source's MBR pick among all its candidates."""
    picks = mbr.select(candidates, utility)
    return float(np.mean([metrics.sentence_bleu(ref, row[k])
                          for ref, row, k in zip(references, candidates, picks, strict=True)]))


def decode_bleu(model: Seq2Seq, data: EvalSet, decode: Any, seeds: Sequence[int] = (0,),
                batch_size: int = 100) -> float:
    """The convergence probe: single-candidate BLEU under one fixed, cheap decode (e.g.
    DPM-Solver++ with 10 steps on 100 validation sources), callable at any checkpoint. The model
    is put in eval mode for the decode and its mode restored; no global random state is used."""
    was_training = model.training
    model.eval()
    try:
        candidates, _ = generate_texts(model, data, list(seeds), decode, batch_size)
    finally:
        model.train(was_training)
    return single_candidate_bleu(candidates, data.references)
