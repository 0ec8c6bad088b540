"""Noise schedules: beta_i for i = 0..T-1, as pure float64 numpy (DiffuSeq §3; docs/diffuseq.md §3).

A continuous schedule gives alpha_bar(s) for s in [0, 1]; it is discretised as
beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999), so that
alphas_cumprod[i] = prod_{k<=i} (1 - beta_k) follows alpha_bar(s) up to the clipping. Adapted from
improved-diffusion's `get_named_beta_schedule`; `sqrt` is DiffuSeq's own schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipeline.lookup import lookup

MAX_BETA = 0.999


def sqrt_alpha_bar(s: float) -> float:
    """DiffuSeq's sqrt schedule: alpha_bar(s) = 1 - sqrt(s + 1e-4)."""
    return 1.0 - math.sqrt(s + 1e-4)


def cosine_alpha_bar(s: float) -> float:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(s) = cos((s + 0.008) / 1.008 * pi / 2)^2."""
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def betas_from_alpha_bar(num_steps: int, alpha_bar: Callable[[float], float],
                         max_beta: float = MAX_BETA) -> np.ndarray:
    """Discretise a continuous alpha_bar(s) into num_steps betas, each clipped at max_beta.

    Returns:
        (T,) float64 betas.
    """
    return np.array([min(1.0 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                     for i in range(num_steps)], dtype=np.float64)


def sqrt_betas(num_steps: int) -> np.ndarray:
    """Betas of the sqrt schedule (DiffuSeq). Its alpha_bar(1) < 0, so the last beta is clipped."""
    return betas_from_alpha_bar(num_steps, sqrt_alpha_bar)


def cosine_betas(num_steps: int) -> np.ndarray:
    """Betas of the cosine schedule."""
    return betas_from_alpha_bar(num_steps, cosine_alpha_bar)


def linear_betas(num_steps: int) -> np.ndarray:
    """Ho et al.'s linear schedule, rescaled so that any T spans the same total noise as T=1000."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)


SCHEDULES: dict[str, Callable[[int], np.ndarray]] = {
    "sqrt": sqrt_betas,
    "linear": linear_betas,
    "cosine": cosine_betas,
}


def get_betas(name: str, num_steps: int) -> np.ndarray:
    """The (T,) float64 betas of a named schedule; an unknown name lists the known ones."""
    return lookup(SCHEDULES, name, "noise schedule")(num_steps)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """alpha_bar_i = prod_{k<=i} (1 - beta_k), in float64. Returns (T,)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
