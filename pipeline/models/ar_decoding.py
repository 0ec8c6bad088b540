"""Autoregressive decoding for the AR baselines (GRU-attention, Transformer, GPT-2).

The `decode:` block of every AR system is a `DecodeConfig`:

    candidates: Search   # how the candidate sets of MBR and the diversity columns are drawn
    quality: Search      # the deterministic decode of the table's quality columns (greedy or beam)
    max_len: int | null  # most target tokens generated, EOS not counted (null: the task's seq_len)

`generate(batch, seeds, source_indices, decode)` of an AR model always decodes with
`decode.candidates`. `decode.quality_decode()` returns a copy whose `candidates` is the `quality`
search, so the sample stage calls `generate` once with it (seeds=[0]) for best.jsonl: the mode is
picked by the config given, and a parameter file may also draw its candidates with a
deterministic search (the paper's GRU row has self-BLEU ~1). Candidate (seed s, source i) is,
per `Search.method`:

    sample        a draw from the temperature / top-k / top-p filtered distribution whose
                  randomness comes only from `candidate_generator(s, i)` (one uniform per step)
    greedy, beam  the same sequence for every seed
    diverse_beam  the best hypothesis of group (s mod num_groups) of diverse beam search with a
                  Hamming diversity penalty (Vijayakumar et al., 2018, "Diverse Beam Search")

All of them run over an `IncrementalDecoder`, which a model builds for a batch of sources: it
returns next-token logits one step at a time and can reorder, duplicate or drop its rows (beams,
seeds, finished samples). It carries its state from step to step (the Transformer's key/value
cache, the GRU's hidden state, the caches of transformers' GPT-2 and T5), so a step computes the
new position only and projects only it onto the vocabulary. Beam scores are sums of
log-probabilities divided by length ** length_penalty, the length counting the EOS; a search ends
when every source's best finished hypotheses cannot be beaten (the usual "early_stopping=False"
rule) or at max_len, where unfinished beams are kept.

The module also holds the teacher-forced batch layout, the padding rule of every baseline's
batches (`padded_width`: the batch's own longest row, never the task's seq_len, rounded up to a
multiple of 8 on a GPU: `pad_multiple`) and the base class the two encoder-decoder baselines
share (`EncoderDecoder`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.models.base import (Batch, GenerationOutput, Pair, Seq2Seq, TaskInfo,
                                  candidate_generator)

DETERMINISTIC = ("greedy", "beam")


@dataclass(frozen=True)
class Search:
    """One decoding rule. Fields a method does not use are ignored.

    method: `greedy`, `beam` (beam_size, length_penalty), `sample` (temperature, top_k, top_p) or
    `diverse_beam` (num_groups groups of beam_size beams, diversity_penalty, length_penalty).
    """

    method: Literal["greedy", "beam", "sample", "diverse_beam"]
    beam_size: int = 4
    length_penalty: float = 1.0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_groups: int = 4
    diversity_penalty: float = 0.5

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.num_groups < 1:
            raise ValueError(f"beam_size and num_groups must be >= 1 (got {self.beam_size}, "
                             f"{self.num_groups})")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"need temperature > 0, 0 < top_p <= 1, top_k >= 0 (got "
                             f"{self.temperature}, {self.top_p}, {self.top_k})")


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding of an AR system: `candidates` for the candidate sets, `quality` (greedy or beam)
    for the table's quality columns, `max_len` target tokens at most (null: the task's seq_len).
    See `pipeline.models.ar_decoding`."""

    candidates: Search = field(default_factory=lambda: Search("sample"))
    quality: Search = field(default_factory=lambda: Search("beam"))
    max_len: int | None = None

    def __post_init__(self) -> None:
        if self.quality.method not in DETERMINISTIC:
            raise ValueError(f"decode.quality.method must be one of {DETERMINISTIC}, "
                             f"got '{self.quality.method}'")

    def quality_decode(self) -> DecodeConfig:
        """The config for the deterministic decode: `generate` then runs the quality search."""
        return dataclasses.replace(self, candidates=self.quality)


def describe(decode: Any) -> str:
    """The decoding in words for the table's footnote (any decode with candidates/quality)."""
    return f"candidates: method={decode.candidates.method}; quality: method={decode.quality.method}"


class IncrementalDecoder(Protocol):
    """A model's decoder state over N rows, advanced one token at a time."""

    def start(self) -> Tensor:
        """Logits of the first target token of each row: (N, V)."""

    def step(self, tokens: Tensor) -> Tensor:
        """Append `tokens` (N,) to the rows; returns the next token's logits (N, V)."""

    def select(self, index: Tensor) -> None:
        """Keep rows `index` (N',) in that order: reorders, duplicates or drops rows."""


