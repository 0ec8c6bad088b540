"""GPVAE-T5: T5 with a Gaussian-process latent over the encoder states (Du et al., 2022).

"Diverse Text Generation via Variational Encoder-Decoder Models with Gaussian Process Priors".
The deterministic encoder states H = (h_1..h_n) are turned into random context variables
z = (z_1..z_n), z_i in R^k, and the decoder attends to H + W_z z instead of H. Each of the k
latent channels is a Gaussian process across the n positions:
- prior      p(z | x) = N(mu_p(H), K) per channel, mu_p = W_p H, K = kernel(u_i, u_j) + noise * I,
             u being the positions (default) or the encoder states (the authors' release);
- posterior  q(z | x) = N(mu_q(H), diag(sigma_q(H)^2)), amortised from the encoder states;
- objective  -ELBO = sum of target-token CE (z ~ q, reparameterised) + beta * KL(q || p), the KL in
             closed form between Gaussians; divided by the example's number of target tokens.
Generation draws z from the prior (or the posterior), its spread multiplied by `latent_scale`,
then decodes left to right with the AR baselines' searches (`pipeline.models.ar_decoding`);
candidate (seed s, source i) takes its latent and its sampled tokens from one stream,
`candidate_generator(s, i)`. The quality decode puts the latent at its mean.
docs/gpvae.md lists the paper's equations this follows and every simplification.

Vocabulary: a T5 from scratch (the embedded default) uses the task's word pieces; a pretrained
T5 (`pretrained`: a hub id or a local directory; paper: t5-base) uses its own tokenizer, the task's
word pieces being decoded to text and re-tokenised; its generated ids are T5 ids, and
`output_tokenizer_dir()` names T5's tokenizer folder so that the sample stage decodes them with it.
Notation: B batch, N candidates, L length, D d_model, k latent channels, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from pipeline.models.ar_decoding import (Search, beam_search, describe, pad_multiple, pad_rows,
                                         sample)
from pipeline.models.base import (Batch, Family, GenerationOutput, Pair, Seq2Seq, TaskInfo,
                                  candidate_generator)

TOKEN_SEARCHES = ("greedy", "beam", "sample")
INIT_STD = 1e-4  # initial weights of the latent layers


@dataclass(frozen=True)
class ModelConfig:
    """T5 sizes (used when `pretrained` is null) and the GP latent's settings."""

    pretrained: str | None = None     # hub id or local T5 directory (paper: t5-base)
    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 256
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.1
    latent_dim: int | None = None     # k (null: d_model)
    kernel: Literal["rbf", "cauchy"] = "rbf"
    kernel_inputs: Literal["positions", "hidden"] = "positions"
    length_scale: float = 1.0
    kernel_variance: float = 1.0
    noise_variance: float = 1.0       # white-noise term: K = kernel + noise_variance * I
    beta: float = 1.0                 # KL weight
    max_len: int | None = None        # tokens kept per source and target (null: seq_len)

    def __post_init__(self) -> None:
        if self.noise_variance <= 0 or self.length_scale <= 0:
            raise ValueError(f"gpvae needs noise_variance > 0 and length_scale > 0 (got "
                             f"{self.noise_variance}, {self.length_scale})")


@dataclass(frozen=True)
class DecodeConfig:
    """One latent draw per candidate (from the prior or the posterior, spread times
    `latent_scale`), then token decoding with `candidates` (greedy, beam or sample; see
    `pipeline.models.ar_decoding`). `quality_decode()` sets the latent to its mean and decodes
    with `quality`. `max_len`: most target tokens (null: the model's max_len)."""

    latent: Literal["prior", "posterior"] = "prior"
    latent_scale: float = 1.0
    candidates: Search = field(default_factory=lambda: Search("greedy"))
    quality: Search = field(default_factory=lambda: Search("greedy"))
    max_len: int | None = None

    def __post_init__(self) -> None:
        for role, search in (("candidates", self.candidates), ("quality", self.quality)):
            if search.method not in TOKEN_SEARCHES:
                raise ValueError(f"decode.{role}.method must be one of {TOKEN_SEARCHES} for gpvae "
                                 f"(the latent draw already diversifies), got '{search.method}'")
        if self.quality.method == "sample":
            raise ValueError("decode.quality.method must be greedy or beam")

    def quality_decode(self) -> DecodeConfig:
        """The deterministic decode: the latent at its mean, then the `quality` search."""
        return dataclasses.replace(self, latent_scale=0.0, candidates=self.quality)


