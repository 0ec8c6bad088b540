"""GRU encoder-decoder with additive attention: the paper's "GRU-attention" baseline.

Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to Align and Translate":
a bidirectional GRU encodes the source into annotations h_j; at target step t the previous decoder
state s_{t-1} scores every annotation, e_tj = v^T tanh(W s_{t-1} + U h_j), the context
c_t = sum_j softmax(e_t)_j h_j feeds the decoder GRU together with the previous word, and the
output layer reads (s_t, c_t, previous word). Trained with teacher forcing; padding is excluded
from the encoder (packed sequences), from attention and from the loss. Decoding: see
`pipeline.models.ar_decoding`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pipeline.models.ar_decoding import DecodeConfig, EncoderDecoder, describe
from pipeline.models.base import Family, TaskInfo

__all__ = ["FAMILY", "DecodeConfig", "GRUAttention", "ModelConfig", "build", "from_export"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the GRU-attention model (hidden_dim per encoder direction = decoder size)."""

    embed_dim: int = 128
    hidden_dim: int = 128
    num_layers: int = 1
    attention_dim: int = 128
    dropout: float = 0.1


class GRUAttention(EncoderDecoder):
    """Bidirectional GRU encoder; GRU decoder with additive attention; output tied to the input
    embedding."""

    def __init__(self, cfg: ModelConfig, task: TaskInfo):
        super().__init__(cfg, task)
        hidden = cfg.hidden_dim
        between = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.embed = nn.Embedding(task.vocab_size, cfg.embed_dim, padding_idx=task.pad_id)
        self.encoder = nn.GRU(cfg.embed_dim, hidden, cfg.num_layers, batch_first=True,
                              bidirectional=True, dropout=between)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.key_proj = nn.Linear(2 * hidden, cfg.attention_dim, bias=False)   # U
        self.query_proj = nn.Linear(hidden, cfg.attention_dim)                 # W
        self.score = nn.Linear(cfg.attention_dim, 1, bias=False)               # v
        self.decoder = nn.GRU(cfg.embed_dim + 2 * hidden, hidden, cfg.num_layers,
                              batch_first=True, dropout=between)
        self.pre_output = nn.Linear(hidden + 2 * hidden + cfg.embed_dim, cfg.embed_dim)
        self.output_bias = nn.Parameter(torch.zeros(task.vocab_size))
        self.dropout = nn.Dropout(cfg.dropout)

    def encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Annotations, attention keys and the decoder's initial state.

        Args:
            src: (B, S) ids; src_mask: (B, S) bool, True on real tokens (at least one per row).
        Returns:
            memory (B, S, 2H), keys (B, S, A), hidden (num_layers, B, H).
        """
        lengths = src_mask.sum(1).cpu()
        packed = pack_padded_sequence(self.dropout(self.embed(src)), lengths, batch_first=True,
                                      enforce_sorted=False)
        out, last = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        # last: (2 * layers, B, H), directions interleaved per layer
        last = last.view(self.cfg.num_layers, 2, *last.shape[1:])
        hidden = torch.tanh(self.bridge(torch.cat([last[:, 0], last[:, 1]], -1)))
        return memory, self.key_proj(memory), hidden.contiguous()

    def decode_step(self, word: Tensor, hidden: Tensor, memory: Tensor, keys: Tensor,
                    src_mask: Tensor) -> tuple[Tensor, Tensor]:
        """One decoder step (Bahdanau's attention from s_{t-1}).

        Args:
            word: (B, E) embedding of the previous target word; hidden: (layers, B, H) = s_{t-1}.
        Returns:
            the pre-output features (B, E) and s_t (layers, B, H).
        """
        energy = self.score(torch.tanh(keys + self.query_proj(hidden[-1])[:, None])).squeeze(-1)
        weights = energy.masked_fill(~src_mask, float("-inf")).softmax(-1)    # (B, S)
        context = torch.bmm(weights[:, None], memory).squeeze(1)              # (B, 2H)
        out, hidden = self.decoder(torch.cat([word, context], -1)[:, None], hidden)
        features = torch.tanh(self.pre_output(torch.cat([out[:, 0], context, word], -1)))
        return features, hidden

    def logits(self, features: Tensor) -> Tensor:
        """(..., E) -> (..., V), through the transposed input embedding."""
        return F.linear(self.dropout(features), self.embed.weight, self.output_bias)

    def forward(self, src: Tensor, src_mask: Tensor, trg_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) for targets (B, T)."""
        memory, keys, hidden = self.encode(src, src_mask)
        words = self.dropout(self.embed(trg_in))                              # (B, T, E)
        features = []
        for t in range(trg_in.shape[1]):
            feat, hidden = self.decode_step(words[:, t], hidden, memory, keys, src_mask)
            features.append(feat)
        return self.logits(torch.stack(features, 1))

    def incremental_decoder(self, src: Tensor, src_mask: Tensor, max_len: int) -> _GRUDecoder:
        # the recurrent state s_t is the whole cache: its size does not grow with max_len
        return _GRUDecoder(self, src, src_mask)


class _GRUDecoder:
    """Decoding state of `GRUAttention`: the encoder outputs and s_t per row."""

    def __init__(self, model: GRUAttention, src: Tensor, src_mask: Tensor):
        self.model, self.src_mask = model, src_mask
        self.memory, self.keys, self.hidden = model.encode(src, src_mask)

    def start(self) -> Tensor:
        bos = torch.full_like(self.src_mask[:, 0], self.model.task.cls_id, dtype=torch.long)
        return self.step(bos)

    def step(self, tokens: Tensor) -> Tensor:
        features, self.hidden = self.model.decode_step(self.model.embed(tokens), self.hidden,
                                                       self.memory, self.keys, self.src_mask)
        return self.model.logits(features)

    def select(self, index: Tensor) -> None:
        self.memory, self.keys = self.memory[index], self.keys[index]
        self.src_mask, self.hidden = self.src_mask[index], self.hidden[:, index]


def build(model_cfg: ModelConfig, task: TaskInfo) -> GRUAttention:
    """A freshly initialised GRU-attention model for the task."""
    return GRUAttention(model_cfg, task)


def from_export(config: dict[str, Any]) -> GRUAttention:
    """Rebuild from `export_config()` (weights are loaded by the caller)."""
    return GRUAttention(ModelConfig(**config["model"]), TaskInfo(**config["task"]))


def is_paper_size(cfg: ModelConfig) -> bool:
    """The size params/paper.yaml gives the paper's GRU-attention (the paper does not state it):
    2 layers of 512."""
    return (cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.attention_dim) == (512, 512, 2, 512)


FAMILY = Family("gru_attention", ModelConfig, DecodeConfig, build, from_export,
                quality_decode=DecodeConfig.quality_decode, describe=describe,
                paper_system="GRU-attention", matches_paper=is_paper_size)
