"""Training-time samplers of the timestep t, with importance weights (DiffuSeq §4; docs/diffuseq.md §4).

After improved-diffusion's `resample.py`: `uniform` draws t uniformly; `loss_aware` (its
"second-moment resampler") keeps the last 10 losses of every t and, once each t has 10, draws t
with probability p_t ∝ sqrt(mean(loss_t²)) mixed with 0.1% uniform; the returned weights
1 / (T p_t) keep the objective unbiased. State lives in buffers, so it is saved in the model's
state_dict and restored on resume; under torch.distributed every rank records the (t, loss) pairs
of all ranks, so every rank's history (hence its distribution) is identical.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from pipeline.lookup import lookup


class TimestepSampler(Protocol):
    """Draws training timesteps and their importance weights."""

    def sample(self, batch_size: int, device: torch.device | str,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]: ...

    def weights(self, t: Tensor) -> Tensor: ...

    def update(self, t: Tensor, losses: Tensor) -> None: ...


def _weights(probs: np.ndarray, t: Tensor) -> Tensor:
    """Importance weights 1 / (T p_t) of timesteps t (B,): (B,) float32 on t's device."""
    p = torch.from_numpy(probs)[t.cpu()]
    return (1.0 / (len(probs) * p)).float().to(t.device)


def _draw(probs: np.ndarray, batch_size: int, device: torch.device | str,
          generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Draw t ~ probs and return (t (B,) long, weights 1 / (T p_t) (B,) float32)."""
    t = torch.multinomial(torch.from_numpy(probs), batch_size, replacement=True, generator=generator)
    return t.to(device), _weights(probs, t).to(device)


class UniformSampler(nn.Module):
    """t ~ Uniform{0..T-1}, all weights 1."""

    def __init__(self, num_steps: int):
        super().__init__()
        self.num_steps = num_steps

    def probabilities(self) -> np.ndarray:
        return np.full(self.num_steps, 1.0 / self.num_steps)

    def sample(self, batch_size: int, device: torch.device | str,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return _draw(self.probabilities(), batch_size, device, generator)

    def weights(self, t: Tensor) -> Tensor:
        return _weights(self.probabilities(), t)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Nothing to learn."""


class LossAwareSampler(nn.Module):
    """Importance sampling of t by the second moment of its recent losses.

    Args:
        num_steps: T.
        history: losses kept per timestep (10).
        uniform_prob: mass mixed in uniformly once warm (0.001).
    """

    def __init__(self, num_steps: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__()
        self.num_steps = num_steps
        self.uniform_prob = uniform_prob
        self.register_buffer("loss_history", torch.zeros(num_steps, history, dtype=torch.float64))
        self.register_buffer("loss_counts", torch.zeros(num_steps, dtype=torch.long))

    def is_warm(self) -> bool:
        """True once every timestep has a full history."""
        return bool((self.loss_counts == self.loss_history.shape[1]).all())

    def probabilities(self) -> np.ndarray:
        """(T,) float64 p_t: uniform until warm, then ∝ sqrt(mean loss²) with uniform_prob mixed in."""
        if not self.is_warm():
            return np.full(self.num_steps, 1.0 / self.num_steps)
        rms = np.sqrt(np.mean(self.loss_history.cpu().numpy() ** 2, axis=-1))
        return rms / rms.sum() * (1.0 - self.uniform_prob) + self.uniform_prob / self.num_steps

    def sample(self, batch_size: int, device: torch.device | str,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return _draw(self.probabilities(), batch_size, device, generator)

    def weights(self, t: Tensor) -> Tensor:
        """Importance weights 1 / (T p_t) of given timesteps t (B,) under the current p."""
        return _weights(self.probabilities(), t)

    @torch.no_grad()
    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record the unweighted per-example losses of this step (of all ranks when distributed).

        Args:
            t: (B,) timesteps; losses: (B,) their losses.
        """
        t, losses = gather_from_ranks(t.detach(), losses.detach().double())
        history = self.loss_history.cpu().numpy().copy()
        counts = self.loss_counts.cpu().numpy().copy()
        size = history.shape[1]
        for step, loss in zip(t.tolist(), losses.tolist()):
            if counts[step] == size:  # full: drop the oldest
                history[step, :-1] = history[step, 1:]
                history[step, -1] = loss
            else:
                history[step, counts[step]] = loss
                counts[step] += 1
        self.loss_history.copy_(torch.from_numpy(history))
        self.loss_counts.copy_(torch.from_numpy(counts))


def gather_from_ranks(t: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' (t, loss) pairs, in rank order; the local ones when not distributed.

    Batch sizes may differ between ranks (a last partial batch), so sizes are gathered first and
    every rank pads to the largest.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t, losses
    world = dist.get_world_size()
    size = torch.tensor([len(t)], device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(2, longest, dtype=torch.float64, device=t.device)
    padded[0, :len(t)] = t.double()
    padded[1, :len(t)] = losses
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    pairs = torch.cat([g[:, :int(s.item())] for g, s in zip(gathered, sizes)], dim=1)
    return pairs[0].long(), pairs[1]


TIMESTEP_SAMPLERS: dict[str, type[nn.Module]] = {
    "uniform": UniformSampler,
    "loss_aware": LossAwareSampler,
}


def build_timestep_sampler(name: str, num_steps: int) -> nn.Module:
    """The named timestep sampler for T = num_steps; an unknown name lists the known ones."""
    return lookup(TIMESTEP_SAMPLERS, name, "timestep sampler")(num_steps)
