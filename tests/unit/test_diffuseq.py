"""DiffuSeq model: layout, loss, batched generation reproducibility, anchoring, export, PLM init."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.models.base import TaskInfo
from pipeline.models.diffuseq import (DecodeConfig, EncoderConfig, ModelConfig, build, layout_example)

torch.set_num_threads(1)
TASK = TaskInfo(vocab_size=40, seq_len=16, pad_id=0, cls_id=2, sep_id=3, unk_id=1, tokenizer_dir="tok")
ENCODER = EncoderConfig(num_layers=1, num_heads=2, hidden_size=16, intermediate_size=32, max_position=32)
CFG = ModelConfig(hidden_dim=8, hidden_t_dim=8, encoder=ENCODER, diffusion_steps=20)
PAIRS = [(np.array([5, 6, 7]), np.array([8, 9])), (np.arange(10, 20), np.arange(20, 30)),
         (np.array([11]), np.array([12, 13, 14]))]


def _model(cfg=CFG):
    torch.manual_seed(0)
    return build(cfg, TASK).eval()


def test_layout_and_truncation_follow_the_release():
    ids, num_source, cut = layout_example(np.array([5, 6, 7]), np.array([8, 9]), TASK)
    assert ids == [2, 5, 6, 7, 3, 3, 2, 8, 9, 3] and num_source == 6 and not cut
    # [CLS]+10 vs [CLS]+10 > 16-3: both sides lose a piece per round until 6 + 6 <= 13
    ids, num_source, cut = layout_example(np.arange(10, 20), np.arange(20, 30), TASK)
    assert ids == [2, 10, 11, 12, 13, 14, 3, 3, 2, 20, 21, 22, 23, 24, 3] and num_source == 8 and cut
    ids, _, _ = layout_example(np.arange(10, 22), np.array([30]), TASK)  # only the longer side
    assert ids == [2, *range(10, 20), 3, 3, 2, 30, 3]
    batch = _model().collate(PAIRS[:2])
    assert batch["input_ids"][0].tolist() == [2, 5, 6, 7, 3, 3, 2, 8, 9, 3] + [0] * 6
    assert batch["input_mask"][0].tolist() == [0] * 6 + [1] * 10
    assert batch["truncated"].tolist() == [False, True]


def test_loss_terms_weights_and_all_parameters_used():
    model = _model().train()
    batch = model.collate(PAIRS)
    terms = model.loss(batch)
    assert set(terms) == {"loss", "mse", "tT", "rounding", "t"}  # "nll": validation only
    assert all(v.shape == (3,) for v in terms.values())
    assert int(model.timestep_sampler.loss_counts.sum()) == 3  # updated inside loss()
    terms["loss"].mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused  # DDP without find_unused_parameters needs every parameter in the graph
    assert "timestep_sampler.loss_history" in model.state_dict()
    with torch.no_grad():
        assert "nll" in model.eval().loss(batch)
    assert int(model.timestep_sampler.loss_counts.sum()) == 3  # not updated in eval mode


@torch.no_grad()
def test_given_timesteps_and_noise_fix_the_loss():
    model = _model()  # eval mode: no dropout
    batch = model.collate(PAIRS)
    gen = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 7, 19])
    noise = {k: torch.randn(3, TASK.seq_len, CFG.hidden_dim, generator=gen) for k in ("emb_noise", "noise")}
    first, again = (model.loss(batch, t=t, **noise) for _ in range(2))
    for name in ("loss", "mse", "tT", "rounding"):
        assert torch.equal(first[name], again[name])
    assert torch.equal(first["t"], t)
    expected = model.diffusion.losses(model.net, batch["input_ids"], batch["input_mask"], t, **noise)
    torch.testing.assert_close(first["loss"], expected["loss"] * model.timestep_sampler.weights(t))
    assert not torch.equal(model.loss(batch, t=t)["mse"], first["mse"])  # noise drawn otherwise


def test_dynamic_length_pads_to_the_longest_example_and_generates_at_seq_len():
    short = [(np.array([5, 6]), np.array([8])), (np.array([11]), np.array([12]))]
    model = _model(dataclasses.replace(CFG, dynamic_length=True))
    batch = model.collate(short)
    assert batch["input_ids"].shape == (2, 8)  # longest is 8 ids (rounded up to a multiple of 8)
    full = _model().collate(short)
    assert torch.equal(batch["input_ids"], full["input_ids"][:, :8])
    assert torch.equal(batch["input_mask"], full["input_mask"][:, :8])
    assert model.collate(PAIRS)["input_ids"].shape == (3, TASK.seq_len)  # capped at seq_len
    decode = DecodeConfig(sampler="ddim", steps=4, eta=1.0)
    assert model.generate(batch, [1], [0, 1], decode).ids == model.generate(full, [1], [0, 1], decode).ids


def test_given_initial_noise_and_the_latent_path():
    model = _model()
    batch = model.collate(PAIRS)
    decode = DecodeConfig(sampler="ddim", steps=5)  # deterministic after z_T
    drawn = model.generate(batch, [3, 4], [0, 1, 2], decode, keep_path=True)
    assert drawn.path.shape == (6, 6, TASK.seq_len, CFG.hidden_dim)  # z_T, then after each step
    # z_T on target rows is what candidate_generator(seed, source) drew: giving it changes nothing
    given = model.generate(batch, [3, 4], [0, 1, 2], decode, initial_noise=drawn.path[0])
    assert given.ids == drawn.ids and given.path is None
    is_target = batch["input_mask"].repeat_interleave(2, 0).bool()
    last = torch.full(is_target.shape, TASK.pad_id)
    last[is_target] = model.net.decode_ids(drawn.path[-1][is_target])
    assert model._regroup(last, batch["input_mask"].repeat_interleave(2, 0), 2, "first_special") == drawn.ids
    other = model.generate(batch, [3, 4], [0, 1, 2], decode, initial_noise=torch.randn(drawn.path[0].shape))
    assert other.ids != drawn.ids


def test_decoded_ids_are_the_lm_head_argmax():
    model = _model()
    hidden = torch.randn(50, CFG.hidden_dim)
    assert torch.equal(model.net.decode_ids(hidden), model.net.lm_head(hidden).argmax(-1))


V2 = dataclasses.replace(CFG, learned_mean_embed=True, discrete_noise=True, discrete_noise_rate=0.5)


@pytest.mark.parametrize(("cfg", "decode", "num_calls"), [
    (CFG, DecodeConfig(sampler="ddpm", steps=20, clamp_step=5), 20),
    (CFG, DecodeConfig(sampler="ddim", steps=6, eta=0.5), 6),
    (CFG, DecodeConfig(sampler="ddim_gap", steps=4), 4),
    (CFG, DecodeConfig(sampler="dpm_solver++", steps=5), 5),
    (V2, DecodeConfig(sampler="ddpm", steps=20, clamp_step=5), 20),
    (V2, DecodeConfig(sampler="ddim", steps=6, eta=1.0), 6),
    (V2, DecodeConfig(sampler="dpm_solver++", steps=5, solver_order=1, initial_latent="absorbing"), 5)])
def test_source_positions_stay_exact_at_every_step(cfg, decode, num_calls):
    model = _model(cfg)
    batch = model.collate(PAIRS)
    seen = []
    model.net.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    path = model.generate(batch, [0, 1], [0, 1, 2], decode, keep_path=True).path
    source = model.net.get_embeds(batch["input_ids"]).repeat_interleave(2, 0)
    is_source = (batch["input_mask"] == 0).repeat_interleave(2, 0)
    assert len(seen) == num_calls and len(path) == num_calls + 1  # one network call per step
    for z in [*seen, *path]:  # every step's input, and every latent down to the decoded one
        assert torch.equal(z[is_source], source[is_source])


def test_batched_candidates_equal_single_candidates():
    model = _model()
    decode = DecodeConfig(sampler="ddpm", steps=20, record_fractions=[0.5, 1.0])
    batch = model.collate(PAIRS)
    together = model.generate(batch, [3, 4], [10, 11, 12], decode)
    alone = model.generate(model.collate(PAIRS[1:2]), [4], [11], decode)
    assert together.ids[1][1] == alone.ids[0][0]
    assert together.trace[0.5][1][1] == alone.trace[0.5][0][0]
    assert together.ids[1][0] != together.ids[1][1] or together.ids[0][0] != together.ids[0][1]
    assert set(together.trace) == {0.5, 1.0} and together.trace[1.0] == together.ids


def test_target_ids_cut_and_strip():
    model = _model()
    ids = torch.tensor([2, 5, 3, 3, 2, 7, 8, 3, 9, 0, 6])
    mask = torch.tensor([0, 0, 0, 0] + [1] * 7)
    assert model._target_ids(ids, mask, "first_special") == [7, 8]
    assert model._target_ids(ids, mask, "strip_specials") == [7, 8, 9, 6]



def test_plm_init_from_local_bert_folder(tmp_path):
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))
    bert.save_pretrained(tmp_path)
    model = build(ModelConfig(hidden_dim=16, hidden_t_dim=8, encoder=ENCODER, diffusion_steps=20,
                              use_plm_init=True, plm_name=str(tmp_path)), TASK)
    torch.testing.assert_close(model.net.input_transformers.layer[0].output.dense.weight,
                               bert.encoder.layer[0].output.dense.weight)
    torch.testing.assert_close(model.net.word_embedding.weight, bert.embeddings.word_embeddings.weight)
    with pytest.raises(ValueError, match="num_layers"):
        build(ModelConfig(encoder=EncoderConfig(num_layers=2, num_heads=2, hidden_size=16,
                                                intermediate_size=32, max_position=32),
                          use_plm_init=True, plm_name=str(tmp_path)), TASK)
