"""Model folders (safetensors + config.json) and resumable training states."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from pipeline import checkpoint
from pipeline.models.registry import load_model
from tests.helpers import tiny_model
from tests.helpers.tiny_model import TOY_TASK, ModelConfig, build, toy_pairs

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def tiny_family(monkeypatch):
    tiny_model.register(monkeypatch)


def test_model_folder_round_trip_keeps_weights_ties_and_outputs(tmp_path):
    torch.manual_seed(0)
    model = build(ModelConfig(tie_embeddings=True), TOY_TASK).eval()
    checkpoint.save_model(model, model.export_config(), tmp_path / "model", "tiny",
                          extra={"step": 7, "task": "toy"})
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["family"] == "tiny" and config["step"] == 7
    assert config["provenance"]["task"] == "toy"
    loaded = load_model(tmp_path / "model")
    assert loaded.head.weight is loaded.embed.weight
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    batch = model.collate(toy_pairs(3))
    decode = tiny_model.DecodeConfig()
    assert (model.generate(batch, [0, 1], [0, 1, 2], decode).ids
            == loaded.generate(batch, [0, 1], [0, 1, 2], decode).ids)


def test_load_model_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)


def test_rng_states_round_trip():
    state = checkpoint.capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(2))
    checkpoint.restore_rng(state)
    second = (random.random(), np.random.rand(), torch.rand(2))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_training_states_keep_the_newest_two_and_restore_the_optimizer(tmp_path):
    model = build(ModelConfig(), TOY_TASK)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.loss(model.collate(toy_pairs(2)))["loss"].mean().backward()
    optimizer.step()
    (tmp_path / ".step-00000009.tmp-x").mkdir()  # debris of a killed write: never a state
    for step in (1, 2, 3):
        checkpoint.save_state(tmp_path, step=step, model=model, optimizer=optimizer, ema=None,
                              position=4 * step, rng=[checkpoint.capture_rng()])
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000003"]
    latest = checkpoint.latest_state(tmp_path)
    assert latest.name == "step-00000003"

    fresh = build(ModelConfig(), TOY_TASK)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state = checkpoint.load_state(latest, fresh, fresh_opt)
    assert state["step"] == 3 and state["position"] == 12 and state["ema"] is None
    assert torch.equal(fresh.head.weight, model.head.weight)
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], exp_avg)


def test_state_dir_is_kept_for_the_same_job_and_cleared_for_another(tmp_path):
    from pipeline.checkpoint import claim_state_dir

    state = tmp_path / "train_state"
    assert not claim_state_dir(state, "job-a")
    (state / "step-00000010").mkdir()
    assert not claim_state_dir(state, "job-a")  # a rerun after a kill resumes
    assert (state / "step-00000010").is_dir()
    assert claim_state_dir(state, "job-b")      # other parameters, data or code: start afresh
    assert not (state / "step-00000010").exists()
    assert (state / "fingerprint.txt").read_text().strip() == "job-b"
