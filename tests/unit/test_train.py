"""The shared trainer: exact resume after a kill, batch semantics, schedule, EMA, logging, NaN stop."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import safetensors.torch
import torch

from pipeline import checkpoint
from pipeline.config import TrainConfig
from pipeline.data.dataset import load_task_info
from pipeline.models.registry import load_model
from pipeline.train import DataOrder, accumulation_steps, fit, lr_factor, train_system
from tests.helpers import tiny_model
from tests.helpers.tiny_model import TOY_TASK, ModelConfig, build
from tests.helpers.tiny_model import toy_pairs as make_pairs
from tests.helpers.toy_task import prepare_toy_task, toy_config

torch.set_num_threads(1)


def tiny(**kw):
    torch.manual_seed(0)
    return build(ModelConfig(**kw), TOY_TASK)


def train_cfg(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=4, micro_batch=2, lr=1e-2, warmup_steps=2, grad_clip=1.0,
                ema_rate=0.9, checkpoint_every=3, eval_every=4, eval_batches=2, seed=5)
    return TrainConfig(**{**base, **kw})


class Killed(Exception):
    pass


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _killed_at_7(state_dir, train, valid, cfg, **fit_options) -> None:
    def kill_at_7(step, **_):
        if step == 7:
            raise Killed
    with pytest.raises(Killed):
        fit(tiny(), train, valid, cfg, state_dir, log=kill_at_7, progress=False, **fit_options)


def _whole_and_killed_at_7(tmp_path):
    """A whole run in tmp_path/a, and the same run killed at step 7 in tmp_path/b."""
    train, valid, cfg = make_pairs(10), make_pairs(4, seed=1), train_cfg()
    whole = fit(tiny(), train, valid, cfg, tmp_path / "a", progress=False)
    _killed_at_7(tmp_path / "b", train, valid, cfg)
    return whole, (train, valid, cfg)


def test_resume_after_kill_gives_identical_parameters(tmp_path):
    whole, (train, valid, cfg) = _whole_and_killed_at_7(tmp_path)
    assert checkpoint.latest_state(tmp_path / "b").name == "step-00000006"
    resumed = fit(tiny(), train, valid, cfg, tmp_path / "b", progress=False)
    for name, value in params(whole).items():
        assert torch.equal(value, params(resumed)[name]), name
    # The states hold the raw weights; the returned model carries the EMA ones.
    raw = safetensors.torch.load_file(tmp_path / "b" / "step-00000008" / "model.safetensors")
    assert not torch.equal(raw["head.weight"], resumed.head.weight)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["step-00000006", "step-00000008"]


@pytest.mark.parametrize("damaged", ["model.safetensors", "state.pt"])
def test_an_unreadable_newest_state_falls_back_to_the_one_before(tmp_path, caplog, damaged):
    caplog.set_level(logging.INFO, logger="pipeline.train")
    whole, (train, valid, cfg) = _whole_and_killed_at_7(tmp_path)
    (tmp_path / "b/step-00000006" / damaged).write_bytes(b"truncated")   # a full disk, say
    resumed = fit(tiny(), train, valid, cfg, tmp_path / "b", progress=False)
    assert "step-00000006 is unreadable" in caplog.text and "resumed from" in caplog.text
    assert "step-00000003 (step 3)" in caplog.text
    assert all(torch.equal(v, params(resumed)[k]) for k, v in params(whole).items())

    for state in checkpoint.states(tmp_path / "b"):
        (state / "state.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no readable training state .* delete it"):
        fit(tiny(), train, valid, cfg, tmp_path / "b", progress=False)


def test_accumulation_equals_one_big_batch(tmp_path):
    train = make_pairs(12)
    accumulated = fit(tiny(), train, None, train_cfg(micro_batch=1, ema_rate=None), tmp_path / "a",
                      progress=False)
    whole = fit(tiny(), train, None, train_cfg(micro_batch=4, ema_rate=None), tmp_path / "b",
                progress=False)
    for name, value in params(whole).items():
        torch.testing.assert_close(params(accumulated)[name], value, rtol=1e-5, atol=1e-6)


def test_training_lowers_the_loss_and_logs_every_term(tmp_path):
    logged: list[dict] = []
    cfg = train_cfg(steps=40, batch_size=8, micro_batch=4, lr=3e-2, warmup_steps=0, eval_every=20,
                    checkpoint_every=100, ema_rate=None)
    fit(tiny(hidden=16, num_timesteps=4), make_pairs(32), make_pairs(8, 1), cfg, tmp_path,
        log=lambda **m: logged.append(m), progress=False)
    train_logs = [m for m in logged if "loss" in m]
    assert {"lr", "grad_norm", "tokens_per_s", "first_token"} <= set(train_logs[0])
    assert {f"loss_q{q}" for q in range(4)} <= set().union(*train_logs)
    assert np.mean([m["loss"] for m in train_logs[-5:]]) < 0.7 * train_logs[0]["loss"]
    assert [m["step"] for m in logged if "valid_loss" in m] == [20, 40]
    assert train_logs[-1]["lr"] == pytest.approx(3e-2 / 40)


def test_validation_is_deterministic_and_leaves_training_unchanged(tmp_path):
    logs_a: list[dict] = []
    logs_b: list[dict] = []
    fit(tiny(), make_pairs(10), make_pairs(4, 1), train_cfg(eval_every=1), tmp_path / "a",
        log=lambda **m: logs_a.append(m), progress=False)
    fit(tiny(), make_pairs(10), None, train_cfg(), tmp_path / "b",
        log=lambda **m: logs_b.append(m), progress=False)
    assert [m["loss"] for m in logs_a if "loss" in m] == [m["loss"] for m in logs_b]
    assert len([m for m in logs_a if "valid_loss" in m]) == 8


def test_non_finite_loss_stops_and_keeps_last_good_state(tmp_path):
    model = tiny()

    def poison(step, **_):
        if step == 3:
            with torch.no_grad():
                model.embed.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 4"):
        fit(model, make_pairs(10), None, train_cfg(checkpoint_every=2), tmp_path, log=poison,
            progress=False)
    last = checkpoint.latest_state(tmp_path)
    assert last.name == "step-00000002"
    weights = safetensors.torch.load_file(last / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_bf16_autocast_trains(tmp_path):
    logged: list[dict] = []
    fit(tiny(), make_pairs(10), None, train_cfg(precision="bf16", steps=3), tmp_path,
        log=lambda **m: logged.append(m), progress=False)
    assert all(np.isfinite(m["loss"]) for m in logged)


def test_batch_size_must_split_into_micro_batches():
    with pytest.raises(ValueError, match="batch_size=6.*micro_batch=4 x processes=1"):
        accumulation_steps(train_cfg(batch_size=6, micro_batch=4), 1)
    assert accumulation_steps(train_cfg(batch_size=8, micro_batch=2), 2) == 2


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = train_cfg(steps=10, warmup_steps=2)
    assert [lr_factor(s, cfg) for s in range(4)] == [0.5, 1.0, 1.0, 0.875]
    assert lr_factor(9, cfg) == pytest.approx(0.125)
    assert lr_factor(9, dataclasses.replace(cfg, lr_schedule="constant")) == 1.0


def test_data_order_reshuffles_each_epoch_deterministically():
    order = DataOrder(5, seed=3)
    stream = order.take(0, 15)
    epochs = stream.reshape(3, 5)
    assert all(sorted(e) == list(range(5)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(DataOrder(5, seed=3).take(7, 6), stream[7:13])
    assert not np.array_equal(DataOrder(5, seed=4).take(0, 15), stream)


def test_train_stage_writes_a_loadable_model_folder(tmp_path, monkeypatch):
    tiny_model.register(monkeypatch)
    task = prepare_toy_task(tmp_path)
    cfg = toy_config(task, [0], train=train_cfg(steps=4, checkpoint_every=2))
    logged: list[dict] = []
    train_system(cfg, "toy", "tiny", tmp_path / "data", tmp_path / "model", tmp_path / "state",
                 log=lambda **m: logged.append(m))
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["family"] == "tiny" and saved["step"] == 4
    assert saved["provenance"]["training_state"].endswith("step-00000004")
    model = load_model(tmp_path / "model")
    assert model.embed.num_embeddings == load_task_info(tmp_path / "data").vocab_size
    assert logged[-1]["num_parameters"] == checkpoint.num_parameters(model)
    assert [m["step"] for m in logged if "loss" in m] == [1, 2, 3, 4]
    # A rerun finds the finished state, trains nothing and writes the same weights.
    first = (tmp_path / "model" / "model.safetensors").read_bytes()
    train_system(cfg, "toy", "tiny", tmp_path / "data", tmp_path / "model", tmp_path / "state")
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == first


def test_a_probe_records_each_validation_step_survives_a_resume_and_changes_nothing(tmp_path):
    from pipeline.train import Probe

    def score(model):
        return float(model.head.weight.detach().abs().mean())   # deterministic in the weights

    whole, (train, valid, cfg) = _whole_and_killed_at_7(tmp_path)
    probe = Probe(score)
    probed = fit(tiny(), train, valid, cfg, tmp_path / "c", progress=False, probe=probe)
    assert all(torch.equal(v, params(probed)[k]) for k, v in params(whole).items())
    assert [r["step"] for r in probe.records] == [4, 8]          # eval_every 4 of 8 steps
    seconds = [r["train_s"] for r in probe.records]
    assert seconds == sorted(seconds)

    _killed_at_7(tmp_path / "d", train, valid, cfg, probe=Probe(score))
    resumed = Probe(score)                       # killed at 7: resumes from the state of step 6
    fit(tiny(), train, valid, cfg, tmp_path / "d", progress=False, probe=resumed)
    assert [r["step"] for r in resumed.records] == [4, 8]
    assert [r["bleu"] for r in resumed.records] == [r["bleu"] for r in probe.records]