# --- the decoding rules --------------------------------------------------------------------------

def run_search(decoder: IncrementalDecoder, search: Search, max_len: int, eos_id: int,
           seeds: Sequence[int], source_indices: Sequence[int]) -> list[list[list[int]]]:
    """Decode every (source, seed) candidate; ids[i][k] for source i and seeds[k], EOS excluded.

    Args:
        decoder: the model's decoder over the batch's sources, one row per source, in the order of
            `source_indices` (the indices of these sources in the test set).
        search: the decoding rule (see the module docstring).
        max_len: most tokens per candidate, EOS not counted.
        eos_id: the token that ends a candidate.
    """
    if search.method not in METHODS:
        raise KeyError(f"unknown decoding method '{search.method}' (known: {sorted(METHODS)})")
    return METHODS[search.method](decoder, search, max_len, eos_id, seeds, source_indices)


def _greedy(decoder, search, max_len, eos_id, seeds, source_indices):
    best = beam_search(decoder, len(source_indices), max_len, eos_id, beam_size=1)
    return [[groups[0] for _ in seeds] for groups in best]


def _beam(decoder, search, max_len, eos_id, seeds, source_indices):
    best = beam_search(decoder, len(source_indices), max_len, eos_id, beam_size=search.beam_size,
                       length_penalty=search.length_penalty)
    return [[groups[0] for _ in seeds] for groups in best]


def _diverse_beam(decoder, search, max_len, eos_id, seeds, source_indices):
    best = beam_search(decoder, len(source_indices), max_len, eos_id, beam_size=search.beam_size,
                       length_penalty=search.length_penalty, num_groups=search.num_groups,
                       diversity_penalty=search.diversity_penalty)
    return [[groups[s % search.num_groups] for s in seeds] for groups in best]


def _sample(decoder, search, max_len, eos_id, seeds, source_indices):
    generators = [candidate_generator(s, i) for i in source_indices for s in seeds]
    rows = sample(decoder, generators, max_len, eos_id, temperature=search.temperature,
                  top_k=search.top_k, top_p=search.top_p)
    k = len(seeds)
    return [rows[j * k:(j + 1) * k] for j in range(len(source_indices))]


METHODS: dict[str, Callable[..., list[list[list[int]]]]] = {
    "greedy": _greedy, "beam": _beam, "sample": _sample, "diverse_beam": _diverse_beam}


def filter_probs(logits: Tensor, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0) -> Tensor:
    """Next-token probabilities after temperature, top-k and nucleus (top-p) filtering.

    Args:
        logits: (N, V).
    Returns:
        (N, V) float32 probabilities; top-p keeps the most likely tokens until their mass reaches
        top_p (the most likely token is always kept; tokens tied with the last one kept are kept
        too). Not renormalised after top-p.
    """
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p < 1.0:
        probs = probs.masked_fill(probs < nucleus_threshold(probs, top_p), 0.0)
    return probs


# (shift, width) of the bit fields of a float32 probability, high to low (the sign bit is 0)
NUCLEUS_FIELDS = ((20, 11), (10, 10), (0, 10))


def nucleus_threshold(probs: Tensor, top_p: float) -> Tensor:
    """The least probability nucleus (top-p) filtering keeps in each row, found without a sort.

    tau is the largest value with mass(p >= tau) >= top_p, so that p >= tau keeps the most likely
    tokens until their mass reaches top_p. A non-negative float32 orders like its bit pattern, so
    tau is found one bit field at a time: a histogram of the row's mass over the high 11 bits picks
    the bucket where the mass from the top crosses top_p, then histograms over the next 10 and the
    last 10 bits, inside the chosen bucket, pick the rest. Three passes over (N, V) instead of a
    sort of every row, which dominates a step of a 30k vocabulary; masses are summed in float64.

    Args:
        probs: (N, V) float32 probabilities.
    Returns:
        (N, 1) float32 thresholds (0, keeping the row, where its whole mass falls short of top_p).
    """
    bits = probs.contiguous().view(torch.int32).long()                # (N, V)
    mass = probs.double()
    prefix = torch.zeros(probs.shape[0], 1, dtype=torch.long, device=probs.device)
    above = torch.zeros(probs.shape[0], 1, dtype=torch.float64, device=probs.device)
    for shift, width in NUCLEUS_FIELDS:
        fields = bits >> shift
        inside = mass.masked_fill((fields >> width) != prefix, 0.0)  # the bucket chosen so far
        hist = torch.zeros(probs.shape[0], 1 << width, dtype=torch.float64, device=probs.device)
        hist.scatter_add_(1, fields & ((1 << width) - 1), inside)
        from_top = hist.flip(1).cumsum(1).flip(1) + above             # mass at or above each field
        chosen = ((from_top >= top_p).sum(1, keepdim=True) - 1).clamp(min=0)
        above = (from_top - hist).gather(1, chosen)
        prefix = (prefix << width) | chosen
    return prefix.int().view(torch.float32)


