"""NAR-LevT: the Levenshtein Transformer baseline (Gu et al., 2019), behind the `Seq2Seq` interface.

A Transformer encoder-decoder whose (non-causal) decoder reads a canvas `[BOS] y.. [EOS]` and
feeds three heads (paper §3.1):
- deletion: keep/delete for every token of the canvas (BOS/EOS are never deleted);
- placeholder insertion: a count 0..K for every slot between adjacent canvas tokens, predicted
  from the concatenated states of the two tokens;
- token prediction: a word for every placeholder, through the output projection tied to the
  input embedding.

Training imitates the expert of `pipeline.models.levt_oracle` (paper §3.2, as in the authors'
fairseq implementation): insertion and token prediction learn on the target with random
deletions (a uniformly random number of tokens kept, chosen at random), with the expert's
placeholders for the token head; deletion learns on that canvas filled with the model's own
greedy token predictions, against the expert deletions back to the target. The paper's other
roll-in branch (deletion on the initial canvas) is dropped: decoding starts from an empty canvas,
which has nothing to delete. The insertion and token canvases share one decoder pass; the
deletion canvas needs the token predictions, so it gets a second one.

Decoding (paper §3.3) starts from `[BOS EOS]` and repeats delete -> insert placeholders -> fill
tokens until a candidate's output stops changing or `max_iterations` is reached (the paper's
penalty on empty placeholders is not implemented). Deletion is always greedy; candidate sets
get their diversity from sampling the placeholder counts and/or the tokens at a temperature
with each candidate's own generator (`sampling`); `greedy` is the quality decode. Notation: B batch, N candidates (B x seeds), L length, D d_model, V vocabulary,
K max placeholders per slot.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.ar_decoding import pad_multiple, padded_width
from pipeline.models.base import (Batch, Family, GenerationOutput, Pair, Seq2Seq, TaskInfo,
                                  candidate_generator)
from pipeline.models.levt_oracle import ExpertEdits, apply_deletions, apply_insertions, expert_edits
from pipeline.models.transformer import is_base_size, sinusoidal_positions


@dataclass(frozen=True)
class ModelConfig:
    """LevT sizes (paper scale: Transformer-base, 6+6 layers, d 512, 8 heads, FFN 2048)."""

    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    ffn_dim: int = 512
    dropout: float = 0.1
    max_insertions: int = 64          # K: placeholders per slot are predicted in 0..K
    max_len: int | None = None        # word pieces kept per source and target (null: seq_len)
    label_smoothing: float = 0.1      # token head only


@dataclass(frozen=True)
class DecodeConfig:
    """Iterative refinement. `sampling` names what is sampled (at `temperature`) rather than
    taken greedily: the placeholder counts, the tokens, both, or nothing."""

    sampling: Literal["greedy", "insertions", "tokens", "both"] = "both"
    temperature: float = 0.3  # at 1.0 the embedded demo's candidates lose most of their BLEU
    max_iterations: int = 10
    record_fractions: list[float] = field(default_factory=list)

    def quality_decode(self) -> DecodeConfig:
        """The deterministic decode of the table's quality columns: everything greedy."""
        return dataclasses.replace(self, sampling="greedy")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per-example mean of `values` (B, L) over `mask` (B, L); 0 where the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class LevenshteinTransformer(Seq2Seq):
    """Encoder-decoder with deletion, placeholder-insertion and token heads (see module doc)."""

    def __init__(self, cfg: ModelConfig, task: TaskInfo):
        super().__init__()
        self.cfg, self.task = cfg, task
        self.max_len = cfg.max_len or task.seq_len
        self.plh_id = task.vocab_size  # the placeholder: one id past the task's vocabulary
        self.embed = nn.Embedding(task.vocab_size + 1, cfg.d_model, padding_idx=task.pad_id)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)
        # Pre-norm layers: stable without a long warm-up at the small sizes of the demo.
        layer = dict(d_model=cfg.d_model, nhead=cfg.num_heads, dim_feedforward=cfg.ffn_dim,
                     dropout=cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), cfg.num_encoder_layers,
                                             norm=nn.LayerNorm(cfg.d_model), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), cfg.num_decoder_layers,
                                             norm=nn.LayerNorm(cfg.d_model))
        self.deletion_head = nn.Linear(cfg.d_model, 2)
        self.insertion_head = nn.Linear(2 * cfg.d_model, cfg.max_insertions + 1)
        special = torch.zeros(task.vocab_size, dtype=torch.bool)
        special[[task.pad_id, task.cls_id, task.sep_id]] = True
        self.register_buffer("special", special, persistent=False)

    # --- tensors -------------------------------------------------------------------------------

    def collate(self, pairs: list[Pair]) -> Batch:
        """Pad sources and targets (truncated to `max_len`) to (B, L) with their lengths (B,)."""
        srcs = [[int(t) for t in src[: self.max_len]] for src, _ in pairs]
        trgs = [[int(t) for t in trg[: self.max_len]] for _, trg in pairs]
        src, _ = self._canvas(srcs)
        trg, _ = self._canvas(trgs)
        return {"src": src, "src_len": torch.tensor([len(s) for s in srcs]),
                "trg": trg, "trg_len": torch.tensor([len(t) for t in trgs])}

    def _canvas(self, seqs: list[list[int]], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """`[BOS] s [EOS]` per sequence, padded to the batch's own length (`padded_width`): ids
        (N, L) and padding mask (N, L), True at pads. The mask comes from the lengths, so a
        predicted [PAD] token inside a canvas stays content."""
        length = padded_width(max(len(s) for s in seqs) + 2, self.max_len + 2, pad_multiple(self))
        ids = torch.full((len(seqs), length), self.task.pad_id, dtype=torch.long)
        for n, seq in enumerate(seqs):
            ids[n, : len(seq) + 2] = torch.tensor([self.task.cls_id, *seq, self.task.sep_id])
        lengths = torch.tensor([len(s) + 2 for s in seqs])
        pad = torch.arange(length)[None, :] >= lengths[:, None]
        return ids.to(device), pad.to(device)

    @staticmethod
    def _unpad(ids: Tensor, lengths: Tensor) -> list[list[int]]:
        """The inner tokens (between BOS and EOS) of each padded canvas."""
        return [row[1 : 1 + n].tolist() for row, n in zip(ids, lengths.tolist())]

    def _embed(self, ids: Tensor) -> Tensor:
        pos = sinusoidal_positions(ids.shape[1], self.cfg.d_model).to(ids.device)
        return self.embed(ids) * math.sqrt(self.cfg.d_model) + pos  # (N, L, D)

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder states (B, Ls, D) of `[BOS] x [EOS]` and their padding mask (B, Ls)."""
        pad = torch.arange(src.shape[1], device=src.device)[None, :] >= (src_len[:, None] + 2)
        return self.encoder(self._embed(src), src_key_padding_mask=pad), pad

    def decode_states(self, canvas: Tensor, pad: Tensor, memory: Tensor, memory_pad: Tensor) -> Tensor:
        """Decoder states (N, L, D) of a canvas; every position sees the whole canvas."""
        return self.decoder(self._embed(canvas), memory, tgt_key_padding_mask=pad,
                            memory_key_padding_mask=memory_pad)

    def insertion_logits(self, states: Tensor) -> Tensor:
        """Placeholder-count logits (N, L-1, K+1) of the slots between adjacent positions."""
        return self.insertion_head(torch.cat([states[:, :-1], states[:, 1:]], dim=-1))

    def token_logits(self, states: Tensor) -> Tensor:
        """Word logits (N, L, V), through the embedding (placeholder row excluded)."""
        return F.linear(states, self.embed.weight[: self.task.vocab_size])

    # --- training (imitation of the expert) ----------------------------------------------------

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Insertion + token + deletion imitation losses, each a per-example mean, (B,)."""
        memory, memory_pad = self.encode(batch["src"], batch["src_len"])
        targets = self._unpad(batch["trg"], batch["trg_len"])
        rolled_in = [self._random_deletion(t) for t in targets]
        edits = [expert_edits(seq, trg) for seq, trg in zip(rolled_in, targets)]
        placed = [apply_insertions(seq, e.insert, self.plh_id) for seq, e in zip(rolled_in, edits)]
        # One decoder pass for both canvases: they are known before any prediction is made.
        ids, pad = self._canvas(rolled_in + placed, memory.device)
        states = self.decode_states(ids, pad, memory.repeat(2, 1, 1), memory_pad.repeat(2, 1))
        num = len(targets)
        ins_loss = self._insertion_loss(states[:num], pad[:num], edits)
        tok_loss, filled = self._token_loss(states[num:], ids[num:], batch["trg"])
        del_loss = self._deletion_loss(self._unpad(filled, batch["trg_len"]), targets, memory, memory_pad)
        return {"loss": ins_loss + tok_loss + del_loss, "insertion": ins_loss, "token": tok_loss,
                "deletion": del_loss}

    @staticmethod
    def _random_deletion(target: list[int]) -> list[int]:
        """Keep a uniformly random number of the target's tokens, chosen at random, in order."""
        num_keep = int(torch.randint(0, len(target) + 1, ()))
        keep = sorted(torch.randperm(len(target))[:num_keep].tolist())
        return [target[i] for i in keep]

    def _insertion_loss(self, states: Tensor, pad: Tensor, edits: list[ExpertEdits]) -> Tensor:
        """CE of the expert's placeholder counts (capped at K) on the rolled-in canvases.

        Args:
            states: (N, L, D) decoder states of the rolled-in canvases; pad: (N, L) their padding.
        """
        logits = self.insertion_logits(states)                        # (N, L-1, K+1)
        counts = torch.zeros(logits.shape[:2], dtype=torch.long)
        for n, edit in enumerate(edits):
            counts[n, : len(edit.insert)] = torch.tensor(edit.insert).clamp(max=self.cfg.max_insertions)
        slot_mask = ~pad[:, 1:]  # slot j is valid while position j+1 is inside the canvas
        ce = F.cross_entropy(logits.transpose(1, 2), counts.to(logits.device), reduction="none")
        return _masked_mean(ce, slot_mask)

    def _token_loss(self, states: Tensor, canvas: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """CE of the target's tokens at the placeholders of the expert canvas (N, L); also returns
        that canvas filled with the model's greedy predictions, the deletion head's roll-in."""
        logits = self.token_logits(states)                            # (N, L, V)
        is_plh = canvas == self.plh_id
        target = target[:, : canvas.shape[1]]  # the expert canvas is the target, placeholders aside
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none",
                             label_smoothing=self.cfg.label_smoothing)
        filled = torch.where(is_plh, logits.detach().argmax(-1), canvas)
        return _masked_mean(ce, is_plh), filled

    def _deletion_loss(self, rolled_in: list[list[int]], targets: list[list[int]], memory: Tensor,
                       memory_pad: Tensor) -> Tensor:
        """CE of the expert's deletions of the model-filled canvases, over their inner tokens."""
        ids, pad = self._canvas(rolled_in, memory.device)
        logits = self.deletion_head(self.decode_states(ids, pad, memory, memory_pad))
        delete = torch.zeros(ids.shape, dtype=torch.long)
        for n, (seq, trg) in enumerate(zip(rolled_in, targets)):
            delete[n, 1 : 1 + len(seq)] = torch.tensor(expert_edits(seq, trg).delete, dtype=torch.long)
        inner = ~pad & (torch.arange(ids.shape[1], device=ids.device) > 0)
        inner[torch.arange(len(rolled_in)), torch.tensor([len(s) + 1 for s in rolled_in])] = False
        ce = F.cross_entropy(logits.transpose(1, 2), delete.to(ids.device), reduction="none")
        return _masked_mean(ce, inner)

    # --- generation (iterative refinement) -----------------------------------------------------

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        """Refine `len(seeds)` candidates per source from an empty canvas (see module doc)."""
        memory, memory_pad = self.encode(batch["src"], batch["src_len"])
        memory = memory.repeat_interleave(len(seeds), 0)  # candidate n = i * len(seeds) + k
        memory_pad = memory_pad.repeat_interleave(len(seeds), 0)
        gens = [candidate_generator(s, i) for i in source_indices for s in seeds]
        canvases: list[list[int]] = [[] for _ in gens]
        done = [False] * len(gens)
        record_at = {f: round(f * decode.max_iterations) for f in decode.record_fractions}
        trace = {f: [list(c) for c in canvases] for f, it in record_at.items() if it <= 0}
        for it in range(1, decode.max_iterations + 1):
            active = [n for n in range(len(gens)) if not done[n]]
            new = self._refine([canvases[n] for n in active], memory[active], memory_pad[active],
                               [gens[n] for n in active], decode)
            for n, seq in zip(active, new):
                done[n], canvases[n] = seq == canvases[n], seq
            trace.update({f: [list(c) for c in canvases] for f, at in record_at.items() if at == it})
            if all(done):
                break
        trace.update({f: [list(c) for c in canvases] for f in record_at if f not in trace})
        group = len(seeds)
        return GenerationOutput(
            ids=[canvases[i * group:(i + 1) * group] for i in range(len(source_indices))],
            trace={f: [out[i * group:(i + 1) * group] for i in range(len(source_indices))]
                   for f, out in sorted(trace.items())})

    def _refine(self, canvases: list[list[int]], memory: Tensor, memory_pad: Tensor,
                gens: list[torch.Generator], decode: DecodeConfig) -> list[list[int]]:
        """One iteration: delete (greedy) -> insert placeholders -> fill tokens."""
        sample_ins = decode.sampling in ("insertions", "both")
        sample_tok = decode.sampling in ("tokens", "both")
        if any(canvases):
            ids, pad = self._canvas(canvases, memory.device)
            delete = self.deletion_head(self.decode_states(ids, pad, memory, memory_pad)).argmax(-1)
            canvases = [apply_deletions(c, delete[n, 1 : 1 + len(c)].bool().tolist())
                        for n, c in enumerate(canvases)]
        ids, pad = self._canvas(canvases, memory.device)
        logits = self.insertion_logits(self.decode_states(ids, pad, memory, memory_pad))
        canvases = [apply_insertions(c, self._clip_counts(
            _choose(logits[n, : len(c) + 1], gens[n], sample_ins, decode.temperature), len(c)),
            self.plh_id) for n, c in enumerate(canvases)]
        if not any(self.plh_id in c for c in canvases):
            return canvases
        ids, pad = self._canvas(canvases, memory.device)
        logits = self.token_logits(self.decode_states(ids, pad, memory, memory_pad))
        logits = logits.masked_fill(self.special, float("-inf"))  # never emit specials
        out = []
        for n, canvas in enumerate(canvases):
            slots = [p for p, tok in enumerate(canvas) if tok == self.plh_id]
            words = iter(_choose(logits[n, [p + 1 for p in slots]], gens[n], sample_tok, decode.temperature))
            out.append([next(words) if tok == self.plh_id else tok for tok in canvas])
        return out

    def _clip_counts(self, counts: list[int], num_tokens: int) -> list[int]:
        """Cut placeholder counts, left to right, so the canvas holds at most `max_len` tokens."""
        budget, clipped = self.max_len - num_tokens, []
        for count in counts:
            clipped.append(min(count, max(budget, 0)))
            budget -= clipped[-1]
        return clipped

    def export_config(self) -> dict[str, Any]:
        return {"family": "levt", "pretrained": False, "model": dataclasses.asdict(self.cfg),
                "task": dataclasses.asdict(self.task)}


def _choose(logits: Tensor, gen: torch.Generator, sample: bool, temperature: float) -> list[int]:
    """Argmax of each row of `logits` (M, C), or a draw from softmax(logits / temperature) with
    the candidate's generator (its stream depends on that candidate alone)."""
    if logits.shape[0] == 0:
        return []
    if not sample or temperature <= 0:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(1).tolist()


def build(model_cfg: ModelConfig, task: TaskInfo) -> LevenshteinTransformer:
    """A freshly initialised LevT for a task."""
    return LevenshteinTransformer(model_cfg, task)


def from_export(config: dict[str, Any]) -> LevenshteinTransformer:
    """Rebuild the model from `export_config()` (weights are loaded separately)."""
    return build(ModelConfig(**config["model"]), TaskInfo(**config["task"]))


FAMILY = Family("levt", ModelConfig, DecodeConfig, build, from_export,
                quality_decode=DecodeConfig.quality_decode, paper_system="NAR-LevT",
                matches_paper=is_base_size,
                describe=lambda decode: f"sampling={decode.sampling}, max_iterations={decode.max_iterations}")
