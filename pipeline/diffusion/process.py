"""The forward process q(z_t | z_0) with partial noising, its posterior, and DiffuSeq's training loss.

Notation (paper -> code): z_0 / x_0 -> `z0`, z_t -> `z_t`, Emb(w) -> `emb`, alpha_bar_t ->
`alphas_cumprod[t]`, epsilon -> `noise`, x̂_0 = f(z_t, t) -> `pred_z0`, the mask that marks the
generated (target) positions -> `input_mask` (1 = target, noised; 0 = source, kept clean).
DiffuSeq §3 / docs/diffuseq.md §3-4; the schedule arithmetic follows improved-diffusion's
`GaussianDiffusion` (float64 numpy, cast to float32 only when gathered for a batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.diffusion.schedules import alphas_cumprod
from pipeline.diffusion.vocab_ce import vocab_nll

if TYPE_CHECKING:
    from pipeline.diffusion.absorbing import AbsorbingState


class Denoiser(Protocol):
    """What the loss needs of a network: embeddings, the vocabulary projection, x_0 prediction."""

    lm_head: nn.Linear                                                    # D -> V (logits)

    def get_embeds(self, input_ids: Tensor) -> Tensor: ...                # (B, L) -> (B, L, D)
    def __call__(self, z_t: Tensor, timesteps: Tensor) -> Tensor: ...     # -> pred_z0 (B, L, D)


def extract(arr: np.ndarray, t: Tensor, ndim: int) -> Tensor:
    """Gather float64 schedule values at timesteps t and cast to float32, shaped (B, 1, ...)."""
    values = torch.from_numpy(arr).to(t.device)[t].float()
    return values.view(-1, *([1] * (ndim - 1)))


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch one. (B, ...) -> (B,)."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def masked_token_nll(net: Denoiser, hidden: Tensor, input_ids: Tensor, mask: Tensor) -> Tensor:
    """Per-example CE of lm_head(hidden) over mask==1 positions only (the others are never
    projected onto the vocabulary).

    Args:
        hidden: (B, L, D); input_ids: (B, L); mask: (B, L) 0/1.
    Returns:
        (B,) mean over each example's mask==1 positions.
    """
    selected = mask.bool()                                                    # (B, L)
    rows = torch.arange(len(mask), device=mask.device).unsqueeze(1).expand_as(mask)[selected]
    nll = vocab_nll(hidden[selected], net.lm_head.weight, net.lm_head.bias, input_ids[selected])
    total = torch.zeros(len(mask), device=nll.device).index_add_(0, rows, nll)
    return total / selected.sum(dim=-1).clamp(min=1)


class Diffusion:
    """q(z_t | z_0) with partial noising, the posterior q(z_{t-1} | z_t, z_0), and the loss.

    Args:
        betas: (T,) float64 noise schedule (see `schedules.get_betas`).
        rescale_timesteps: give the network t * 1000 / T instead of t (docs/diffuseq.md §3).
    """

    def __init__(self, betas: np.ndarray, rescale_timesteps: bool = True):
        self.betas = np.asarray(betas, dtype=np.float64)
        self.num_steps = len(self.betas)
        self.rescale_timesteps = rescale_timesteps
        self.alphas_cumprod = alphas_cumprod(self.betas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        # Posterior q(z_{t-1} | z_t, z_0) = N(c1_t z_0 + c2_t z_t, posterior_variance_t).
        self.posterior_mean_coef1 = (self.betas * np.sqrt(self.alphas_cumprod_prev)
                                     / (1.0 - self.alphas_cumprod))
        self.posterior_mean_coef2 = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - self.betas)
                                     / (1.0 - self.alphas_cumprod))
        self.posterior_variance = (self.betas * (1.0 - self.alphas_cumprod_prev)
                                   / (1.0 - self.alphas_cumprod))
        # The posterior variance is 0 at t=0; its log takes the t=1 value there.
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))

    def scale_timesteps(self, t: Tensor) -> Tensor:
        """The timestep value the network sees: (B,) float."""
        return t.float() * (1000.0 / self.num_steps) if self.rescale_timesteps else t.float()

    def embed_z0(self, emb: Tensor, noise: Tensor) -> Tensor:
        """z_0 = Emb(w) + sqrt(1 - alpha_bar_0) * noise: the embedding with a little noise."""
        return emb + float(self.sqrt_one_minus_alphas_cumprod[0]) * noise

    def q_sample(self, z0: Tensor, t: Tensor, noise: Tensor, input_mask: Tensor) -> Tensor:
        """Sample z_t ~ q(z_t | z_0) on target positions; source positions stay exactly z_0.

        Args:
            z0: (B, L, D) clean embeddings.
            t: (B,) integer timesteps.
            noise: (B, L, D) standard normal.
            input_mask: (B, L) 1 on positions to noise, 0 on the source.
        Returns:
            (B, L, D) z_t.
        """
        z_t = (extract(self.sqrt_alphas_cumprod, t, z0.ndim) * z0
               + extract(self.sqrt_one_minus_alphas_cumprod, t, z0.ndim) * noise)
        return torch.where(input_mask.unsqueeze(-1) == 0, z0, z_t)

    def losses(self, net: Denoiser, input_ids: Tensor, input_mask: Tensor, t: Tensor, *,
               emb_noise: Tensor | None = None, noise: Tensor | None = None,
               with_nll: bool = True, absorbing: AbsorbingState | None = None
               ) -> dict[str, Tensor]:
        """DiffuSeq's three-term objective per example (docs/diffuseq.md §4), unweighted.

        Args:
            net: the denoiser.
            input_ids: (B, L) word ids of z = x ⊕ y.
            input_mask: (B, L) 1 on target positions.
            t: (B,) integer timesteps.
            emb_noise, noise: optional (B, L, D) standard normals for z_0 and z_t (drawn if None).
            with_nll: also compute "nll" (up to a quarter of the rounding term's cost).
            absorbing: DiffuSeq-v2's absorbing state: z_t is then noised around it, with its
                discrete noise (`AbsorbingState.q_sample`); the three terms are unchanged.
        Returns:
            dict of (B,) fp32 tensors: "mse", "tT", "rounding", "loss" = mse + tT + rounding, and
            with `with_nll` "nll" (masked CE of lm_head(x̂_0), logged only, no gradient).
        """
        emb = net.get_embeds(input_ids).float()                                   # (B, L, D)
        z0 = self.embed_z0(emb, torch.randn_like(emb) if emb_noise is None else emb_noise)
        noise = torch.randn_like(z0) if noise is None else noise
        z_t = (self.q_sample(z0, t, noise, input_mask) if absorbing is None
               else absorbing.q_sample(self, z0, t, noise, input_mask))
        pred_z0 = net(z_t, self.scale_timesteps(t)).float()                      # (B, L, D)
        # (release) at t == 0 the target is the noiseless embedding Emb(w), not z_0.
        mse = torch.where(t == 0, mean_flat((pred_z0 - emb) ** 2), mean_flat((pred_z0 - z0) ** 2))
        last = torch.full_like(t, self.num_steps - 1)
        t_T = mean_flat((extract(self.sqrt_alphas_cumprod, last, z0.ndim) * z0) ** 2)
        # Over all positions (release), without ever forming the (B, L, V) logits.
        rounding = vocab_nll(z0, net.lm_head.weight, net.lm_head.bias, input_ids).mean(-1)
        terms = {"mse": mse, "tT": t_T, "rounding": rounding, "loss": mse + t_T + rounding}
        if with_nll:
            with torch.no_grad():
                terms["nll"] = masked_token_nll(net, pred_z0, input_ids, input_mask)
        return terms
