"""DiffuSeq-v2's learned soft absorbing state m and its discrete noise (Gong et al., EMNLP 2023
Findings, "DiffuSeq-v2"; docs/diffuseq-v2.md §1-2).

Forward process on target positions (source positions stay exactly z_0):
    z_t = sqrt(alpha_bar_t) (z_0 - m) + sqrt(1 - alpha_bar_t) eps + m     (Gaussian noise centred on m)
then, with discrete noise of rate r, each target position independently becomes exactly m with
probability p_t = r sqrt(1 - alpha_bar_t): one Bernoulli draw per position, all D dimensions
replaced together. In sampling, a step that adds Gaussian noise of std sigma also replaces each
target position by m with probability r sigma (the release's DDPM loop; steps that add no noise,
such as DDIM with eta 0 or DPM-Solver++, replace nothing).

Notation: m -> `mean` (the network's `mean_embed`), r -> `rate`, input_mask 1 = target position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.diffusion.process import Diffusion, extract


def uniform_rows(shape: tuple[int, ...], generators: Sequence[torch.Generator],
                 device: torch.device) -> Tensor:
    """U(0, 1) draws of shape (N, *shape[1:]), row i from generators[i] (one stream per candidate)."""
    if len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} generators for {shape[0]} rows")
    return torch.stack([torch.rand(shape[1:], generator=g, device=g.device)
                        for g in generators]).to(device)


@dataclass(frozen=True)
class AbsorbingState:
    """The absorbing state m and the discrete-noise rate r of a DiffuSeq-v2 model.

    Args:
        mean: (D,) m: the learned `mean_embed` (gradients flow into it), or zeros.
        rate: r; 0 turns the discrete noise off.
    """

    mean: Tensor
    rate: float = 0.0

    def replace(self, z: Tensor, absorbed: Tensor) -> Tensor:
        """z with every position where `absorbed` (B, L) is True set to m. z: (B, L, D)."""
        return torch.where(absorbed.unsqueeze(-1), self.mean.to(z.dtype).expand_as(z), z)

    def q_sample(self, diffusion: Diffusion, z0: Tensor, t: Tensor, noise: Tensor,
                 input_mask: Tensor, uniform: Tensor | None = None) -> Tensor:
        """Sample z_t ~ q(z_t | z_0) centred on m, with discrete noise; source positions stay z_0.

        Args:
            diffusion: the process (its schedule).
            z0: (B, L, D); t: (B,) integer timesteps; noise: (B, L, D) standard normal.
            input_mask: (B, L) 1 on target positions.
            uniform: (B, L) U(0, 1) draws deciding the discrete noise (p_t > u absorbs);
                drawn from torch's global generator when None.
        Returns:
            (B, L, D) z_t. With m = 0 and r = 0 it equals `diffusion.q_sample` bit for bit.
        """
        sqrt_one_minus = extract(diffusion.sqrt_one_minus_alphas_cumprod, t, z0.ndim)
        z_t = (extract(diffusion.sqrt_alphas_cumprod, t, z0.ndim) * (z0 - self.mean)
               + sqrt_one_minus * noise + self.mean)
        if self.rate > 0:
            if uniform is None:
                uniform = torch.rand(z0.shape[:2], device=z0.device)
            z_t = self.replace(z_t, uniform < self.rate * sqrt_one_minus.view(-1, 1))
        return torch.where(input_mask.unsqueeze(-1) == 0, z0, z_t)

    def absorb_after_step(self, z: Tensor, noise_std: float, input_mask: Tensor,
                          generators: Sequence[torch.Generator]) -> Tensor:
        """After a sampling step that added noise of std `noise_std`: each target position becomes
        m with probability r * noise_std, drawn from its row's generator (nothing is drawn when
        that probability is 0, so deterministic steps consume no randomness).

        Args:
            z: (N, L, D) the step's output; input_mask: (N, L) 1 on target positions.
            generators: one per row.
        """
        prob = self.rate * noise_std
        if prob <= 0:
            return z
        uniform = uniform_rows(tuple(input_mask.shape), generators, z.device)      # (N, L)
        return self.replace(z, (uniform < prob) & input_mask.bool())