def sample(decoder: IncrementalDecoder, generators: list[torch.Generator], max_len: int,
           eos_id: int, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> list[list[int]]:
    """Ancestral sampling, row r drawing its randomness only from generators[r].

    The decoder's B rows are expanded to len(generators) rows, each source repeated
    len(generators) // B times in a row (source-major order). Each step draws one uniform per
    live row on the CPU and inverts the row's CDF, so a row's tokens never depend on the other
    rows or on the device's random streams; a row that has drawn EOS leaves the decoder, so later
    steps cost only the rows still being written.

    Returns:
        token lists (EOS excluded), one per generator.
    """
    logits = decoder.start()                                          # (B, V)
    repeats = len(generators) // logits.shape[0]
    index = torch.arange(logits.shape[0], device=logits.device).repeat_interleave(repeats)
    decoder.select(index)
    logits = logits[index]                                            # (N, V)
    tokens = torch.full((len(generators), max_len), eos_id, dtype=torch.long)
    live = torch.arange(len(generators))                              # candidate of each row
    for step in range(max_len):
        picked = _draw(filter_probs(logits, temperature, top_k, top_p),
                       [generators[n] for n in live.tolist()])
        tokens[live, step] = picked.cpu()
        going = picked != eos_id
        if not bool(going.any()) or step == max_len - 1:
            break
        if not bool(going.all()):
            decoder.select(going.nonzero()[:, 0])
            live, picked = live[going.cpu()], picked[going]
        logits = decoder.step(picked)
    return [strip_after_eos(row, eos_id) for row in tokens.tolist()]


def _draw(probs: Tensor, generators: list[torch.Generator]) -> Tensor:
    """One token per row of `probs` (N, V) by inverting its CDF at a uniform from the row's own
    CPU generator: (N,) ids."""
    cdf = probs.cumsum(-1)
    uniforms = torch.stack([torch.rand((), generator=g) for g in generators]).to(cdf.device)
    # scaled by the row's total so that a float-rounded CDF below 1 never selects past it
    picked = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None], right=True)[:, 0]
    return picked.clamp(max=cdf.shape[-1] - 1)


def strip_after_eos(tokens: list[int], eos_id: int) -> list[int]:
    """The tokens before the first EOS."""
    return tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens


def beam_search(decoder: IncrementalDecoder, num_sources: int, max_len: int, eos_id: int,
                beam_size: int = 1, length_penalty: float = 1.0, num_groups: int = 1,
                diversity_penalty: float = 0.0) -> list[list[list[int]]]:
    """Beam search in `num_groups` groups of `beam_size` beams per source.

    Groups are searched one after another at each step; group g's selection is penalised by
    `diversity_penalty` times the number of times earlier groups picked the same token at this
    step (Hamming diversity). The penalty steers selection only: beam scores stay the model's
    log-probabilities. One group of one beam is greedy search.

    Returns:
        best[b][g]: the best hypothesis of group g for source b (EOS excluded).
    """
    shape = (num_sources, num_groups, beam_size)
    logits = decoder.start()                                          # (B, V)
    device = logits.device
    rows_per_source = num_groups * beam_size
    decoder.select(torch.arange(num_sources, device=device).repeat_interleave(rows_per_source))
    logp = logits.float().log_softmax(-1).repeat_interleave(rows_per_source, 0)
    logp = logp.view(*shape, -1)                                      # (B, G, K, V)
    # every beam of a group starts from the same prefix, so only one of them is live at first
    scores = torch.full(shape, float("-inf"), device=device)
    scores[:, :, 0] = 0.0
    hyps = torch.zeros(*shape, 0, dtype=torch.long, device=device)  # (B, G, K, t)
    pool = _Finished(num_sources, num_groups, beam_size, length_penalty)
    first_row = torch.arange(num_sources * num_groups, device=device).view(*shape[:2], 1)
    first_row = first_row * beam_size                                 # (B, G, 1)
    for step in range(max_len):
        tokens, origin, scores = _extend(logp, scores, hyps, eos_id, pool, diversity_penalty)
        hyps = torch.cat([hyps.gather(2, origin[..., None].expand_as(hyps)), tokens[..., None]], -1)
        decoder.select((first_row + origin).flatten())
        if pool.all_done() or step == max_len - 1:
            break
        logp = decoder.step(tokens.flatten()).float().log_softmax(-1).view(*shape, -1)
    pool.add_unfinished(scores, hyps)
    return pool.best()