# Stationary kernels as functions of squared distance d2 and length scale r (GP-VAE §3).
KERNELS = {
    "rbf": lambda d2, r: torch.exp(-0.5 * d2 / r**2),
    "cauchy": lambda d2, r: 1.0 / (1.0 + d2 / r**2),
}


def gp_covariance(inputs: Tensor, mask: Tensor, cfg: ModelConfig) -> Tensor:
    """Prior covariance (B, L, L) of one latent channel over the positions.

    Args:
        inputs: (B, L, F) kernel inputs per position (positions as (B, L, 1), or encoder states).
        mask: (B, L) True at real positions. Padded positions get an independent unit variance,
            so with a posterior equal to the prior there they add nothing to the KL.
    """
    if cfg.kernel not in KERNELS:
        raise KeyError(f"unknown kernel '{cfg.kernel}' (known: {sorted(KERNELS)})")
    d2 = torch.cdist(inputs, inputs).pow(2)
    cov = cfg.kernel_variance * KERNELS[cfg.kernel](d2, cfg.length_scale)
    pair = mask[:, :, None] & mask[:, None, :]
    eye = torch.eye(inputs.shape[1], device=inputs.device, dtype=cov.dtype)
    cov = torch.where(pair, cov + cfg.noise_variance * eye, torch.zeros_like(cov))
    return cov + torch.diag_embed((~mask).to(cov.dtype))


def gaussian_kl(q_mean: Tensor, q_var: Tensor, p_mean: Tensor, p_cov: Tensor) -> Tensor:
    """KL( N(q_mean, diag(q_var)) || N(p_mean, p_cov) ) per example, summed over channels.

    Args:
        q_mean, q_var: (B, L, k) posterior means and variances.
        p_mean: (B, L, k) prior means; p_cov: (B, L, L) prior covariance shared by the k channels.

    Returns:
        (B,) = 0.5 * sum_c [tr(K^-1 S_c) + d_c^T K^-1 d_c - L + log|K| - log|S_c|], d_c = p_c - q_c.
    """
    with torch.autocast(p_cov.device.type, enabled=False):  # the Mahalanobis term needs fp32
        chol = torch.linalg.cholesky(p_cov)                              # (B, L, L)
        eye = torch.eye(p_cov.shape[-1], device=p_cov.device, dtype=p_cov.dtype).expand_as(p_cov)
        chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # (B, L, L)
        k_inv_diag = chol_inv.pow(2).sum(1)                               # (B, L): diag(K^-1)
        trace = (k_inv_diag[:, :, None] * q_var).sum((1, 2))
        maha = (chol_inv @ (p_mean - q_mean).to(chol_inv.dtype)).pow(2).sum((1, 2))
        num_channels = q_mean.shape[-1]
        log_det_p = 2.0 * torch.diagonal(chol, dim1=1, dim2=2).log().sum(1)
        log_det_q = q_var.log().sum((1, 2))
        return 0.5 * (trace + maha - num_channels * p_cov.shape[-1] + num_channels * log_det_p - log_det_q)


def resolve_pretrained(name: str) -> Path:
    """A local T5 directory as is, else the hub snapshot of `name` (cached or downloaded)."""
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name))


