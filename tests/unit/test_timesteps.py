"""Timestep samplers: loss-aware warm-up, probabilities, weights, state in the state_dict."""

import numpy as np
import pytest
import torch

from pipeline.diffusion.timesteps import LossAwareSampler, UniformSampler, build_timestep_sampler


def _fill(sampler: LossAwareSampler, T: int, rounds: int, loss_of=lambda t: float(t + 1)):
    for _ in range(rounds):
        t = torch.arange(T)
        sampler.update(t, torch.tensor([loss_of(i) for i in range(T)]))


def test_uniform_until_every_timestep_has_ten_losses():
    T = 5
    sampler = LossAwareSampler(T)
    _fill(sampler, T, 9)
    sampler.update(torch.arange(T - 1), torch.ones(T - 1))  # last t still has only 9
    assert not sampler.is_warm()
    np.testing.assert_allclose(sampler.probabilities(), np.full(T, 1 / T))
    _, w = sampler.sample(64, "cpu", torch.Generator().manual_seed(0))
    assert torch.allclose(w, torch.ones(64))
    sampler.update(torch.tensor([T - 1]), torch.ones(1))
    assert sampler.is_warm()


def test_warm_probabilities_and_weights():
    T = 4
    sampler = LossAwareSampler(T)
    _fill(sampler, T, 10)
    sampler.update(torch.tensor([0]), torch.tensor([3.0]))  # oldest loss of t=0 shifted out
    hist = np.array([[1.0] * 9 + [3.0], [2.0] * 10, [3.0] * 10, [4.0] * 10])
    rms = np.sqrt((hist ** 2).mean(-1))
    expected = rms / rms.sum() * 0.999 + 0.001 / T
    np.testing.assert_allclose(sampler.probabilities(), expected, rtol=1e-12)
    t, w = sampler.sample(1000, "cpu", torch.Generator().manual_seed(0))
    np.testing.assert_allclose(w.numpy(), 1 / (T * expected[t.numpy()]), rtol=1e-6)
    assert torch.equal(sampler.weights(t), w)  # the weights of given timesteps are the same
    assert abs(float(w.double().mean()) - 1.0) < 0.1  # importance weights average to about 1


def test_state_survives_state_dict_round_trip():
    sampler = LossAwareSampler(3)
    _fill(sampler, 3, 10)
    fresh = LossAwareSampler(3)
    fresh.load_state_dict(sampler.state_dict())
    assert fresh.is_warm()
    np.testing.assert_allclose(fresh.probabilities(), sampler.probabilities())


def test_uniform_sampler_and_registry():
    t, w = UniformSampler(7).sample(100, "cpu", torch.Generator().manual_seed(1))
    assert t.min() >= 0 and t.max() < 7 and torch.equal(w, torch.ones(100))
    with pytest.raises(KeyError, match="loss_aware"):
        build_timestep_sampler("lossaware", 10)
