"""DiffuSeq (Gong et al., ICLR 2023): the network, the joint x ⊕ y layout, training loss, sampling.

The network's module names are the authors' release's (`word_embedding`, `lm_head`, `time_embed`,
`input_up_proj`, `input_transformers`, `position_embeddings`, `LayerNorm`, `output_down_proj`),
so a release state dict loads into `DiffuSeq.net` without renaming (see `release_import`).
Specification: docs/diffuseq.md §1-5; (release) marks the authors' behaviour kept.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from pipeline.diffusion.absorbing import AbsorbingState
from pipeline.diffusion.process import Diffusion
from pipeline.diffusion.rounding import NearestEmbedding, vocab_argmax
from pipeline.diffusion.samplers import Sampler, build_sampler, standard_normal
from pipeline.diffusion.schedules import get_betas
from pipeline.diffusion.timesteps import build_timestep_sampler
from pipeline.models.base import (Batch, Family, GenerationOutput, Pair, Seq2Seq, TaskInfo,
                                  candidate_generator)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderConfig:
    """The BERT encoder (paper: bert-base: 12 layers, H=768, 12 heads, FFN 3072, dropout 0.1)."""

    num_layers: int = 12
    num_heads: int = 12
    hidden_size: int = 768
    intermediate_size: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position: int = 512
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class ModelConfig:
    """DiffuSeq's network and diffusion (docs/diffuseq.md §2-4). hidden_dim is d (word embeddings),
    hidden_t_dim the sinusoidal time embedding; use_plm_init loads the encoder (and position
    embeddings, LayerNorm) from pretrained BERT `plm_name` (hub id or local folder).
    dynamic_length pads each training batch only to its longest joint sequence (rounded up to a
    multiple of 8) instead of seq_len; off by default, since the release trains on seq_len - the
    pads are content the model learns to produce. Generation always runs at seq_len."""

    hidden_dim: int = 128
    hidden_t_dim: int = 128
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    diffusion_steps: int = 2000
    noise_schedule: Literal["sqrt", "linear", "cosine"] = "sqrt"
    timestep_sampler: Literal["uniform", "loss_aware"] = "loss_aware"
    rescale_timesteps: bool = True
    use_plm_init: bool = False
    plm_name: str = "bert-base-uncased"
    dynamic_length: bool = False
    # DiffuSeq-v2 (docs/diffuseq-v2.md; all off = DiffuSeq): the learned soft absorbing state m
    # (`mean_embed`), its discrete noise of rate r (release: `denoise`, `denoise_rate`), and the
    # regulariser reg_rate * ||m||_2 added to the loss.
    learned_mean_embed: bool = False
    discrete_noise: bool = False
    discrete_noise_rate: float = 0.2
    reg_rate: float = 0.0


@dataclass(frozen=True)
class DecodeConfig:
    """Sampling (docs/diffuseq.md §5). sampler: `ddpm` (all T steps), `ddim_gap` (the release's DDIM
    with gap T//steps, for reproduction), `ddim` (correctly respaced DDIM, `eta`), `dpm_solver++`
    (multistep DPM-Solver++ of order `solver_order`, DiffuSeq-v2's fast sampler). Clamping at
    visited steps t >= clamp_step (clamp_step >= T: never). ddpm_variance: `fixed_large`
    (release) or `posterior`. initial_latent, for models with an absorbing state m: `release`
    starts target positions at eps + m, except under DPM-Solver++ at eps (the v2 release's two
    scripts); `absorbing` at eps + m under every sampler (as training's z_T).
    target_end: `first_special` cuts the output at its first [SEP]/[PAD]; `strip_specials`
    (release) drops every [CLS]/[SEP]/[PAD] and keeps the rest. record_fractions: fractions of
    the steps at which the decoded x̂_0 is recorded (step-wise figure)."""

    sampler: Literal["ddpm", "ddim_gap", "ddim", "dpm_solver++"] = "ddpm"
    steps: int = 2000
    clamp_step: int = 0
    eta: float = 0.0
    solver_order: int = 2
    initial_latent: Literal["release", "absorbing"] = "release"
    ddpm_variance: Literal["fixed_large", "posterior"] = "fixed_large"
    target_end: Literal["first_special", "strip_specials"] = "first_special"
    record_fractions: list[float] = field(default_factory=list)


@dataclass
class Denoised:
    """What `DiffuSeq.denoise` returns.

    z0: (N, L, d) the final latent. trace: {fraction: (N, L) ids decoded from x̂_0 after that
    fraction of the steps (target positions; source ones hold [PAD])}. path: (steps + 1, N, L, d)
    z_T then the latent after every step, when asked for (else None).
    """

    z0: Tensor
    trace: dict[float, Tensor]
    path: Tensor | None = None


@dataclass
class DiffusionOutput(GenerationOutput):
    """GenerationOutput plus, when asked for, the latent path (steps + 1, N, L, d) of the rows
    (source i, seed k), source-major."""

    path: Tensor | None = None


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos(t f_k), sin(t f_k)], f_k = max_period^(-k/half). (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps.float()[:, None] * freqs.to(timesteps.device)[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


def _bert_config(enc: EncoderConfig) -> BertConfig:
    return BertConfig(hidden_size=enc.hidden_size, num_hidden_layers=enc.num_layers,
                      num_attention_heads=enc.num_heads, intermediate_size=enc.intermediate_size,
                      hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attention_dropout,
                      max_position_embeddings=enc.max_position, layer_norm_eps=enc.layer_norm_eps,
                      attn_implementation="sdpa")


class TransformerNet(nn.Module):
    """f(z_t, t) -> x̂_0 (docs/diffuseq.md §2). Module names are the release's; keep their order
    (word_embedding before lm_head: loading a release state dict relies on it, docs/diffuseq.md §6)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        d, hidden, t_dim = cfg.hidden_dim, cfg.encoder.hidden_size, cfg.hidden_t_dim
        self.hidden_t_dim = t_dim
        self.word_embedding = nn.Embedding(vocab_size, d)
        self.lm_head = nn.Linear(d, vocab_size)
        self.lm_head.weight = self.word_embedding.weight                   # tied (rounding/logits)
        self.time_embed = nn.Sequential(nn.Linear(t_dim, 4 * t_dim), nn.SiLU(),
                                        nn.Linear(4 * t_dim, hidden))
        if d != hidden:
            self.input_up_proj = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.input_transformers = BertEncoder(_bert_config(cfg.encoder))
        self.register_buffer("position_ids", torch.arange(cfg.encoder.max_position), persistent=False)
        self.position_embeddings = nn.Embedding(cfg.encoder.max_position, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=cfg.encoder.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.encoder.dropout)
        if d != hidden:
            self.output_down_proj = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, d))
        if cfg.learned_mean_embed:
            # DiffuSeq-v2's absorbing state m ~ N(0, 1/d), created last so that the other
            # parameters get the same initial values as DiffuSeq's under the same seed.
            self.mean_embed = nn.Parameter(torch.empty(d))
            nn.init.normal_(self.mean_embed, std=d ** -0.5)

    def get_embeds(self, input_ids: Tensor) -> Tensor:
        """Emb(w): (B, L) -> (B, L, d)."""
        return self.word_embedding(input_ids)

    def decode_ids(self, hidden: Tensor) -> Tensor:
        """argmax(lm_head(hidden)) without the (N, V) logits: (N, d) -> (N,) word ids."""
        return vocab_argmax(hidden, self.lm_head.weight, self.lm_head.bias)

    def forward(self, z_t: Tensor, timesteps: Tensor) -> Tensor:
        """x̂_0 = f(z_t, t). z_t: (B, L, d); timesteps: (B,) (already rescaled). Returns (B, L, d)
        in z_t's dtype. Bidirectional, no attention mask (release: pads are content here)."""
        emb_t = self.time_embed(timestep_embedding(timesteps, self.hidden_t_dim))     # (B, H)
        emb_x = self.input_up_proj(z_t) if hasattr(self, "input_up_proj") else z_t     # (B, L, H)
        positions = self.position_embeddings(self.position_ids[: z_t.shape[1]])       # (L, H)
        h = self.dropout(self.LayerNorm(positions + emb_x + emb_t.unsqueeze(1)))
        h = self.input_transformers(h).last_hidden_state
        h = self.output_down_proj(h) if hasattr(self, "output_down_proj") else h
        return h.to(z_t.dtype)


def layout_example(source: np.ndarray, target: np.ndarray, task: TaskInfo) -> tuple[list[int], int, bool]:
    """The release's joint sequence `[CLS] x [SEP] [SEP] [CLS] y [SEP]` (docs/diffuseq.md §1), unpadded.

    (release) while len([CLS] x) + len([CLS] y) > seq_len - 3, drop the last word piece of the
    longer side (of both when equal); then each side gets its [SEP] back.

    Returns:
        (ids, number of source positions (input_mask 0) = len([CLS] x [SEP] [SEP]), truncated?)
    """
    src, trg = [task.cls_id, *source.tolist()], [task.cls_id, *target.tolist()]
    limit = task.seq_len - 3
    truncated = len(src) + len(trg) > limit
    while len(src) + len(trg) > limit:
        longer_src, longer_trg = len(src) >= len(trg), len(trg) >= len(src)
        if longer_src:
            src.pop()
        if longer_trg:
            trg.pop()
    src.append(task.sep_id)
    trg.append(task.sep_id)
    return src + [task.sep_id] + trg, len(src) + 1, truncated


class DiffuSeq(Seq2Seq):
    """The denoiser, the diffusion process and the timestep sampler behind the Seq2Seq interface.

    Args:
        cfg: the model block of the system.
        task: the task's tokenization (vocabulary, seq_len, special ids).
    """

    def __init__(self, cfg: ModelConfig, task: TaskInfo):
        super().__init__()
        if cfg.reg_rate and not cfg.learned_mean_embed:
            raise ValueError("model.reg_rate regularises the learned absorbing state: it needs "
                             "model.learned_mean_embed: true")
        self.cfg, self.task = cfg, task
        self.net = TransformerNet(cfg, task.vocab_size)
        self.betas = get_betas(cfg.noise_schedule, cfg.diffusion_steps)
        self.diffusion = Diffusion(self.betas, cfg.rescale_timesteps)
        self.timestep_sampler = build_timestep_sampler(cfg.timestep_sampler, cfg.diffusion_steps)

    def collate(self, pairs: list[Pair]) -> Batch:
        """input_ids (B, L) in the release's layout, input_mask (B, L) (0 on the source part),
        truncated (B,) bool: whether the release's truncation rule shortened the example.
        L = seq_len, or with `dynamic_length` the longest example rounded up to a multiple of 8."""
        rows = [layout_example(src, trg, self.task) for src, trg in pairs]
        length = self.task.seq_len
        if self.cfg.dynamic_length:
            length = min(length, -(-max(len(ids) for ids, _, _ in rows) // 8) * 8)
        input_ids = torch.full((len(rows), length), self.task.pad_id, dtype=torch.long)
        input_mask = torch.ones((len(rows), length), dtype=torch.long)
        for i, (ids, num_source, _) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            input_mask[i, :num_source] = 0
        truncated = torch.tensor([was_cut for _, _, was_cut in rows], dtype=torch.bool)
        return {"input_ids": input_ids, "input_mask": input_mask, "truncated": truncated}

    def loss(self, batch: Batch, *, t: Tensor | None = None, emb_noise: Tensor | None = None,
             noise: Tensor | None = None) -> dict[str, Tensor]:
        """Per-example terms (B,) and the sampled timesteps "t" (integer: `loss_groups` turns it
        into the trainer's per-quartile log); "loss" is importance-weighted by the timestep sampler, which learns from the
        unweighted losses of training batches only (validation must not change its history).
        The logged-only masked NLL of x̂_0 ("nll") is computed in eval mode, i.e. on the
        trainer's validation batches (`valid_nll`), not on every training step.

        t (B,), emb_noise and noise (B, L, d): given instead of drawn (to compare with another
        implementation step by step); given t keep the sampler's importance weights.
        """
        input_ids, input_mask = batch["input_ids"], batch["input_mask"]
        if t is None:
            t, weights = self.timestep_sampler.sample(len(input_ids), input_ids.device)
        else:
            weights = self.timestep_sampler.weights(t)
        terms = self.diffusion.losses(self.net, input_ids, input_mask, t, emb_noise=emb_noise,
                                      noise=noise, with_nll=not self.training,
                                      absorbing=self.absorbing_state())
        if self.cfg.reg_rate:
            # (v2) reg_rate * ||m||_2 on every example, as the release adds it to "loss".
            terms["reg"] = (self.cfg.reg_rate * self.net.mean_embed.norm()).expand_as(terms["loss"])
            terms["loss"] = terms["loss"] + terms["reg"]
        if self.training:
            self.timestep_sampler.update(t, terms["loss"].detach())
        terms["loss"] = terms["loss"] * weights
        return {**terms, "t": t}

    def loss_groups(self, terms: dict[str, Tensor]) -> Tensor:
        """The quartile of [0, T) of each example's timestep (improved-diffusion's loss log)."""
        return (terms["t"] * 4 // self.cfg.diffusion_steps).clamp(0, 3)

    def absorbing_state(self) -> AbsorbingState | None:
        """DiffuSeq-v2's absorbing state m (zeros without `learned_mean_embed`) and discrete-noise
        rate; None for DiffuSeq (neither option on)."""
        if not (self.cfg.learned_mean_embed or self.cfg.discrete_noise):
            return None
        mean = (self.net.mean_embed if self.cfg.learned_mean_embed
                else self.net.word_embedding.weight.new_zeros(self.cfg.hidden_dim))
        return AbsorbingState(mean, self.cfg.discrete_noise_rate if self.cfg.discrete_noise else 0.0)

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig, *, initial_noise: Tensor | None = None,
                 keep_path: bool = False) -> DiffusionOutput:
        """All seeds of all sources in one reverse process (B * len(seeds) rows, source-major);
        candidate (seed s, source i) draws all its noise from candidate_generator(s, i).

        initial_noise: (B * len(seeds), seq_len, d) z_T on target positions, given instead of
        drawn; keep_path: also return every latent of the reverse process (`denoise`).
        """
        device = self.net.word_embedding.weight.device
        num_seeds = len(seeds)
        input_ids, input_mask = self._full_length(batch["input_ids"], batch["input_mask"])
        input_ids = input_ids.to(device).repeat_interleave(num_seeds, dim=0)          # (N, L)
        input_mask = input_mask.to(device).repeat_interleave(num_seeds, dim=0)
        generators = [candidate_generator(s, i) for i in source_indices for s in seeds]
        sampler = build_sampler(decode.sampler, self.betas, decode.steps, eta=decode.eta,
                                ddpm_variance=decode.ddpm_variance, solver_order=decode.solver_order)
        out = self.denoise(sampler, self.net.get_embeds(input_ids), input_mask, generators, decode,
                           initial_noise=initial_noise, keep_path=keep_path)
        regroup = functools.partial(self._regroup, input_mask=input_mask, num_seeds=num_seeds,
                                    target_end=decode.target_end)
        return DiffusionOutput(ids=regroup(self._decode_targets(out.z0, input_mask)),
                               trace={f: regroup(ids) for f, ids in out.trace.items()},
                               path=out.path)

    def _full_length(self, input_ids: Tensor, input_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Pad a (dynamic-length) batch to seq_len: generation always fills seq_len positions."""
        missing = self.task.seq_len - input_ids.shape[1]
        return (F.pad(input_ids, (0, missing), value=self.task.pad_id),
                F.pad(input_mask, (0, missing), value=1))

    def _decode_targets(self, hidden: Tensor, input_mask: Tensor) -> Tensor:
        """argmax(lm_head(hidden)) at target positions, (N, L); source positions hold [PAD]
        (they are never read: `_target_ids` keeps the target part only)."""
        ids = torch.full(input_mask.shape, self.task.pad_id, dtype=torch.long, device=hidden.device)
        is_target = input_mask.bool()
        ids[is_target] = self.net.decode_ids(hidden[is_target])
        return ids

    def _regroup(self, ids: Tensor, input_mask: Tensor, num_seeds: int,
                 target_end: str) -> list[list[list[int]]]:
        """(N, L) ids of rows (source i, seed k) -> [i][k] lists of target word pieces."""
        targets = [self._target_ids(row, mask, target_end) for row, mask in zip(ids, input_mask)]
        return [targets[i:i + num_seeds] for i in range(0, len(targets), num_seeds)]

    def denoise(self, sampler: Sampler, x_start: Tensor, input_mask: Tensor,
                generators: list[torch.Generator], decode: DecodeConfig, *,
                initial_noise: Tensor | None = None, keep_path: bool = False) -> Denoised:
        """The reverse process (docs/diffuseq.md §5), source re-imposed after every step; with
        DiffuSeq-v2's absorbing state, target positions start at eps + m (see DecodeConfig) and
        take its discrete noise after every step that adds noise.

        Args:
            sampler: with its timesteps set.
            x_start: (N, L, d) Emb(w) of the rows (only the source part is used).
            input_mask: (N, L) 1 on generated positions.
            generators: one per row.
            initial_noise: (N, L, d) z_T on target positions; drawn from `generators` if None.
            keep_path: keep the latent after every step (memory: steps x N x L x d floats).
        """
        is_source = (input_mask == 0).unsqueeze(-1)                                   # (N, L, 1)
        is_target = input_mask.bool()
        absorbing = self.absorbing_state()
        if initial_noise is None:
            initial_noise = standard_normal(x_start, generators)
        if absorbing is not None and (decode.initial_latent == "absorbing"
                                      or decode.sampler != "dpm_solver++"):
            initial_noise = initial_noise + absorbing.mean     # (v2) z_T = eps + m, see DecodeConfig
        z = torch.where(is_source, x_start, initial_noise.to(x_start))
        clamp = NearestEmbedding(self.net.word_embedding.weight)
        timesteps = sampler.timesteps
        record = _record_steps(decode.record_fractions, len(timesteps))
        trace, path = {}, [z] if keep_path else []
        for k, t in enumerate(timesteps, start=1):
            pred_z0 = self.net(z, self.diffusion.scale_timesteps(torch.full((len(z),), t, device=z.device)))
            if t >= decode.clamp_step:
                # Source positions are re-anchored below, so only target rows need rounding.
                pred_z0[is_target] = clamp(pred_z0[is_target])
            out = sampler.step(pred_z0, t, z, generator=generators)
            z = out.prev_sample
            if absorbing is not None:
                z = absorbing.absorb_after_step(z, out.noise_std, input_mask, generators)
            z = torch.where(is_source, x_start, z)
            for fraction in record.get(k, ()):
                trace[fraction] = self._decode_targets(pred_z0, input_mask)
            if keep_path:
                path.append(z)
        return Denoised(z0=z, trace=trace, path=torch.stack(path) if keep_path else None)

    def _target_ids(self, ids: Tensor, input_mask: Tensor, target_end: str) -> list[int]:
        """The generated target's word pieces, specials removed (docs/diffuseq.md §5)."""
        target = ids[int((input_mask == 0).sum()):].tolist()
        specials = {self.task.cls_id, self.task.sep_id, self.task.pad_id}
        if target_end == "strip_specials":
            return [i for i in target if i not in specials]
        body = [i for i in target if i != self.task.cls_id]
        ends = [n for n, i in enumerate(body) if i in (self.task.sep_id, self.task.pad_id)]
        return body[:ends[0]] if ends else body

    def export_config(self) -> dict[str, Any]:
        """ModelConfig and TaskInfo as plain data (`from_export` rebuilds the model from it)."""
        return {"model": dataclasses.asdict(self.cfg), "task": dataclasses.asdict(self.task)}


def _record_steps(fractions: list[float], num_steps: int) -> dict[int, list[float]]:
    """Map each requested fraction to the (1-based) step after which x̂_0 is recorded."""
    steps: dict[int, list[float]] = {}
    for fraction in fractions:
        steps.setdefault(min(num_steps, max(1, round(fraction * num_steps))), []).append(fraction)
    return steps


def init_from_plm(net: TransformerNet, cfg: ModelConfig) -> None:
    """Copy a pretrained BERT's encoder, position embeddings and LayerNorm into `net` (and its
    word embeddings when their shape matches d and the vocabulary), as the release's
    `init_pretrained='bert'` does. The encoder block of `cfg` must describe that BERT."""
    from transformers import BertModel

    plm = BertModel.from_pretrained(cfg.plm_name)
    found = {"num_layers": plm.config.num_hidden_layers, "num_heads": plm.config.num_attention_heads,
             "hidden_size": plm.config.hidden_size, "intermediate_size": plm.config.intermediate_size,
             "max_position": plm.config.max_position_embeddings}
    wrong = {k: (v, getattr(cfg.encoder, k)) for k, v in found.items() if getattr(cfg.encoder, k) != v}
    if wrong:
        raise ValueError(f"model.encoder does not match pretrained '{cfg.plm_name}' "
                         f"(key: (pretrained, configured)): {wrong}")
    net.input_transformers.load_state_dict(plm.encoder.state_dict())
    net.position_embeddings.load_state_dict(plm.embeddings.position_embeddings.state_dict())
    net.LayerNorm.load_state_dict(plm.embeddings.LayerNorm.state_dict())
    words = plm.embeddings.word_embeddings.weight
    if words.shape == net.word_embedding.weight.shape:
        with torch.no_grad():
            net.word_embedding.weight.copy_(words)
    else:
        log.info("pretrained word embeddings %s do not fit (V, d) = %s: kept random",
                 tuple(words.shape), tuple(net.word_embedding.weight.shape))


def build(model_cfg: ModelConfig, task: TaskInfo) -> DiffuSeq:
    """A freshly initialised DiffuSeq (encoder from pretrained BERT when use_plm_init)."""
    model = DiffuSeq(model_cfg, task)
    if model_cfg.use_plm_init:
        init_from_plm(model.net, model_cfg)
    return model


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Inverse of dataclasses.asdict for ModelConfig."""
    return ModelConfig(**{**data, "encoder": EncoderConfig(**data["encoder"])})


def from_export(config: dict[str, Any]) -> DiffuSeq:
    """Rebuild the architecture from `export_config()` (weights are loaded by the caller; the
    pretrained BERT is not fetched again)."""
    return DiffuSeq(model_config_from_dict(config["model"]), TaskInfo(**config["task"]))


def cheap_decode(decode: DecodeConfig) -> DecodeConfig:
    """The convergence probe's decode, the same for DiffuSeq and DiffuSeq-v2: stochastic respaced
    DDIM with 20 steps (the embedded default's own decode; within a BLEU point of 2000-step DDPM
    there), keeping the system's clamping, without step traces."""
    return dataclasses.replace(decode, sampler="ddim", steps=20, eta=1.0, record_fractions=[])


def is_paper_model(cfg: ModelConfig) -> bool:
    """The paper's DiffuSeq: a bert-base encoder, d = 128, T = 2000 with the sqrt schedule."""
    enc = cfg.encoder
    return ((enc.num_layers, enc.hidden_size, enc.num_heads, enc.intermediate_size)
            == (12, 768, 12, 3072) and cfg.hidden_dim == 128 and cfg.diffusion_steps == 2000
            and cfg.noise_schedule == "sqrt")


FAMILY = Family("diffuseq", ModelConfig, DecodeConfig, build, from_export, paper_system="DiffuSeq",
                describe=lambda decode: f"sampler={decode.sampler}, steps={decode.steps}",
                matches_paper=is_paper_model, probe_decode=cheap_decode)
