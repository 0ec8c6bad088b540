"""GPT-2 fine-tuned as a conditional language model: the paper's "GPT2-base/large FT" baselines.

An example is one sequence `source SEP target EOS`; the loss is the target tokens' cross-entropy
only (labels -100 on the source, the separator's own position and padding). Generation continues
`source SEP` until EOS.

Two ways to build it (`ModelConfig.pretrained`):
- a hub id (`gpt2`, `gpt2-large`) or a local directory in the hub's format: its weights and its
  own tokenizer (GPT-2 BPE). `collate` turns the task's word pieces back into text with the task
  tokenizer (`pipeline.text.decode_ids`) and re-encodes it with GPT-2's (cached per sequence);
  `output_tokenizer_dir()` names GPT-2's tokenizer so the sample stage decodes the output with it.
  GPT-2 has no separator or padding token: `<|endoftext|>` serves as separator, EOS and padding
  (padding is masked out of attention and loss).
- null: a randomly initialised GPT-2 (n_layer, n_embd, n_head, n_positions) over the task's
  vocabulary, [SEP] as separator and EOS, [PAD] as padding. `export_config()["pretrained"]` is
  then False, which the tables show as "from scratch".

Decoding (see `pipeline.models.ar_decoding`): greedy and beam through transformers' `generate`;
sampling and diverse beam through the shared decoding loop over GPT-2's key/value cache, so that
candidate (seed s, source i) draws only from `candidate_generator(s, i)` (transformers' sampling
draws all rows from one global stream) and diverse beam needs no hub code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import AutoTokenizer, GenerationConfig, GPT2Config, GPT2LMHeadModel

from pipeline.models.ar_decoding import (DETERMINISTIC, DecodeConfig, Search, describe, pad_multiple,
                                         pad_rows, run_search, sequence_nll, strip_after_eos)
from pipeline.models.base import Batch, Family, GenerationOutput, Pair, Seq2Seq, TaskInfo

__all__ = ["FAMILY", "DecodeConfig", "GPT2Seq2Seq", "ModelConfig", "build", "from_export"]

IGNORE = -100  # the label of positions outside the loss (transformers' convention)


@dataclass(frozen=True)
class ModelConfig:
    """`pretrained`: hub id or local hub-format directory (its tokenizer is used; `dropout` and the
    sizes below are then ignored); null: a GPT-2 of these sizes over the task vocabulary.
    `n_positions` null: 2 * seq_len + 2 (source, separator, target, EOS)."""

    pretrained: str | None = None
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int | None = None
    dropout: float = 0.1


class GPT2Seq2Seq(Seq2Seq):
    """A GPT2LMHeadModel trained on `source SEP target EOS` with the loss on the target."""

    def __init__(self, cfg: ModelConfig, task: TaskInfo, lm: GPT2LMHeadModel):
        super().__init__()
        self.cfg, self.task, self.lm = cfg, task, lm
        if cfg.pretrained:
            gpt2_tokenizer = AutoTokenizer.from_pretrained(cfg.pretrained)
            self.eos_id = self.sep_id = self.pad_id = gpt2_tokenizer.eos_token_id
            self._codec: _Retokenizer | None = _Retokenizer(task.tokenizer_dir, gpt2_tokenizer)
        else:
            self.eos_id = self.sep_id = task.sep_id
            self.pad_id = task.pad_id
            self._codec = None

    def output_tokenizer_dir(self) -> str | None:
        """A pretrained GPT-2 writes BPE ids: its own tokenizer decodes them."""
        return self.cfg.pretrained or None

    def is_pretrained(self) -> bool:
        return bool(self.cfg.pretrained)

    def _sides(self, pairs: list[Pair]) -> list[tuple[list[int], list[int]]]:
        """(source, target) ids in this model's vocabulary, each truncated to seq_len."""
        size = self.task.seq_len
        if self._codec is not None:
            return [(self._codec(x)[:size], self._codec(y)[:size]) for x, y in pairs]
        return [(np.asarray(x[:size]).tolist(), np.asarray(y[:size]).tolist()) for x, y in pairs]

    def collate(self, pairs: list[Pair]) -> Batch:
        """Training rows `x SEP y EOS` (right-padded) and generation prompts `x SEP` (left-padded),
        each padded to the batch's own length (`pad_rows`).

        Returns:
            input_ids, attention_mask, labels (B, L): labels are the ids on the target and EOS
            positions and -100 elsewhere; prompt_ids, prompt_mask (B, P).
        """
        sides, multiple = self._sides(pairs), pad_multiple(self)
        rows = [x + [self.sep_id] + y + [self.eos_id] for x, y in sides]
        input_ids, attention_mask = pad_rows(rows, self.pad_id, 2 * self.task.seq_len + 2, multiple)
        labels = torch.full_like(input_ids, IGNORE)
        for i, (x, y) in enumerate(sides):
            start = len(x) + 1
            labels[i, start:start + len(y) + 1] = input_ids[i, start:start + len(y) + 1]
        # left padding (pad the reversed prompts, flip back): every prompt ends at the last column
        reversed_prompts = [(x + [self.sep_id])[::-1] for x, _ in sides]
        prompt_ids, prompt_mask = pad_rows(reversed_prompts, self.pad_id, self.task.seq_len + 1,
                                           multiple)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "prompt_ids": prompt_ids.flip(1), "prompt_mask": prompt_mask.flip(1)}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Per-example mean cross-entropy of the target tokens and EOS: {"loss": (B,)}."""
        out = self.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits                                           # (B, L, V)
        labels = batch["labels"][:, 1:]                               # position t predicts t + 1
        return {"loss": sequence_nll(logits[:, :-1], labels.clamp(min=0), labels != IGNORE)}

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        """Candidates with `decode.candidates` (see the module docstring); ids without EOS."""
        device = next(self.parameters()).device
        prompt_ids, prompt_mask = batch["prompt_ids"].to(device), batch["prompt_mask"].to(device)
        search, max_len = decode.candidates, decode.max_len or self.task.seq_len
        was_training = self.training
        self.eval()
        try:
            if search.method in DETERMINISTIC:
                best = self._hf_search(prompt_ids, prompt_mask, search, max_len)
                ids = [[row for _ in seeds] for row in best]
            else:
                decoder = _GPT2Decoder(self.lm, prompt_ids, prompt_mask)
                ids = run_search(decoder, search, max_len, self.eos_id, seeds, source_indices)
        finally:
            self.train(was_training)
        drop = {self.pad_id, self.task.cls_id} if self._codec is None else set()
        return GenerationOutput([[[t for t in c if t not in drop] for c in row] for row in ids])

    def _hf_search(self, prompt_ids: Tensor, prompt_mask: Tensor, search: Search,
                   max_len: int) -> list[list[int]]:
        """Greedy or beam search through transformers' `generate`: one token list per prompt."""
        beam = {"num_beams": search.beam_size, "length_penalty": search.length_penalty,
                "early_stopping": False} if search.method == "beam" else {"num_beams": 1}
        config = GenerationConfig(max_new_tokens=max_len, do_sample=False, eos_token_id=self.eos_id,
                                  pad_token_id=self.pad_id, **beam)
        out = self.lm.generate(input_ids=prompt_ids, attention_mask=prompt_mask.long(),
                               generation_config=config)
        return [strip_after_eos(row, self.eos_id) for row in out[:, prompt_ids.shape[1]:].tolist()]

    def export_config(self) -> dict[str, Any]:
        """Model and task settings plus GPT-2's own config (rebuilds the network offline)."""
        return {"model": dataclasses.asdict(self.cfg), "task": dataclasses.asdict(self.task),
                "pretrained": self.cfg.pretrained or False, "gpt2_config": self.lm.config.to_dict()}