def _extend(logp: Tensor, scores: Tensor, hyps: Tensor, eos_id: int, pool: _Finished,
            diversity_penalty: float) -> tuple[Tensor, Tensor, Tensor]:
    """One step of grouped beam search: finish EOS extensions, keep the best K others per group.

    Args:
        logp: (B, G, K, V) next-token log-probabilities; scores: (B, G, K); hyps: (B, G, K, t).
    Returns:
        (tokens, origin beam, new scores), each (B, G, K).
    """
    num_sources, num_groups, beam_size, vocab = logp.shape
    total = scores[..., None] + logp                                  # (B, G, K, V)
    used = torch.zeros(num_sources, vocab, device=logp.device)        # picks of earlier groups
    tokens, origin, new_scores = [], [], []
    for g in range(num_groups):
        ranked = (total[:, g] - diversity_penalty * used[:, None, :]).reshape(num_sources, -1)
        # an EOS among the K best extensions ends a hypothesis (it then leaves the beam)
        top = ranked.topk(beam_size, dim=1).indices                   # (B, K)
        ends = (top % vocab == eos_id) & ranked.gather(1, top).isfinite()
        for b, j in ends.nonzero().tolist():
            k = int(top[b, j]) // vocab
            pool.add(b, g, float(total[b, g, k, eos_id]), hyps[b, g, k].tolist())
        ranked.view(num_sources, beam_size, vocab)[..., eos_id] = float("-inf")
        best = ranked.topk(beam_size, dim=1).indices                  # (B, K)
        tokens.append(best % vocab)
        origin.append(best // vocab)
        new_scores.append(total[:, g].reshape(num_sources, -1).gather(1, best))
        used.scatter_add_(1, tokens[-1], torch.ones_like(new_scores[-1]))
        pool.update_done(g, new_scores[-1], hyps.shape[-1] + 1)
    return torch.stack(tokens, 1), torch.stack(origin, 1), torch.stack(new_scores, 1)


class _Finished:
    """Finished hypotheses per (source, group), scored by log p / length ** length_penalty."""

    def __init__(self, num_sources: int, num_groups: int, beam_size: int, length_penalty: float):
        self.beam_size, self.length_penalty = beam_size, length_penalty
        self.hyps: list[list[list[tuple[float, list[int]]]]] = [
            [[] for _ in range(num_groups)] for _ in range(num_sources)]
        self.done = [[False] * num_groups for _ in range(num_sources)]

    def add(self, b: int, g: int, logp: float, tokens: list[int]) -> None:
        """Record a hypothesis that ended with EOS after `tokens` (its length counts the EOS)."""
        if not self.done[b][g]:
            self.hyps[b][g].append((logp / (len(tokens) + 1) ** self.length_penalty, tokens))

    def update_done(self, g: int, live: Tensor, length: int) -> None:
        """Close group g of a source once its K finished beat its best live beam (live: (B, K))."""
        best_live = (live.max(1).values / length ** self.length_penalty).tolist()
        for b, bound in enumerate(best_live):
            found = sorted((s for s, _ in self.hyps[b][g]), reverse=True)
            if len(found) >= self.beam_size and found[self.beam_size - 1] >= bound:
                self.done[b][g] = True

    def all_done(self) -> bool:
        return all(all(row) for row in self.done)

    def add_unfinished(self, scores: Tensor, hyps: Tensor) -> None:
        """At max_len, the live beams of open groups compete with the finished ones."""
        norm = max(hyps.shape[-1], 1) ** self.length_penalty
        for b, g, k in torch.isfinite(scores).nonzero().tolist():
            if not self.done[b][g]:
                self.hyps[b][g].append((float(scores[b, g, k]) / norm, hyps[b, g, k].tolist()))

    def best(self) -> list[list[list[int]]]:
        return [[max(group, key=lambda h: h[0])[1] if group else [] for group in row]
                for row in self.hyps]


# --- the encoder-decoder baselines' shared batch layout and interface ------------------------

def pad_multiple(model: torch.nn.Module) -> int:
    """What a batch's width is rounded up to for `model`: 8 where its weights are on a GPU
    (tensor cores work in tiles of 8), 1 elsewhere: on a CPU every padded position is paid work
    (LevT trains 20 % slower on the demo with widths rounded to 8)."""
    weight = next(model.parameters(), None)
    return 8 if weight is not None and weight.device.type == "cuda" else 1


def padded_width(longest: int, limit: int | None = None, multiple: int = 1) -> int:
    """The width a batch is padded to: its longest row rounded up to `multiple`, but never past
    `limit` (the longest row the task allows), and at least 1. Padding is not content, so a
    batch costs its own lengths, not the task's seq_len."""
    width = -(-longest // multiple) * multiple
    if limit is not None:
        width = min(width, max(limit, longest))
    return max(width, 1)


def pad_rows(rows: list[list[int]], pad_id: int, limit: int | None = None,
             multiple: int = 1) -> tuple[Tensor, Tensor]:
    """Right-pad id lists to `padded_width(longest row, limit, multiple)`.

    Returns:
        ids (B, L) long, mask (B, L) bool, True on real tokens.
    """
    width = padded_width(max(len(r) for r in rows), limit, multiple)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
    return ids, mask


def collate_encoder_decoder(pairs: list[Pair], task: TaskInfo, multiple: int = 1) -> Batch:
    """Teacher-forced batch: src = x [SEP], trg_in = [CLS] y, trg_out = y [SEP].

    Each side is truncated to task.seq_len word pieces, then padded to the batch's own length
    (`padded_width`). Returns src, src_mask (B, S) and trg_in, trg_out, trg_mask (B, T); masks are
    True on real tokens.
    """
    side = task.seq_len + 1
    sources = [list(np.asarray(x[:task.seq_len]).tolist()) + [task.sep_id] for x, _ in pairs]
    targets = [list(np.asarray(y[:task.seq_len]).tolist()) for _, y in pairs]
    src, src_mask = pad_rows(sources, task.pad_id, side, multiple)
    trg_in, trg_mask = pad_rows([[task.cls_id] + y for y in targets], task.pad_id, side, multiple)
    trg_out, _ = pad_rows([y + [task.sep_id] for y in targets], task.pad_id, side, multiple)
    return {"src": src, "src_mask": src_mask, "trg_in": trg_in, "trg_out": trg_out,
            "trg_mask": trg_mask}


def sequence_nll(logits: Tensor, targets: Tensor, mask: Tensor,
                 label_smoothing: float = 0.0) -> Tensor:
    """Per-example mean token cross-entropy over the positions where `mask` is True.

    Args:
        logits: (B, T, V); targets: (B, T) ids; mask: (B, T) bool.
    Returns:
        (B,) losses; ids under a False mask never matter.
    """
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none",
                          label_smoothing=label_smoothing).view_as(targets)
    weight = mask.float()
    return (nll * weight).sum(1) / weight.sum(1).clamp(min=1.0)


class EncoderDecoder(Seq2Seq):
    """An encoder-decoder over the task's vocabulary ([CLS] starts a target, [SEP] ends it).

    Subclasses define `forward(src, src_mask, trg_in) -> logits (B, T, V)` and
    `incremental_decoder(src, src_mask, max_len) -> IncrementalDecoder`, a decoder that holds
    at most max_len target positions per row.
    """

    label_smoothing = 0.0

    def __init__(self, cfg: Any, task: TaskInfo):
        super().__init__()
        self.cfg, self.task = cfg, task

    def collate(self, pairs: list[Pair]) -> Batch:
        return collate_encoder_decoder(pairs, self.task, pad_multiple(self))

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        logits = self(batch["src"], batch["src_mask"], batch["trg_in"])  # (B, T, V)
        targets, mask = batch["trg_out"], batch["trg_mask"]
        terms = {"loss": sequence_nll(logits, targets, mask, self.label_smoothing)}
        if self.label_smoothing:
            terms["nll"] = sequence_nll(logits.detach(), targets, mask)
        return terms

    def incremental_decoder(self, src: Tensor, src_mask: Tensor,
                            max_len: int) -> IncrementalDecoder:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        """Candidates with `decode.candidates` (see the module docstring); ids without specials."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            src, src_mask = batch["src"].to(device), batch["src_mask"].to(device)
            max_len = decode.max_len or self.task.seq_len
            decoder = self.incremental_decoder(src, src_mask, max_len)
            ids = run_search(decoder, decode.candidates, max_len, self.task.sep_id, seeds,
                             source_indices)
        finally:
            self.train(was_training)
        drop = {self.task.pad_id, self.task.cls_id}
        return GenerationOutput([[[t for t in c if t not in drop] for c in row] for row in ids])

    def export_config(self) -> dict[str, Any]:
        return {"model": dataclasses.asdict(self.cfg), "task": dataclasses.asdict(self.task)}
