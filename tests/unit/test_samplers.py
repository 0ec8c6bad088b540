"""Reverse samplers: the shared contract, DDIM vs DDPM, the release's gap schedule, and
DPM-Solver++ against DDIM and against its own update formulas."""

import numpy as np
import pytest
import torch

from pipeline.diffusion.dpm_solver import DPMSolverPlusPlusSampler
from pipeline.diffusion.process import Diffusion
from pipeline.diffusion.samplers import (SAMPLERS, DDPMSampler, ReleaseDDIMGapSampler,
                                         RespacedDDIMSampler, build_sampler)
from pipeline.diffusion.schedules import get_betas

T = 20
BETAS = get_betas("sqrt", T)
# Each registered sampler's class and options, unset (the registry's builders set timesteps).
UNSET = {"ddpm": (DDPMSampler, {}), "ddim_gap": (ReleaseDDIMGapSampler, {}),
         "ddim": (RespacedDDIMSampler, {"eta": 1.0}),
         "dpm_solver++": (DPMSolverPlusPlusSampler, {"order": 2})}


def _tensors(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)


DETERMINISTIC = {"ddim_gap", "dpm_solver++"}


def _run(sampler, pred_z0, z, seed, skip_last=False, num_steps=None):
    """Walk the visited steps with a fixed x̂_0 (from set_timesteps(num_steps) when given, as a
    multistep solver needs for each new trajectory); returns the last sample."""
    if num_steps is not None:
        sampler.set_timesteps(num_steps)
    gens = [torch.Generator().manual_seed(seed + row) for row in range(len(z))]
    for t in sampler.timesteps[:-1] if skip_last else sampler.timesteps:
        out = sampler.step(pred_z0, t, z, generator=gens)
        assert out.prev_sample.shape == z.shape and out.pred_z0 is pred_z0
        z = out.prev_sample
    return z


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_contract(name):
    cls, kwargs = UNSET[name]
    sampler = cls(BETAS, **kwargs)
    pred_z0, z = _tensors()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sampler.step(pred_z0, T - 1, z)
    num_steps = T if name == "ddpm" else 5
    sampler.set_timesteps(num_steps)
    assert sampler.timesteps == sorted(sampler.timesteps, reverse=True)
    # the last step lands on x̂_0 for DDPM/DDIM, so compare the samples just before it
    first, again, other = (_run(sampler, pred_z0, z, s, skip_last=True, num_steps=num_steps)
                           for s in (0, 0, 100))
    assert torch.equal(first, again)
    if name not in DETERMINISTIC:
        assert not torch.equal(first, other)
    with pytest.raises(ValueError, match="not among"):
        sampler.step(pred_z0, T + 5, z)


def test_ddim_eta_one_with_all_steps_is_ddpm_with_posterior_variance():
    pred_z0, z = _tensors(1)
    ddim, ddpm = RespacedDDIMSampler(BETAS, eta=1.0), DDPMSampler(BETAS, variance="posterior")
    ddim.set_timesteps(T)
    ddpm.set_timesteps(T)
    assert ddim.timesteps == ddpm.timesteps == list(range(T - 1, -1, -1))
    for t in (T - 1, 7, 1, 0):
        a = ddim.step(pred_z0, t, z, generator=torch.Generator().manual_seed(t)).prev_sample
        b = ddpm.step(pred_z0, t, z, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ddim_eta_zero_all_steps_equals_gap_one_and_ends_at_x0():
    pred_z0, z = _tensors(2)
    ddim, gap = RespacedDDIMSampler(BETAS), ReleaseDDIMGapSampler(BETAS)
    ddim.set_timesteps(T)
    gap.set_timesteps(T)
    torch.testing.assert_close(_run(ddim, pred_z0, z, 0), _run(gap, pred_z0, z, 0))
    ddim.set_timesteps(4)
    assert ddim.timesteps[-1] == 0
    torch.testing.assert_close(_run(ddim, pred_z0, z, 0), pred_z0)  # lands exactly on x̂_0


def test_gap_sampler_visits_the_release_timesteps():
    sampler = ReleaseDDIMGapSampler(get_betas("sqrt", 2000))
    sampler.set_timesteps(100)
    assert sampler.timesteps == list(range(1999, -1, -20))
    assert len(sampler.timesteps) == 100 and sampler.timesteps[-1] == 19  # never reaches 0
    # each update goes towards alpha_bar_{t-1}, not alpha_bar_{t-20}
    pred_z0, z = _tensors(3)
    abar = Diffusion(get_betas("sqrt", 2000)).alphas_cumprod
    eps = (z - np.sqrt(abar[1999]) * pred_z0) / np.sqrt(1 - abar[1999])
    expected = np.sqrt(abar[1998]) * pred_z0 + np.sqrt(1 - abar[1998]) * eps
    torch.testing.assert_close(sampler.step(pred_z0, 1999, z).prev_sample, expected.float(),
                               rtol=1e-4, atol=1e-4)


def test_ddpm_fixed_large_variance_and_release_switch():
    ddpm = build_sampler("ddim_gap", BETAS, T)  # (release) steps == T means DDPM
    assert isinstance(ddpm, DDPMSampler)
    pred_z0, z = _tensors(4)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(9))
    out = ddpm.step(pred_z0, 5, z, generator=torch.Generator().manual_seed(9)).prev_sample
    d = Diffusion(BETAS)
    mean = d.posterior_mean_coef1[5] * pred_z0 + d.posterior_mean_coef2[5] * z
    torch.testing.assert_close(out, (mean + np.sqrt(BETAS[5]) * noise).float())
    torch.testing.assert_close(ddpm.step(pred_z0, 0, z).prev_sample, pred_z0)  # no noise at 0
    with pytest.raises(ValueError, match="ddim"):
        build_sampler("ddpm", BETAS, 5)


