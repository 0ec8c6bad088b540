"""Noise schedules: the sqrt schedule against hand-computed values, and basic properties."""

import math

import numpy as np
import pytest

from pipeline.diffusion.schedules import SCHEDULES, alphas_cumprod, get_betas


def test_sqrt_schedule_ends_and_beta_bounds():
    T = 2000
    betas = get_betas("sqrt", T)
    abar = alphas_cumprod(betas)
    # with f(s) = 1 - sqrt(s + 1e-4), the spec's alpha_bar(s): alpha_bar_0 = 1 - beta_0 = f(1/T) / f(0)
    assert abar[0] == pytest.approx((1 - math.sqrt(1 / T + 1e-4)) / (1 - math.sqrt(1e-4)), rel=1e-12)
    # The product telescopes to f((T-1)/T) / f(0) before the last step; f(1) < 0, so the last
    # beta is clipped at 0.999 and alpha_bar_{T-1} = 0.001 * f((T-1)/T) / f(0).
    assert betas[-1] == 0.999
    expected_last = 0.001 * (1 - math.sqrt((T - 1) / T + 1e-4)) / (1 - math.sqrt(1e-4))
    assert abar[-1] == pytest.approx(expected_last, rel=1e-9)
    assert betas.dtype == np.float64
    assert (betas > 0).all() and (betas <= 0.999).all()
    assert betas[0] == pytest.approx(1 - (1 - math.sqrt(1 / T + 1e-4)) / 0.99, rel=1e-12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_alphas_cumprod_decreasing_in_unit_interval(name):
    abar = alphas_cumprod(get_betas(name, 100))
    assert (np.diff(abar) < 0).all()
    assert ((abar > 0) & (abar < 1)).all()


def test_unknown_schedule_lists_known():
    with pytest.raises(KeyError, match="sqrt"):
        get_betas("quadratic", 10)
