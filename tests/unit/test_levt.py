"""NAR-LevT: imitation training overfits a batch, refinement decoding terminates within its
budget, never emits a placeholder or exceeds max_len, and candidates are reproducible."""

from __future__ import annotations

import torch

from pipeline.models import levt
from tests.helpers.toy_pairs import TASK, overfit, toy_pairs

torch.set_num_threads(1)
SPECIALS = {TASK.pad_id, TASK.cls_id, TASK.sep_id}


def tiny(**kw) -> levt.LevenshteinTransformer:
    torch.manual_seed(0)
    base = dict(d_model=64, num_heads=2, ffn_dim=128, num_encoder_layers=1, num_decoder_layers=1,
                dropout=0.0, label_smoothing=0.0, max_insertions=8)
    return levt.build(levt.ModelConfig(**{**base, **kw}), TASK)


def count_decoder_calls(model: levt.LevenshteinTransformer) -> list[int]:
    calls = [0]
    model.decoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_overfits_sixteen_pairs_and_stops_refining(tmp_path):
    model, pairs, batch, before = overfit(tiny(), tmp_path, steps=300, lr=3e-3, warmup_steps=10)
    with torch.no_grad():
        terms = model.loss(batch)
    assert set(terms) == {"loss", "insertion", "token", "deletion"}
    assert terms["loss"].shape == (16,) and float(terms["loss"].mean()) < before["loss"] / 10
    calls = count_decoder_calls(model)
    decode = levt.DecodeConfig(max_iterations=10).quality_decode()
    out = model.generate(batch, [0], list(range(16)), decode)
    exact = sum(row[0] == list(y) for row, (_, y) in zip(out.ids, pairs))
    assert exact >= 14
    assert calls[0] < 3 * decode.max_iterations  # stopped once the outputs no longer changed


def test_decoding_terminates_and_respects_the_canvas_rules():
    model = tiny(max_len=5, max_insertions=8).eval()  # untrained: it over-inserts at random
    calls = count_decoder_calls(model)
    batch = model.collate(toy_pairs(6))
    decode = levt.DecodeConfig(sampling="both", temperature=2.0, max_iterations=4,
                               record_fractions=[0.0, 0.5, 1.0])
    out = model.generate(batch, [1, 2, 3], list(range(6)), decode)
    assert calls[0] <= 3 * decode.max_iterations
    candidates = [c for row in out.ids for c in row]
    assert len(candidates) == 18 and any(candidates)
    assert all(len(c) <= 5 for c in candidates)
    assert all(0 <= t < TASK.vocab_size and t not in SPECIALS for c in candidates for t in c)
    assert sorted(out.trace) == [0.0, 0.5, 1.0]
    assert all(c == [] for row in out.trace[0.0] for c in row)
    assert out.trace[1.0] == out.ids



def test_clip_counts_caps_the_canvas_length():
    model = tiny(max_len=6)
    assert model._clip_counts([3, 0, 4, 2], num_tokens=2) == [3, 0, 1, 0]
    assert model._clip_counts([1, 1], num_tokens=6) == [0, 0]
