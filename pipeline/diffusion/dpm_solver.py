"""DPM-Solver++ (Lu et al., 2022): multistep, data prediction, time-uniform steps, behind the
project's sampler contract (see `pipeline.diffusion.samplers`). The solver is diffusers'
`DPMSolverMultistepScheduler` (algorithm "dpmsolver++", prediction "sample", i.e. the network's
x̂_0, solver type "midpoint"), given the model's own betas.

What the DiffuSeq-v2 release runs (docs/diffuseq-v2.md §2, its `sample_seq2seq_dpmSolver.py`):
the reference solver with `steps` network evaluations at time-uniform points from t = T-1 down
to t = 0, a discrete VP schedule from the betas, order 2 multistep (the first step first order),
and its last update landing on step 0 (z_0 is decoded, not x̂_0). diffusers' "linspace" spacing
with `final_sigmas_type="sigma_min"` is that grid: the network is evaluated at
linspace(0, T-1, steps+1) rounded, descending, without 0, and the last update lands at t = 0.
Differences from the reference solver: the points are rounded to integer timesteps (the
reference interpolates log alpha between them), and the final update is first order when
steps < 15 (reference: steps < 10).

Updates from step s to t (alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t),
lambda_t = log(alpha_t / sigma_t), h = lambda_t - lambda_s; DPM-Solver++ eqs. 8 and 9):
    order 1:  z_t = (sigma_t / sigma_s) z_s - alpha_t (e^-h - 1) x̂_0(s)            (= DDIM, eta 0)
    order 2:  D = x̂_0(s) + (x̂_0(s) - x̂_0(s')) / (2 r),  r = (lambda_s - lambda_s') / h,
              z_t = (sigma_t / sigma_s) z_s - alpha_t (e^-h - 1) D                   (s' the step before s)
"""

from __future__ import annotations

import warnings

import numpy as np
from torch import Tensor

from pipeline.diffusion.samplers import Generators, Sampler, StepOutput


class DPMSolverPlusPlusSampler(Sampler):
    """Multistep DPM-Solver++ on the release's time-uniform grid; deterministic (no noise).

    Args:
        betas: (T,) float64 schedule (the model's).
        order: 2 (release) or 1 (first order everywhere: DDIM with eta 0 on the same grid).
    """

    def __init__(self, betas: np.ndarray, order: int = 2):
        super().__init__(betas)
        if order not in (1, 2):
            raise ValueError(f"DPM-Solver++ order must be 1 or 2, got {order}")
        from diffusers import DPMSolverMultistepScheduler

        self.scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=self.num_train_steps, trained_betas=self.process.betas,
            solver_order=order, prediction_type="sample", algorithm_type="dpmsolver++",
            solver_type="midpoint", timestep_spacing="linspace", final_sigmas_type="sigma_min",
            lower_order_final=True)
        self._num_taken = 0

    def set_timesteps(self, num_steps: int) -> None:
        """num_steps network evaluations at time-uniform integer timesteps; restarts the history."""
        if not 1 <= num_steps <= self.num_train_steps // 2:
            raise ValueError(f"DPM-Solver++ steps must be in 1..{self.num_train_steps // 2} "
                             f"(T={self.num_train_steps}), got {num_steps}")
        with warnings.catch_warnings():
            # diffusers 0.42 calls np.array on a tensor, which numpy 2 flags; harmless here.
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            self.scheduler.set_timesteps(num_steps)
        self._visit(self.scheduler.timesteps.tolist())
        self._num_taken = 0

    def step(self, pred_z0: Tensor, t: int, z_t: Tensor, *, generator: Generators = None) -> StepOutput:
        """One solver update from the visited step t (generator unused: the solver is an ODE's).

        Raises:
            ValueError: t is not the next visited timestep (the history would be wrong).
        """
        self.next_timestep(t)  # validates t (and that set_timesteps was called)
        visited = self.timesteps
        if self._num_taken >= len(visited) or visited[self._num_taken] != t:
            expected = visited[self._num_taken] if self._num_taken < len(visited) else "none"
            raise ValueError(f"DPM-Solver++ is multistep: got timestep {t}, expected {expected}; "
                             "call set_timesteps(num_steps) to start a new trajectory")
        prev = self.scheduler.step(pred_z0, t, z_t).prev_sample
        self._num_taken += 1
        return StepOutput(prev, pred_z0)
