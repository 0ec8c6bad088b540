"""Quality against sampling cost: the BLEU summaries on hand-made candidate sets, and the sweep
and convergence probe on a tiny DiffuSeq-v2 over a prepared toy task."""

import pytest
import torch

from pipeline import metrics
from pipeline.data.dataset import load_task_info
from pipeline.diffusion.sweep import expand_grid, run_sweep, sampler_sweep
from pipeline.quick_eval import (decode_bleu, generate_texts, load_eval_set, mbr_bleu,
                                 single_candidate_bleu)
from pipeline.models.diffuseq import DecodeConfig, EncoderConfig, ModelConfig, build
from tests.helpers.toy_task import prepare_toy_task

torch.set_num_threads(1)


def test_single_candidate_and_mbr_bleu_on_a_consensus():
    candidates = [["how do i cook", "how do i cook", "what is a cat"], ["a b c d e", "a b c d x", "q"]]
    refs = ["how do i cook", "a b c d e"]
    all_pairs = [metrics.sentence_bleu(r, c) for r, row in zip(refs, candidates) for c in row]
    assert single_candidate_bleu(candidates, refs) == pytest.approx(sum(all_pairs) / 6)
    # MBR picks the repeated candidate for source 0 and the first of the two near-equals for 1
    assert mbr_bleu(candidates, refs) == pytest.approx((1.0 + metrics.sentence_bleu(refs[1], "a b c d e")) / 2)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    prepare_toy_task(root)
    cfg = ModelConfig(hidden_dim=8, hidden_t_dim=8, diffusion_steps=20, learned_mean_embed=True,
                      discrete_noise=True, discrete_noise_rate=0.5,
                      encoder=EncoderConfig(num_layers=1, num_heads=2, hidden_size=16,
                                            intermediate_size=32, max_position=32))
    torch.manual_seed(0)
    return build(cfg, load_task_info(root / "data")).eval(), load_eval_set(root / "data", "test", 4)


def test_sampler_sweep_records_every_point(toy):
    model, data = toy
    assert len(data.pairs) == len(data.references) == 4 and all(len(t) == 0 for _, t in data.pairs)
    grid = [{"sampler": "dpm_solver++", "steps": 3}, {"sampler": "ddim", "steps": 4, "eta": 1.0}]
    records = sampler_sweep(model, data, DecodeConfig(clamp_step=20), grid, seeds=[1, 2, 3],
                            batch_size=2, mbr_size=3)
    assert [(r["sampler"], r["steps"]) for r in records] == [("dpm_solver++", 3), ("ddim", 4)]
    candidates, _ = generate_texts(model, data, [1, 2, 3], DecodeConfig(sampler="ddim", steps=4, eta=1.0,
                                                                        clamp_step=20), 4)
    assert records[1]["bleu_single"] == single_candidate_bleu(candidates, data.references)
    assert records[1]["bleu_mbr"] == mbr_bleu(candidates, data.references)
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 and r["num_sources"] == 4 and r["mbr_size"] == 3
               for r in records)
    too_few = sampler_sweep(model, data, DecodeConfig(), [{"sampler": "dpm_solver++", "steps": 2}],
                            seeds=[1], batch_size=4)
    assert too_few[0]["bleu_mbr"] is None


def test_decode_bleu_restores_the_training_mode(toy):
    model, data = toy
    decode = DecodeConfig(sampler="dpm_solver++", steps=3)
    model.train()
    bleu = decode_bleu(model, data, decode, seeds=[5], batch_size=3)
    assert model.training
    model.eval()
    candidates, _ = generate_texts(model, data, [5], decode, 4)
    assert bleu == single_candidate_bleu(candidates, data.references)


def test_grid_lists_of_steps_expand_in_order():
    grid = [{"sampler": "ddim", "eta": 1.0, "steps": [1, 5]}, {"sampler": "ddpm", "steps": 20,
                                                               "num_sources": 2}]
    assert expand_grid(grid) == [{"sampler": "ddim", "eta": 1.0, "steps": 1},
                                 {"sampler": "ddim", "eta": 1.0, "steps": 5},
                                 {"sampler": "ddpm", "steps": 20, "num_sources": 2}]


def test_the_sweep_stage_writes_every_point_and_honours_a_points_subset(toy, tmp_path):
    import json

    model, data = toy
    data_dir = tmp_path / "toy"
    prepare_toy_task(data_dir)
    grid = [{"sampler": "ddim", "eta": 1.0, "steps": [2, 4]},
            {"sampler": "ddpm", "steps": 20, "num_sources": 2}]
    out = tmp_path / "sampler_sweep.json"
    records = run_sweep(model, DecodeConfig(record_fractions=[0.5]), data_dir / "data", grid, 3,
                        [1, 2], 4, 2, out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(records))
    assert [(r["sampler"], r["steps"], r["num_sources"]) for r in records] == [
        ("ddim", 2, 3), ("ddim", 4, 3), ("ddpm", 20, 2)]
    assert all(r["bleu_mbr"] is not None and {"wall_s", "cpu_s"} <= set(r) for r in records)