class _Retokenizer:
    """Task word pieces -> text (the project's normalisation) -> GPT-2 BPE ids, cached."""

    def __init__(self, task_tokenizer_dir: str, gpt2_tokenizer: Any):
        from pipeline.data.dataset import load_tokenizer

        self.task_tokenizer = load_tokenizer(task_tokenizer_dir)
        self.gpt2_tokenizer = gpt2_tokenizer
        self.cache: dict[bytes, list[int]] = {}

    def __call__(self, ids: np.ndarray) -> list[int]:
        from pipeline.text import decode_ids

        key = np.asarray(ids, dtype=np.int64).tobytes()
        if key not in self.cache:
            text = decode_ids(self.task_tokenizer, np.asarray(ids).tolist())
            self.cache[key] = self.gpt2_tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.cache[key]


class _GPT2Decoder:
    """Decoding state over left-padded prompts: attention mask, next positions, key/value cache."""

    def __init__(self, lm: GPT2LMHeadModel, prompt_ids: Tensor, prompt_mask: Tensor):
        self.lm, self.ids, self.mask = lm, prompt_ids, prompt_mask.long()
        self.cache: Any = None
        self.next_position: Tensor | None = None

    def start(self) -> Tensor:
        # left padding: positions count real tokens only, as in training
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        out = self.lm(input_ids=self.ids, attention_mask=self.mask, position_ids=positions,
                      use_cache=True, logits_to_keep=1)  # project the prompt's last position only
        self.cache, self.next_position = out.cache, positions[:, -1] + 1
        return out.logits[:, -1]

    def step(self, tokens: Tensor) -> Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], 1)
        out = self.lm(input_ids=tokens[:, None], attention_mask=self.mask,
                      position_ids=self.next_position[:, None], cache=self.cache, use_cache=True)
        self.cache, self.next_position = out.cache, self.next_position + 1
        return out.logits[:, -1]

    def select(self, index: Tensor) -> None:
        self.ids, self.mask = self.ids[index], self.mask[index]
        if self.cache is not None:
            self.cache.reorder_cache(index)
            self.next_position = self.next_position[index]


def scratch_config(cfg: ModelConfig, task: TaskInfo) -> GPT2Config:
    """The GPT2Config of a from-scratch model over the task's vocabulary."""
    return GPT2Config(
        vocab_size=task.vocab_size, n_positions=cfg.n_positions or 2 * task.seq_len + 2,
        n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, bos_token_id=task.cls_id,
        eos_token_id=task.sep_id, pad_token_id=task.pad_id)


def build(model_cfg: ModelConfig, task: TaskInfo) -> GPT2Seq2Seq:
    """GPT-2 from `pretrained` (hub id or local directory) or from scratch."""
    if model_cfg.pretrained:
        lm = GPT2LMHeadModel.from_pretrained(model_cfg.pretrained)
    else:
        lm = GPT2LMHeadModel(scratch_config(model_cfg, task))
    return GPT2Seq2Seq(model_cfg, task, lm)


def from_export(config: dict[str, Any]) -> GPT2Seq2Seq:
    """Rebuild from `export_config()` without loading pretrained weights (the caller loads the
    saved ones); a pretrained model still needs its tokenizer at `pretrained`."""
    lm = GPT2LMHeadModel(GPT2Config.from_dict(config["gpt2_config"]))
    return GPT2Seq2Seq(ModelConfig(**config["model"]), TaskInfo(**config["task"]), lm)


FAMILY = Family("gpt2", ModelConfig, DecodeConfig, build, from_export,
                quality_decode=DecodeConfig.quality_decode, describe=describe,
                paper_system="GPT2-base FT", matches_paper=lambda cfg: bool(cfg.pretrained))
