"""The forward process and DiffuSeq's loss against a hand computation on a tiny batch."""

import math

import torch

from pipeline.diffusion.process import Diffusion
from pipeline.diffusion.schedules import get_betas
from pipeline.models.diffuseq import EncoderConfig, ModelConfig, TransformerNet

torch.set_num_threads(1)
T = 10


def _net() -> TransformerNet:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_dim=4, hidden_t_dim=8, diffusion_steps=T,
                      encoder=EncoderConfig(num_layers=1, num_heads=2, hidden_size=8,
                                            intermediate_size=16, max_position=16))
    return TransformerNet(cfg, vocab_size=11).eval()


def test_q_sample_keeps_source_bit_exact():
    diffusion = Diffusion(get_betas("sqrt", 2000))
    gen = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(3, 6, 4, generator=gen), torch.randn(3, 6, 4, generator=gen)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1]])
    z_t = diffusion.q_sample(z0, torch.tensor([1999, 5, 0]), noise, mask)
    source = (mask == 0).unsqueeze(-1).expand_as(z0)
    assert torch.equal(z_t[source], z0[source])
    assert not torch.allclose(z_t[~source], z0[~source])
    # t = 0 is close to the identity (sqrt(1 - alpha_bar_0) ~ 0.12 at T=2000) but not equal to it.
    assert torch.allclose(z_t[2], z0[2], atol=0.6) and not torch.equal(z_t[2], z0[2])


def test_loss_terms_match_hand_computation():
    net, diffusion = _net(), Diffusion(get_betas("sqrt", T))
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    t = torch.tensor([0, 7])
    n1, n2 = torch.randn(2, 6, 4, generator=gen), torch.randn(2, 6, 4, generator=gen)
    with torch.no_grad():
        terms = diffusion.losses(net, ids, mask, t, emb_noise=n1, noise=n2)
        abar = diffusion.alphas_cumprod
        emb = net.word_embedding.weight[ids]
        z0 = emb + math.sqrt(1 - abar[0]) * n1
        expected = {}
        for b, step in enumerate(t.tolist()):
            noisy = math.sqrt(abar[step]) * z0[b] + math.sqrt(1 - abar[step]) * n2[b]
            z_t = torch.where(mask[b, :, None] == 1, noisy, z0[b])
            pred = net(z_t[None], torch.tensor([step * 1000.0 / T]))[0]
            target = emb[b] if step == 0 else z0[b]
            logp = torch.log_softmax(z0[b] @ net.word_embedding.weight.T + net.lm_head.bias, -1)
            logp_hat = torch.log_softmax(pred @ net.word_embedding.weight.T + net.lm_head.bias, -1)
            nll_hat = -logp_hat[torch.arange(6), ids[b]]
            expected.setdefault("mse", []).append(((pred - target) ** 2).mean())
            expected.setdefault("tT", []).append((abar[-1] * z0[b] ** 2).mean())
            expected.setdefault("rounding", []).append(-logp[torch.arange(6), ids[b]].mean())
            expected.setdefault("nll", []).append((nll_hat * mask[b]).sum() / mask[b].sum())
    for name, values in expected.items():
        torch.testing.assert_close(terms[name], torch.stack(values).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["tT"] + terms["rounding"])


def test_loss_under_bf16_autocast_stays_fp32():
    net, diffusion = _net(), Diffusion(get_betas("sqrt", T))
    ids = torch.randint(0, 11, (2, 6))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = diffusion.losses(net, ids, mask, torch.tensor([2, 9]))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in terms.values())


def test_nll_is_optional_and_the_other_terms_do_not_depend_on_it():
    net, diffusion = _net(), Diffusion(get_betas("sqrt", T))
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 11, (2, 6), generator=gen)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    noises = dict(emb_noise=torch.randn(2, 6, 4, generator=gen), noise=torch.randn(2, 6, 4, generator=gen))
    with torch.no_grad():
        full = diffusion.losses(net, ids, mask, torch.tensor([3, 8]), **noises)
        lean = diffusion.losses(net, ids, mask, torch.tensor([3, 8]), with_nll=False, **noises)
    assert set(full) - set(lean) == {"nll"}
    for name, value in lean.items():
        assert torch.equal(value, full[name])
