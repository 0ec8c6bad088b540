"""DiffuSeq-v2's absorbing state: off (or m = 0) is DiffuSeq bit for bit, the m-centred forward
process, the discrete-noise rates in training and sampling, and v2's sampling start."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from pipeline.diffusion.absorbing import AbsorbingState
from pipeline.diffusion.process import Diffusion
from pipeline.diffusion.samplers import standard_normal
from pipeline.diffusion.schedules import get_betas
from pipeline.models.base import TaskInfo, candidate_generator
from pipeline.models.diffuseq import DecodeConfig, EncoderConfig, ModelConfig, build

torch.set_num_threads(1)
TASK = TaskInfo(vocab_size=40, seq_len=16, pad_id=0, cls_id=2, sep_id=3, unk_id=1, tokenizer_dir="tok")
ENCODER = EncoderConfig(num_layers=1, num_heads=2, hidden_size=16, intermediate_size=32, max_position=32)
CFG = ModelConfig(hidden_dim=8, hidden_t_dim=8, encoder=ENCODER, diffusion_steps=20)
V2 = ModelConfig(hidden_dim=8, hidden_t_dim=8, encoder=ENCODER, diffusion_steps=20,
                 learned_mean_embed=True, discrete_noise=True, discrete_noise_rate=0.5)
PAIRS = [(np.array([5, 6, 7]), np.array([8, 9])), (np.arange(10, 20), np.arange(20, 30)),
         (np.array([11]), np.array([12, 13, 14]))]
DIFFUSION = Diffusion(get_betas("sqrt", 2000))


def _model(cfg):
    torch.manual_seed(0)
    return build(cfg, TASK)


def _loss_and_grads(model, batch):
    torch.manual_seed(5)
    terms = model.loss(batch)
    terms["loss"].mean().backward()
    grads = {n: p.grad.clone() for n, p in model.net.named_parameters() if n != "mean_embed"}
    return terms, grads


def test_zero_absorbing_state_without_discrete_noise_is_diffuseq_bit_for_bit():
    plain = _model(CFG).train()
    v2 = _model(dataclasses.replace(CFG, learned_mean_embed=True)).train()
    with torch.no_grad():
        v2.net.mean_embed.zero_()
    shared = {k: v for k, v in v2.state_dict().items() if k != "net.mean_embed"}
    assert all(torch.equal(shared[k], v) for k, v in plain.state_dict().items())  # same init
    batch = plain.collate(PAIRS)
    (terms, grads), (terms_v2, grads_v2) = _loss_and_grads(plain, batch), _loss_and_grads(v2, batch)
    assert set(terms) == set(terms_v2)
    assert all(torch.equal(terms[k], terms_v2[k]) for k in terms)
    assert all(torch.equal(grads[k], grads_v2[k]) for k in grads)
    # the forward process itself, on the real schedule
    gen = torch.Generator().manual_seed(1)
    z0, noise = torch.randn(3, 6, 4, generator=gen), torch.randn(3, 6, 4, generator=gen)
    mask, t = torch.tensor([[0, 0, 1, 1, 1, 1]] * 3), torch.tensor([1999, 700, 0])
    zero = AbsorbingState(torch.zeros(4))
    assert torch.equal(zero.q_sample(DIFFUSION, z0, t, noise, mask), DIFFUSION.q_sample(z0, t, noise, mask))


def test_forward_process_is_centred_on_the_absorbing_state():
    gen = torch.Generator().manual_seed(2)
    z0, noise, m = torch.randn(2, 5, 3, generator=gen), torch.randn(2, 5, 3, generator=gen), torch.randn(3, generator=gen)
    mask, t = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]), torch.tensor([1999, 40])
    z_t = AbsorbingState(m).q_sample(DIFFUSION, z0, t, noise, mask)
    abar = torch.from_numpy(DIFFUSION.alphas_cumprod)[t].view(-1, 1, 1)
    expected = abar.sqrt() * (z0.double() - m.double()) + (1 - abar).sqrt() * noise.double() + m.double()
    target = mask.bool()
    torch.testing.assert_close(z_t[target].double(), expected[target], rtol=1e-6, atol=1e-6)
    assert torch.equal(z_t[~target], z0[~target])
    # at t = T-1, alpha_bar ~ 2e-7: z_T is eps + m
    torch.testing.assert_close(z_t[0, 2:], noise[0, 2:] + m, rtol=0, atol=1e-3)


@pytest.mark.parametrize("t", [5, 300, 1200, 1999])
def test_discrete_noise_rate_is_r_sqrt_one_minus_alpha_bar(t):
    """Absorbed fraction of 20,000 target positions against p_t = r sqrt(1 - alpha_bar_t).

    Tolerance: 5 binomial standard deviations (a false failure would need a 5-sigma draw; the
    seeds are fixed, so the outcome is deterministic anyway)."""
    rate, batch, length, dim = 0.5, 500, 44, 3
    gen = torch.Generator().manual_seed(t)
    z0, noise = torch.randn(batch, length, dim, generator=gen), torch.randn(batch, length, dim, generator=gen)
    m = torch.randn(dim, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[:, :4] = 0                                                # 40 target positions per row
    uniform = torch.rand(batch, length, generator=gen)
    z_t = AbsorbingState(m, rate).q_sample(DIFFUSION, z0, torch.full((batch,), t), noise, mask, uniform)
    equal = z_t == m                                               # (B, L, D)
    absorbed = equal.all(-1)
    assert torch.equal(equal.any(-1), absorbed)                    # whole vectors, never parts
    assert not absorbed[:, :4].any() and torch.equal(z_t[:, :4], z0[:, :4])
    expected = rate * math.sqrt(1.0 - DIFFUSION.alphas_cumprod[t])
    n = int(mask.sum())
    observed = float(absorbed.sum()) / n
    assert abs(observed - expected) <= 5 * math.sqrt(expected * (1 - expected) / n)


def test_sampling_discrete_noise_rate_and_no_draw_without_noise():
    rate, std, rows, length = 0.5, 0.6, 400, 30
    state = AbsorbingState(torch.tensor([7.0, -7.0]), rate)
    z = torch.zeros(rows, length, 2)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[:, :10] = 0
    gens = [torch.Generator().manual_seed(i) for i in range(rows)]
    out = state.absorb_after_step(z, std, mask, gens)
    absorbed = (out == state.mean).all(-1)
    assert not absorbed[:, :10].any()
    n, expected = rows * 20, rate * std
    assert abs(float(absorbed.sum()) / n - expected) <= 5 * math.sqrt(expected * (1 - expected) / n)
    before = [g.get_state() for g in gens]
    assert state.absorb_after_step(z, 0.0, mask, gens) is z          # a deterministic step
    assert all(torch.equal(a, g.get_state()) for a, g in zip(before, gens))


@pytest.mark.parametrize(("sampler", "steps", "initial_latent", "adds_mean"), [
    ("ddpm", 20, "release", True), ("dpm_solver++", 5, "release", False),
    ("dpm_solver++", 5, "absorbing", True)])
def test_sampling_starts_at_noise_plus_absorbing_state(sampler, steps, initial_latent, adds_mean):
    model = _model(V2).eval()
    batch = model.collate(PAIRS)
    seen = []
    model.net.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    decode = DecodeConfig(sampler=sampler, steps=steps, initial_latent=initial_latent)
    model.generate(batch, [4], [0, 1, 2], decode)
    x_start = model.net.get_embeds(batch["input_ids"])
    eps = standard_normal(x_start, [candidate_generator(4, i) for i in range(3)])
    expected = eps + model.net.mean_embed if adds_mean else eps
    target = batch["input_mask"].bool()
    assert torch.equal(seen[0][target], expected[target])


def test_ddpm_sampling_absorbs_only_with_discrete_noise():
    """The release's DDPM loop: z stays exactly m at some target positions only with discrete noise."""
    counts = {}
    for noisy in (False, True):
        model = _model(dataclasses.replace(V2, discrete_noise=noisy)).eval()
        batch = model.collate(PAIRS)
        seen = []
        model.net.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
        model.generate(batch, [1, 2], [0, 1, 2], DecodeConfig(sampler="ddpm", steps=20))
        target = batch["input_mask"].bool().repeat_interleave(2, 0)
        counts[noisy] = sum(int((z == model.net.mean_embed).all(-1)[target].sum()) for z in seen[1:])
    assert counts[False] == 0 and counts[True] > 0


def test_reg_rate_adds_the_norm_of_the_absorbing_state_and_needs_it():
    model = _model(dataclasses.replace(V2, reg_rate=0.25)).train()
    terms = model.loss(model.collate(PAIRS))
    torch.testing.assert_close(terms["reg"], (0.25 * model.net.mean_embed.norm()).expand(3))
    # the timestep sampler is still uniform (weights 1): "loss" is the three terms plus reg
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["tT"] + terms["rounding"] + terms["reg"])
    with pytest.raises(ValueError, match="learned_mean_embed"):
        build(dataclasses.replace(CFG, reg_rate=0.1), TASK)
