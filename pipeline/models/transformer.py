"""Encoder-decoder Transformer: the paper's "Transformer-base" baseline.

Vaswani et al. (2017), "Attention Is All You Need", built on `torch.nn.Transformer`: one embedding
shared by source, target and output projection (scaled by sqrt(d_model)), sinusoidal or learned
positions, source padding masked in the encoder and in cross-attention, a causal mask in the
decoder, label-smoothed cross-entropy over real target tokens. Paper scale ("base"): 6+6 layers,
d_model 512, 8 heads, FFN 2048, dropout 0.1, label smoothing 0.1. Decoding (searches: see
`pipeline.models.ar_decoding`) runs the same layers' weights one position at a time over a
key/value cache, as nn.TransformerDecoder has none: the source's cross-attention keys and values
are projected once, each step appends one position's self-attention keys and values and projects
only the new position onto the vocabulary. Its state is bounded and known in advance:
2 * num_decoder_layers * (S + max_len) * d_model floats per row (S the padded source length),
plus one (rows, V) logits matrix.
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

    def embed_tokens(self, ids: Tensor, start: int = 0) -> Tensor:
        """(B, L) ids at positions start.. start+L-1 -> (B, L, D) scaled embeddings plus positions."""
        end = start + ids.shape[1]
        if end > self.max_positions:
            raise ValueError(f"sequence of {end} tokens exceeds the model's "
                             f"{self.max_positions} positions (task seq_len + 1)")
        scaled = self.embed(ids) * math.sqrt(self.cfg.d_model)
        return self.dropout(scaled + self.positions[start:end])

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

    def incremental_decoder(self, src: Tensor, src_mask: Tensor,
                            max_len: int) -> _TransformerDecoder:
        return _TransformerDecoder(self, src, src_mask, max_len)


class _TransformerDecoder:
    """Decoding state of `Transformer` over N rows (eval mode: no dropout).

    cross: (layers, 2, N, H, S, dh) keys and values of the encoder memory, projected once;
    cache: (layers, 2, N, H, max_len, dh) keys and values of the prefix, `length` positions filled.
    """

    def __init__(self, model: Transformer, src: Tensor, src_mask: Tensor, max_len: int):
        self.model, self.length = model, 0
        self.layers = model.transformer.decoder.layers
        memory = model.encode(src, src_mask)                          # (N, S, D)
        self.cross = torch.stack([_memory_keys_values(layer.multihead_attn, memory)
                                  for layer in self.layers])
        self.cache = self.cross.new_empty((*self.cross.shape[:4], max_len, self.cross.shape[5]))
        self.src_mask = src_mask[:, None, None, :]                    # (N, 1, 1, S)

    def start(self) -> Tensor:
        return self.step(torch.full_like(self.src_mask[:, 0, 0, 0], self.model.task.cls_id,
                                         dtype=torch.long))

    def step(self, tokens: Tensor) -> Tensor:
        """Run the new position through every layer, reading and extending the cache."""
        if self.length == self.cache.shape[4]:
            raise ValueError(f"decoding past the decoder's max_len={self.length} positions")
        x = self.model.embed_tokens(tokens[:, None], start=self.length)  # (N, 1, D)
        for layer, cache, cross in zip(self.layers, self.cache, self.cross):
            x = _layer_step(layer, x, cache, self.length, cross, self.src_mask)
        self.length += 1
        hidden = self.model.transformer.decoder.norm(x[:, 0])
        return F.linear(hidden, self.model.embed.weight)             # (N, V)

    def select(self, index: Tensor) -> None:
        self.cross, self.src_mask = self.cross[:, :, index], self.src_mask[index]
        kept = self.cache[:, :, index, :, :self.length]
        if len(index) != self.cache.shape[2]:
            self.cache = self.cache.new_empty(kept.shape[:4] + self.cache.shape[4:])
        self.cache[:, :, :, :, :self.length] = kept


def _split_heads(x: Tensor, parts: int, num_heads: int) -> Tensor:
    """(N, T, parts * D) projections -> (parts, N, H, T, D / H)."""
    n, t = x.shape[:2]
    return x.view(n, t, parts, num_heads, -1).permute(2, 0, 3, 1, 4)


def _memory_keys_values(attn: nn.MultiheadAttention, memory: Tensor) -> Tensor:
    """Keys and values of the encoder memory (N, S, D) for cross-attention `attn`:
    (2, N, H, S, dh), from the last two thirds of its input projection."""
    d_model = attn.embed_dim
    projected = F.linear(memory, attn.in_proj_weight[d_model:], attn.in_proj_bias[d_model:])
    return _split_heads(projected, 2, attn.num_heads)


def _attend(attn: nn.MultiheadAttention, query: Tensor, keys: Tensor, values: Tensor,
            mask: Tensor | None = None) -> Tensor:
    """`attn` of projected queries (N, H, 1, dh) over keys/values (N, H, T, dh) -> (N, 1, D)."""
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
    return attn.out_proj(out.transpose(1, 2).flatten(2))


def _layer_step(layer: nn.TransformerDecoderLayer, x: Tensor, cache: Tensor, position: int,
                cross: Tensor, src_mask: Tensor) -> Tensor:
    """`layer.forward` (eval) for one new position x (N, 1, D) at `position`: its self-attention
    keys/values are written into cache (2, N, H, L, dh) and it attends to positions 0..position
    (the causal mask, implicitly); cross (2, N, H, S, dh) holds the memory's keys/values."""
    num_heads = layer.self_attn.num_heads

    def self_block(h: Tensor) -> Tensor:
        q, k, v = _split_heads(F.linear(h, layer.self_attn.in_proj_weight,
                                        layer.self_attn.in_proj_bias), 3, num_heads)
        cache[:, :, :, position] = torch.stack([k, v])[:, :, :, 0]
        seen = cache[:, :, :, :position + 1]
        return _attend(layer.self_attn, q, seen[0], seen[1])

    def cross_block(h: Tensor) -> Tensor:
        d_model = layer.multihead_attn.embed_dim
        q = F.linear(h, layer.multihead_attn.in_proj_weight[:d_model],
                     layer.multihead_attn.in_proj_bias[:d_model])
        return _attend(layer.multihead_attn, _split_heads(q, 1, num_heads)[0], cross[0], cross[1],
                       src_mask)

    def feed_forward(h: Tensor) -> Tensor:
        return layer.linear2(layer.activation(layer.linear1(h)))

    if layer.norm_first:
        x = x + self_block(layer.norm1(x))
        x = x + cross_block(layer.norm2(x))
        return x + feed_forward(layer.norm3(x))
    x = layer.norm1(x + self_block(x))
    x = layer.norm2(x + cross_block(x))
    return layer.norm3(x + feed_forward(x))


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