class GPVAET5(Seq2Seq):
    """T5 whose decoder attends to encoder states plus a GP-distributed latent (module doc)."""

    def __init__(self, cfg: ModelConfig, task: TaskInfo, t5_config: dict[str, Any] | None = None):
        super().__init__()
        self.cfg, self.task = cfg, task
        self.max_len = cfg.max_len or task.seq_len
        self.t5 = self._build_t5(t5_config)
        self.t5_tokenizer = self.task_tokenizer = self.t5_dir = None
        if cfg.pretrained:
            from pipeline.data.dataset import load_tokenizer

            self.t5_dir = str(resolve_pretrained(cfg.pretrained))
            self.t5_tokenizer = AutoTokenizer.from_pretrained(self.t5_dir)
            self.task_tokenizer = load_tokenizer(task.tokenizer_dir)
        config = self.t5.config
        self.pad_id, self.eos_id = config.pad_token_id, config.eos_token_id
        self.start_id = getattr(config, "decoder_start_token_id", None) or config.pad_token_id
        banned = [self.pad_id] if cfg.pretrained else [task.pad_id, task.cls_id]
        self.register_buffer("banned", torch.tensor(banned), persistent=False)
        dim, k = config.d_model, cfg.latent_dim or config.d_model
        self.prior_mean = nn.Linear(dim, k)            # mu_p(H)
        self.posterior_mean = nn.Linear(dim, k)        # mu_q(H)
        self.posterior_logvar = nn.Linear(dim, k)      # log sigma_q(H)^2
        self.latent_to_hidden = nn.Linear(k, dim, bias=False)  # W_z
        # As in the authors' release: the latent starts as a near-zero perturbation of H, so the
        # KL cannot push the encoder off the source before the decoder has learned to read it.
        for layer in (self.prior_mean, self.posterior_mean, self.posterior_logvar, self.latent_to_hidden):
            nn.init.normal_(layer.weight, std=INIT_STD)
            if layer.bias is not None:
                nn.init.normal_(layer.bias, std=INIT_STD)

    def output_tokenizer_dir(self) -> str | None:
        """A pretrained T5 writes its own ids: its tokenizer decodes them."""
        return self.t5_dir

    def is_pretrained(self) -> bool:
        return bool(self.cfg.pretrained)

    def _build_t5(self, t5_config: dict[str, Any] | None) -> T5ForConditionalGeneration:
        """The pretrained T5 (hub id or folder), a T5 of an exported config, or a fresh small T5
        over the task's vocabulary ([SEP] ends a sequence, [PAD] starts the decoder)."""
        cfg, task = self.cfg, self.task
        if t5_config is not None:
            return T5ForConditionalGeneration(T5Config.from_dict(t5_config))
        if cfg.pretrained:
            return T5ForConditionalGeneration.from_pretrained(resolve_pretrained(cfg.pretrained))
        return T5ForConditionalGeneration(T5Config(
            vocab_size=task.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
            num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers,
            num_heads=cfg.num_heads, dropout_rate=cfg.dropout, pad_token_id=task.pad_id,
            eos_token_id=task.sep_id, decoder_start_token_id=task.pad_id))

    # --- tensors -------------------------------------------------------------------------------

    def collate(self, pairs: list[Pair]) -> Batch:
        """Sources `x [EOS]` (B, Ls) with their mask, decoder inputs `[START] y` and labels
        `y [EOS]` (B, Lt), labels padded with -100 (ignored by the loss); each side padded to the
        batch's own length (`pad_rows`)."""
        srcs, trgs = self._token_lists(pairs)
        srcs = [s[: self.max_len] + [self.eos_id] for s in srcs]
        labels = [t[: self.max_len] + [self.eos_id] for t in trgs]
        multiple = pad_multiple(self)
        src, src_mask = pad_rows(srcs, self.pad_id, self.max_len + 1, multiple)
        label, _ = pad_rows(labels, -100, self.max_len + 1, multiple)
        decoder_input, _ = pad_rows([[self.start_id] + t[:-1] for t in labels], self.pad_id,
                                    self.max_len + 1, multiple)
        return {"src": src, "src_mask": src_mask.long(), "labels": label,
                "decoder_input": decoder_input}

    def _token_lists(self, pairs: list[Pair]) -> tuple[list[list[int]], list[list[int]]]:
        """Ids in this model's vocabulary: the task's word pieces, or (pretrained T5) the text
        they decode to, re-tokenised with the T5 tokenizer."""
        if self.t5_tokenizer is None:
            return [[int(t) for t in s] for s, _ in pairs], [[int(t) for t in t] for _, t in pairs]
        from pipeline.text import decode_ids

        texts = [decode_ids(self.task_tokenizer, ids) for pair in pairs for ids in pair]
        ids = self.t5_tokenizer(texts, add_special_tokens=False)["input_ids"]
        return ids[0::2], ids[1::2]

    # --- the GP latent -------------------------------------------------------------------------

    def prior(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Prior mean (B, L, k) and covariance (B, L, L) of every latent channel."""
        if self.cfg.kernel_inputs == "positions":
            inputs = torch.arange(states.shape[1], device=states.device, dtype=torch.float32)
            inputs = inputs[None, :, None].expand(states.shape[0], -1, -1)
        else:
            inputs = states.float()
        return self.prior_mean(states).float(), gp_covariance(inputs, mask, self.cfg)

    def posterior(self, states: Tensor, mask: Tensor, prior_mean: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance (B, L, k); equal to the prior (mean, unit variance) at the
        padded positions, so that they add nothing to the KL."""
        keep = mask[:, :, None]
        mean = torch.where(keep, self.posterior_mean(states).float(), prior_mean)
        var = torch.where(keep, self.posterior_logvar(states).float().exp(), torch.ones_like(mean))
        return mean, var

    def _memory(self, states: Tensor, latent: Tensor) -> BaseModelOutput:
        """What the decoder attends to: H + W_z z, (B, L, D)."""
        return BaseModelOutput(last_hidden_state=states + self.latent_to_hidden(latent.to(states.dtype)))

    # --- training ------------------------------------------------------------------------------

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """Negative ELBO per target token (B,), with its two terms "nll" and "kl" (per token)."""
        mask = batch["src_mask"].bool()
        states = self.t5.encoder(input_ids=batch["src"], attention_mask=batch["src_mask"]).last_hidden_state
        prior_mean, prior_cov = self.prior(states, mask)
        post_mean, post_var = self.posterior(states, mask, prior_mean)
        latent = post_mean + post_var.sqrt() * torch.randn_like(post_mean)  # reparameterisation
        logits = self.t5(encoder_outputs=self._memory(states, latent), attention_mask=batch["src_mask"],
                         decoder_input_ids=batch["decoder_input"]).logits
        ce = F.cross_entropy(logits.float().transpose(1, 2), batch["labels"], ignore_index=-100,
                             reduction="none").sum(1)
        kl = gaussian_kl(post_mean, post_var, prior_mean, prior_cov)
        num_tokens = (batch["labels"] != -100).sum(1).clamp(min=1)
        return {"loss": (ce + self.cfg.beta * kl) / num_tokens, "nll": ce / num_tokens, "kl": kl / num_tokens}

    # --- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        """`len(seeds)` candidates per source: a latent draw each, then `decode.candidates`.
        Candidate (s, i) draws its latent, then its sampled tokens, from one stream,
        `candidate_generator(s, i)`. Ids are in this model's vocabulary (see `output_tokenizer_dir`)."""
        group = len(seeds)
        mask = batch["src_mask"].repeat_interleave(group, 0)  # candidate n = i * group + k
        states = self.t5.encoder(input_ids=batch["src"], attention_mask=batch["src_mask"]).last_hidden_state
        states = states.repeat_interleave(group, 0)
        gens = [candidate_generator(s, i) for i in source_indices for s in seeds]
        latent = self.draw_latents(states, mask.bool(), gens, decode)
        decoder = _T5Decoder(self.t5, self._memory(states, latent).last_hidden_state, mask,
                             self.start_id, self.banned)
        search, max_len = decode.candidates, decode.max_len or self.max_len
        if search.method == "sample":
            ids = sample(decoder, gens, max_len, self.eos_id, temperature=search.temperature,
                         top_k=search.top_k, top_p=search.top_p)
        else:
            best = beam_search(decoder, len(gens), max_len, self.eos_id,
                               beam_size=search.beam_size if search.method == "beam" else 1,
                               length_penalty=search.length_penalty)
            ids = [groups[0] for groups in best]
        return GenerationOutput(ids=[ids[i * group:(i + 1) * group] for i in range(len(source_indices))])

    def draw_latents(self, states: Tensor, mask: Tensor, gens: list[torch.Generator],
                     decode: DecodeConfig) -> Tensor:
        """z = mean + latent_scale * A eps, (N, L, k): A the prior's Cholesky factor or the
        posterior's standard deviations; eps (n_i, k) drawn from candidate i's own generator."""
        mean, cov = self.prior(states, mask)
        eps = torch.zeros_like(mean)
        for n, (gen, length) in enumerate(zip(gens, mask.sum(1).tolist())):
            eps[n, :length] = torch.randn((length, mean.shape[-1]), generator=gen).to(eps.device)
        if decode.latent == "posterior":
            post_mean, post_var = self.posterior(states, mask, mean)
            return post_mean + decode.latent_scale * post_var.sqrt() * eps
        return mean + decode.latent_scale * (torch.linalg.cholesky(cov) @ eps)

    def export_config(self) -> dict[str, Any]:
        return {"family": "gpvae", "pretrained": self.cfg.pretrained or False,
                "model": dataclasses.asdict(self.cfg), "task": dataclasses.asdict(self.task),
                "t5_config": self.t5.config.to_dict()}


class _T5Decoder:
    """T5's decoder over N rows of memory, one token at a time, with its key/value cache (the
    `IncrementalDecoder` of `pipeline.models.ar_decoding`); banned ids never come out."""

    def __init__(self, t5: T5ForConditionalGeneration, memory: Tensor, mask: Tensor, start_id: int,
                 banned: Tensor):
        self.t5, self.memory, self.mask, self.banned = t5, memory, mask, banned
        self.start_id, self.cache = start_id, None

    def _logits(self, tokens: Tensor) -> Tensor:
        out = self.t5(encoder_outputs=BaseModelOutput(last_hidden_state=self.memory),
                      attention_mask=self.mask, decoder_input_ids=tokens[:, None], cache=self.cache,
                      use_cache=True)
        self.cache = out.cache
        return out.logits[:, -1].float().index_fill(-1, self.banned, float("-inf"))  # (N, V)

    def start(self) -> Tensor:
        return self._logits(torch.full((self.memory.shape[0],), self.start_id, device=self.memory.device))

    def step(self, tokens: Tensor) -> Tensor:
        return self._logits(tokens)

    def select(self, index: Tensor) -> None:
        self.memory, self.mask = self.memory[index], self.mask[index]
        if self.cache is not None:
            self.cache.reorder_cache(index)


def build(model_cfg: ModelConfig, task: TaskInfo) -> GPVAET5:
    """A GPVAE-T5 for a task: from scratch, or from the pretrained T5 the config names."""
    return GPVAET5(model_cfg, task)


def from_export(config: dict[str, Any]) -> GPVAET5:
    """Rebuild the model from `export_config()` with no pretrained weights loaded (the
    checkpoint's weights follow); a pretrained model still needs its tokenizer folder."""
    return GPVAET5(ModelConfig(**config["model"]), TaskInfo(**config["task"]), config["t5_config"])


FAMILY = Family("gpvae", ModelConfig, DecodeConfig, build, from_export,
                quality_decode=DecodeConfig.quality_decode, describe=describe, paper_system="GPVAE-T5",
                matches_paper=lambda cfg: bool(cfg.pretrained))
