"""Reverse-process samplers, one class per algorithm (DiffuSeq §3.3; docs/diffuseq.md §5).

Contract (after diffusers' schedulers): `set_timesteps(num_steps)` fixes the visited timesteps
(`timesteps`, descending); `step(pred_z0, t, z_t, generator=...)` turns the network's x̂_0 at the
visited step t into the next sample. `step` never loops and never calls the network; the loop,
with source anchoring and clamping, is `pipeline.models.diffuseq.DiffuSeq.generate`. Randomness
comes only from the `generator` argument: one torch.Generator, or one per row of the batch
(so that each row's noise depends on its own stream only). A multistep solver keeps its history
on the object: a trajectory starts after `set_timesteps` and visits `timesteps` in order.

Notation: alpha_bar_t -> `alphas_cumprod[t]`, x̂_0 -> `pred_z0`, z_t -> `z_t`, eps -> `eps`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from pipeline.diffusion.process import Diffusion
from pipeline.lookup import lookup

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class StepOutput:
    prev_sample: Tensor   # z at the next visited timestep, (B, L, D)
    pred_z0: Tensor       # (B, L, D)
    noise_std: float = 0.0  # std of the Gaussian noise the step added (scales v2's discrete noise)


def standard_normal(like: Tensor, generator: Generators) -> Tensor:
    """N(0, I) noise shaped like `like`, drawn from one generator or from one per row.

    Raises:
        ValueError: without a generator (every random draw must be reproducible).
    """
    if generator is None:
        raise ValueError("this sampler step is stochastic: pass a torch.Generator "
                         "(or one per row) as `generator`")
    if isinstance(generator, torch.Generator):
        noise = torch.randn(like.shape, generator=generator, device=generator.device)
    else:
        if len(generator) != len(like):
            raise ValueError(f"got {len(generator)} generators for {len(like)} rows")
        noise = torch.stack([torch.randn(like.shape[1:], generator=g, device=g.device)
                             for g in generator])
    return noise.to(device=like.device, dtype=like.dtype)


class Sampler:
    """Shared state: the schedule and the visited timesteps (set by `set_timesteps`)."""

    def __init__(self, betas: np.ndarray):
        self.process = Diffusion(betas)
        self.num_train_steps = self.process.num_steps
        self._next_of: dict[int, int] | None = None

    def _require_timesteps(self) -> dict[int, int]:
        if self._next_of is None:
            raise RuntimeError(f"{type(self).__name__}: call set_timesteps(num_steps) before "
                               "sampling")
        return self._next_of

    @property
    def timesteps(self) -> list[int]:
        """The visited timesteps, descending."""
        return list(self._require_timesteps())

    def next_timestep(self, t: int) -> int:
        """The visited timestep after t (-1 after the last one)."""
        next_of = self._require_timesteps()
        if t not in next_of:
            raise ValueError(f"{type(self).__name__}: timestep {t} is not among the visited ones "
                             "(see .timesteps)")
        return next_of[t]

    def _visit(self, timesteps: list[int]) -> None:
        self._next_of = dict(zip(timesteps, timesteps[1:] + [-1]))


class DDPMSampler(Sampler):
    """Ancestral sampling through all T steps with the posterior mean (docs/diffuseq.md §5).

    Args:
        betas: (T,) float64 schedule.
        variance: "fixed_large" (release): beta_t, except at t=0 where the posterior variance of
            t=1 is used; what the authors' sampler does (improved-diffusion's FIXED_LARGE);
            "posterior": beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), log clipped at t=0.
    """

    def __init__(self, betas: np.ndarray, variance: Literal["fixed_large", "posterior"] = "fixed_large"):
        super().__init__(betas)
        p = self.process
        log_vars = {"fixed_large": np.log(np.append(p.posterior_variance[1], p.betas[1:])),
                    "posterior": p.posterior_log_variance_clipped}
        self.std = np.exp(0.5 * lookup(log_vars, variance, "DDPM variance"))

    def set_timesteps(self, num_steps: int) -> None:
        """DDPM visits every step: num_steps must be T."""
        if num_steps != self.num_train_steps:
            raise ValueError(f"DDPM visits all {self.num_train_steps} steps, got steps={num_steps}; "
                             "use 'ddim' (respaced) or 'ddim_gap' for fewer")
        self._visit(list(range(num_steps - 1, -1, -1)))

    def step(self, pred_z0: Tensor, t: int, z_t: Tensor, *, generator: Generators = None) -> StepOutput:
        """z_{t-1} = c1_t x̂_0 + c2_t z_t + std_t eps (no noise at t = 0)."""
        self.next_timestep(t)  # validates t (and that set_timesteps was called)
        p = self.process
        mean = float(p.posterior_mean_coef1[t]) * pred_z0 + float(p.posterior_mean_coef2[t]) * z_t
        if t == 0:
            return StepOutput(mean, pred_z0)
        std = float(self.std[t])
        return StepOutput(mean + std * standard_normal(z_t, generator), pred_z0, std)


class ReleaseDDIMGapSampler(Sampler):
    """The release's "DDIM with gap" (release; docs/diffuseq.md §5), reproduced as it behaves.

    With gap g = T // num_steps it visits T-1, T-1-g, ... down to (T-1) mod g, and each update is
    deterministic DDIM (eta = 0) towards alpha_bar_{t-1}, not towards the next visited step; so
    it never reaches step 0 unless g divides T-1, and degrades with few steps. For reproduction
    only; `RespacedDDIMSampler` is the correct version.
    """

    def set_timesteps(self, num_steps: int) -> None:
        gap = self.num_train_steps // num_steps
        if gap < 1:
            raise ValueError(f"steps={num_steps} exceeds T={self.num_train_steps}")
        self._visit(list(range(self.num_train_steps - 1, -1, -gap)))

    def step(self, pred_z0: Tensor, t: int, z_t: Tensor, *, generator: Generators = None) -> StepOutput:
        """DDIM (eta = 0) update from t towards t-1 (release's use of alphas_cumprod_prev)."""
        self.next_timestep(t)  # validates t (and that set_timesteps was called)
        p = self.process
        alpha_bar, alpha_bar_prev = p.alphas_cumprod[t], p.alphas_cumprod_prev[t]
        # eps recovered from x̂_0 in the release's form: (sqrt(1/a) z_t - x̂_0) / sqrt(1/a - 1).
        eps = ((float(np.sqrt(1.0 / alpha_bar)) * z_t - pred_z0)
               / float(np.sqrt(1.0 / alpha_bar - 1.0)))
        prev = float(np.sqrt(alpha_bar_prev)) * pred_z0 + float(np.sqrt(1.0 - alpha_bar_prev)) * eps
        return StepOutput(prev, pred_z0)


class RespacedDDIMSampler(Sampler):
    """DDIM (Song et al., eq. 12) on a respaced subsequence of timesteps ending at 0.

    Args:
        betas: (T,) float64 schedule.
        eta: 0 = deterministic DDIM; 1 = the DDPM posterior variance on the visited steps.
    """

    def __init__(self, betas: np.ndarray, eta: float = 0.0):
        super().__init__(betas)
        self.eta = eta

    def set_timesteps(self, num_steps: int) -> None:
        """Visit num_steps timesteps evenly spread over [0, T-1], both ends included."""
        if not 1 <= num_steps <= self.num_train_steps:
            raise ValueError(f"steps must be in 1..{self.num_train_steps}, got {num_steps}")
        spaced = np.linspace(0, self.num_train_steps - 1, num_steps).round().astype(int)
        self._visit(sorted(set(spaced.tolist()), reverse=True))

    def step(self, pred_z0: Tensor, t: int, z_t: Tensor, *, generator: Generators = None) -> StepOutput:
        """z_s = sqrt(a_s) x̂_0 + sqrt(1 - a_s - sigma²) eps + sigma noise, s the next visited step."""
        s = self.next_timestep(t)
        a_t = self.process.alphas_cumprod[t]
        a_s = self.process.alphas_cumprod[s] if s >= 0 else 1.0
        sigma = self.eta * np.sqrt((1.0 - a_s) / (1.0 - a_t)) * np.sqrt(1.0 - a_t / a_s)
        eps = (z_t - float(np.sqrt(a_t)) * pred_z0) / float(np.sqrt(1.0 - a_t))
        prev = (float(np.sqrt(a_s)) * pred_z0
                + float(np.sqrt(max(1.0 - a_s - sigma**2, 0.0))) * eps)
        if sigma > 0:
            prev = prev + float(sigma) * standard_normal(z_t, generator)
        return StepOutput(prev, pred_z0, float(sigma))


def _ddpm(betas: np.ndarray, num_steps: int, *, ddpm_variance: str, **_: Any) -> Sampler:
    return DDPMSampler(betas, ddpm_variance)


def _respaced_ddim(betas: np.ndarray, num_steps: int, *, eta: float, **_: Any) -> Sampler:
    return RespacedDDIMSampler(betas, eta)


def _release_ddim_gap(betas: np.ndarray, num_steps: int, *, ddpm_variance: str,
                      **_: Any) -> Sampler:
    """(release) the authors' decoder switches to DDPM when asked for all T steps."""
    if num_steps == len(betas):
        return DDPMSampler(betas, ddpm_variance)
    return ReleaseDDIMGapSampler(betas)


def _dpm_solver_pp(betas: np.ndarray, num_steps: int, *, solver_order: int, **_: Any) -> Sampler:
    """DPM-Solver++ (`pipeline.diffusion.dpm_solver`), imported on first use: importing diffusers
    takes seconds, which no other sampler should pay."""
    from pipeline.diffusion.dpm_solver import DPMSolverPlusPlusSampler

    return DPMSolverPlusPlusSampler(betas, solver_order)


# name -> builder(betas, num_steps, *, eta, ddpm_variance, solver_order); each uses its options.
SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "ddpm": _ddpm,
    "ddim_gap": _release_ddim_gap,
    "ddim": _respaced_ddim,
    "dpm_solver++": _dpm_solver_pp,
}


def build_sampler(name: str, betas: np.ndarray, num_steps: int, *, eta: float = 0.0,
                  ddpm_variance: Literal["fixed_large", "posterior"] = "fixed_large",
                  solver_order: int = 2) -> Sampler:
    """The named sampler with its timesteps set; an unknown name lists the known ones."""
    sampler = lookup(SAMPLERS, name, "sampler")(betas, num_steps, eta=eta,
                                                 ddpm_variance=ddpm_variance,
                                                 solver_order=solver_order)
    sampler.set_timesteps(num_steps)
    return sampler
