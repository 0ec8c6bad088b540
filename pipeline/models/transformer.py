"""Encoder-decoder Transformer: the paper's "Transformer-base" baseline.

Vaswani et al. (2017), "Attention Is All You Need", built on `torch.nn.Transformer`: one embedding
shared by source, target and output projection (scaled by sqrt(d_model)), sinusoidal or learned
positions, source padding masked in the encoder and in cross-attention, a causal mask in the
decoder, label-smoothed cross-entropy over real target tokens. Paper scale ("base"): 6+6 layers,
d_model 512, 8 heads, FFN 2048, dropout 0.1, label smoothing 0.1. Decoding: see
`pipeline.models.ar_decoding`; the decoder re-reads its whole prefix at each step (no key/value
cache: nn.TransformerDecoder has none), which costs O(L^2) per sequence and is fine at L <= 128.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.ar_decoding import DecodeConfig, EncoderDecoder, describe
from pipeline.models.base import Family, TaskInfo

__all__ = ["FAMILY", "DecodeConfig", "ModelConfig", "Transformer", "build", "from_export"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the Transformer; `norm_first` switches to pre-LayerNorm blocks (the paper's
    base model is post-norm)."""

    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    ffn_dim: int = 512
    dropout: float = 0.1
    label_smoothing: float = 0.1
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    norm_first: bool = False


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """The fixed position encodings of Vaswani et al. §3.5: (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class Transformer(EncoderDecoder):
    """`torch.nn.Transformer` with tied embeddings over the task's vocabulary."""

    def __init__(self, cfg: ModelConfig, task: TaskInfo):
        super().__init__(cfg, task)
        self.label_smoothing = cfg.label_smoothing
        # a side holds at most seq_len word pieces plus [SEP] (source) or [CLS] (target)
        self.max_positions = task.seq_len + 1
        self.embed = nn.Embedding(task.vocab_size, cfg.d_model, padding_idx=task.pad_id)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)
        with torch.no_grad():
            self.embed.weight[task.pad_id].zero_()
        if cfg.positions == "learned":
            self.positions = nn.Parameter(torch.randn(self.max_positions, cfg.d_model) * 0.02)
        else:
            self.register_buffer("positions", sinusoidal_positions(self.max_positions, cfg.d_model),
                                 persistent=False)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           batch_first=True, norm_first=cfg.norm_first)
        # nested tensors (an eval-time fast path) would make padded and unpadded rows take
        # different kernels; one code path keeps a candidate independent of its batch
        encoder = nn.TransformerEncoder(layer, cfg.num_encoder_layers, nn.LayerNorm(cfg.d_model),
                                        enable_nested_tensor=False)
        self.transformer = nn.Transformer(
            cfg.d_model, cfg.num_heads, cfg.num_encoder_layers, cfg.num_decoder_layers,
            cfg.ffn_dim, cfg.dropout, custom_encoder=encoder, batch_first=True,
            norm_first=cfg.norm_first)
        self.dropout = nn.Dropout(cfg.dropout)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """(B, L) ids -> (B, L, D) scaled embeddings plus positions."""
        if ids.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds the model's "
                             f"{self.max_positions} positions (task seq_len + 1)")
        scaled = self.embed(ids) * math.sqrt(self.cfg.d_model)
        return self.dropout(scaled + self.positions[: ids.shape[1]])

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        """Source (B, S) with mask (B, S, True on tokens) -> memory (B, S, D)."""
        return self.transformer.encoder(self.embed_tokens(src), src_key_padding_mask=~src_mask)

    def decode(self, trg_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Causal decoder over trg_in (B, T) -> logits (B, T, V), tied to the embedding."""
        causal = nn.Transformer.generate_square_subsequent_mask(trg_in.shape[1],
                                                                device=trg_in.device)
        hidden = self.transformer.decoder(self.embed_tokens(trg_in), memory, tgt_mask=causal,
                                          tgt_is_causal=True, memory_key_padding_mask=~src_mask)
        return F.linear(hidden, self.embed.weight)

    def forward(self, src: Tensor, src_mask: Tensor, trg_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V)."""
        return self.decode(trg_in, self.encode(src, src_mask), src_mask)

    def incremental_decoder(self, src: Tensor, src_mask: Tensor) -> _TransformerDecoder:
        return _TransformerDecoder(self, src, src_mask)


class _TransformerDecoder:
    """Decoding state of `Transformer`: memory, source mask and the prefix of every row."""

    def __init__(self, model: Transformer, src: Tensor, src_mask: Tensor):
        self.model, self.src_mask = model, src_mask
        self.memory = model.encode(src, src_mask)
        self.prefix = torch.full((src.shape[0], 1), model.task.cls_id, dtype=torch.long,
                                 device=src.device)

    def start(self) -> Tensor:
        return self._next_logits()

    def step(self, tokens: Tensor) -> Tensor:
        self.prefix = torch.cat([self.prefix, tokens[:, None]], 1)
        return self._next_logits()

    def _next_logits(self) -> Tensor:
        return self.model.decode(self.prefix, self.memory, self.src_mask)[:, -1]

    def select(self, index: Tensor) -> None:
        self.memory, self.src_mask = self.memory[index], self.src_mask[index]
        self.prefix = self.prefix[index]


def build(model_cfg: ModelConfig, task: TaskInfo) -> Transformer:
    """A freshly initialised Transformer for the task."""
    return Transformer(model_cfg, task)


def from_export(config: dict[str, Any]) -> Transformer:
    """Rebuild from `export_config()` (weights are loaded by the caller)."""
    return Transformer(ModelConfig(**config["model"]), TaskInfo(**config["task"]))


def is_base_size(cfg: Any) -> bool:
    """Transformer-base (Vaswani et al.): 6+6 layers, d 512, 8 heads, FFN 2048 (also LevT's)."""
    return ((cfg.d_model, cfg.num_heads, cfg.num_encoder_layers, cfg.num_decoder_layers,
             cfg.ffn_dim) == (512, 8, 6, 6, 2048))


FAMILY = Family("transformer", ModelConfig, DecodeConfig, build, from_export,
                quality_decode=DecodeConfig.quality_decode, describe=describe,
                paper_system="Transformer-base", matches_paper=is_base_size)