@pytest.mark.parametrize(("name", "steps"), [("ddpm", T), ("ddim", 5), ("ddim_gap", 5)])
def test_registry_builds_the_named_sampler_with_its_options(name, steps):
    sampler = build_sampler(name, BETAS, steps, eta=0.5, ddpm_variance="posterior")
    assert type(sampler) is UNSET[name][0] and len(sampler.timesteps) == steps
    if name == "ddim":
        assert sampler.eta == 0.5
    if name == "ddpm":  # the posterior variance, not the release's fixed_large one
        expected = np.exp(0.5 * Diffusion(BETAS).posterior_log_variance_clipped)
        np.testing.assert_allclose(sampler.std, expected)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown sampler 'dpm' \(known: \['ddim', 'ddim_gap', 'ddpm', 'dpm_solver\+\+'\]\)"):
        build_sampler("dpm", BETAS, 5)
    with pytest.raises(KeyError, match="unknown DDPM variance 'large'"):
        DDPMSampler(BETAS, "large")


def _walk_with_predictions(sampler, z, predictions):
    """Step through the visited timesteps with a different x̂_0 at each; returns every sample."""
    samples = []
    for t, pred_z0 in zip(sampler.timesteps, predictions):
        z = sampler.step(pred_z0, t, z).prev_sample
        samples.append(z)
    return samples


def test_dpm_solver_order_one_equals_ddim_eta_zero_on_the_same_steps():
    betas = get_betas("sqrt", 2000)
    dpm, ddim = DPMSolverPlusPlusSampler(betas, order=1), RespacedDDIMSampler(betas, eta=0.0)
    dpm.set_timesteps(10)
    ddim.set_timesteps(11)
    # the release's time-uniform grid: evaluations at 1999, 1799, ..., 200; the last update lands at 0
    assert dpm.timesteps == ddim.timesteps[:-1] and ddim.timesteps[-1] == 0
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(3, 5, 4, generator=gen)
    predictions = [torch.randn(3, 5, 4, generator=gen) for _ in range(10)]
    for a, b in zip(_walk_with_predictions(dpm, z, predictions), _walk_with_predictions(ddim, z, predictions)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _dpm_solver_pp_2m(alphas_cumprod, timesteps, z, predictions):
    """Multistep DPM-Solver++(2M) in float64 from the paper's formulas (module docstring of
    pipeline.diffusion.dpm_solver): first step and last step first order, the others second."""
    grid = list(timesteps) + [0]
    alpha = {t: np.sqrt(alphas_cumprod[t]) for t in grid}
    sigma = {t: np.sqrt(1.0 - alphas_cumprod[t]) for t in grid}
    lam = {t: np.log(alpha[t] / sigma[t]) for t in grid}
    z, samples = z.double(), []
    for k, (s, t) in enumerate(zip(grid[:-1], grid[1:])):
        h = lam[t] - lam[s]
        data = predictions[k].double()
        if 0 < k < len(timesteps) - 1:
            r = (lam[s] - lam[grid[k - 1]]) / h
            data = data + (data - predictions[k - 1].double()) / (2 * r)
        z = sigma[t] / sigma[s] * z - alpha[t] * np.expm1(-h) * data
        samples.append(z)
    return samples


def test_dpm_solver_second_order_follows_the_solver_formulas():
    betas = get_betas("sqrt", 2000)
    sampler = DPMSolverPlusPlusSampler(betas)
    sampler.set_timesteps(6)
    gen = torch.Generator().manual_seed(6)
    z = torch.randn(2, 5, 4, generator=gen)
    predictions = [torch.randn(2, 5, 4, generator=gen) for _ in range(6)]
    expected = _dpm_solver_pp_2m(Diffusion(betas).alphas_cumprod, sampler.timesteps, z, predictions)
    for got, want in zip(_walk_with_predictions(sampler, z, predictions), expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_dpm_solver_steps_in_order_only():
    sampler = build_sampler("dpm_solver++", BETAS, 4)
    pred_z0, z = _tensors(7)
    first, second = sampler.timesteps[:2]
    with pytest.raises(ValueError, match="multistep"):
        sampler.step(pred_z0, second, z)
    sampler.step(pred_z0, first, z)
    with pytest.raises(ValueError, match="multistep"):
        sampler.step(pred_z0, first, z)
    with pytest.raises(ValueError, match="steps must be"):
        sampler.set_timesteps(T)
