"""Transformer: overfits a batch through the shared trainer, ignores padding, label smoothing and
positions behave, the cached decoder is bounded by its max_len, rebuilds from export. (Cached
decoding against the full-prefix decoder: tests/unit/test_ar_decoding.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models import transformer
from pipeline.models.ar_decoding import DecodeConfig, Search
from tests.helpers.toy_pairs import TASK, mean_loss_terms, overfit, toy_pairs

torch.set_num_threads(1)


def tiny(**kw):
    torch.manual_seed(0)
    base = dict(d_model=32, num_heads=2, ffn_dim=64, num_encoder_layers=1, num_decoder_layers=1,
                dropout=0.0, label_smoothing=0.0)
    return transformer.build(transformer.ModelConfig(**{**base, **kw}), TASK)


def test_overfits_sixteen_pairs_and_decodes_them(tmp_path):
    model, pairs, batch, before = overfit(tiny(), tmp_path, steps=80, lr=2e-2, warmup_steps=5)
    assert mean_loss_terms(model, batch)["loss"] < before["loss"] / 50
    decode = DecodeConfig(quality=Search("beam", beam_size=2)).quality_decode()
    out = model.generate(batch, [0], list(range(16)), decode)
    assert [row[0] for row in out.ids] == [list(y) for _, y in pairs]   # stops at each EOS


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_loss_ignores_padding(positions):
    model = tiny(positions=positions, label_smoothing=0.1).eval()
    batch = model.collate(toy_pairs(4))
    base = model.loss(batch)
    scrambled = {k: v.clone() for k, v in batch.items()}
    for ids, mask in (("src", "src_mask"), ("trg_in", "trg_mask"), ("trg_out", "trg_mask")):
        scrambled[ids][~scrambled[mask]] = 9
    padded = {k: torch.cat([v, torch.zeros_like(v[:, :2]) if v.dtype == torch.bool
                            else torch.full_like(v[:, :2], 7)], 1) for k, v in batch.items()}
    for other in (scrambled, padded):
        terms = model.loss(other)
        assert torch.allclose(terms["loss"], base["loss"], atol=1e-5)
        assert torch.allclose(terms["nll"], base["nll"], atol=1e-5)
    # the smoothed term is (1 - eps) * NLL + eps * mean over the vocabulary of -log p
    logp = model(batch["src"], batch["src_mask"], batch["trg_in"]).log_softmax(-1)
    per_token = 0.9 * -logp.gather(-1, batch["trg_out"][..., None])[..., 0] + 0.1 * -logp.mean(-1)
    mask = batch["trg_mask"].float()
    assert torch.allclose(base["loss"], (per_token * mask).sum(1) / mask.sum(1), atol=1e-5)


def test_positions_beyond_the_task_length_are_refused():
    model = tiny().eval()
    too_long = [(np.arange(5, 5 + TASK.seq_len + 1) % 40, np.array([5]))]
    batch = model.collate(too_long)    # collate truncates to seq_len word pieces per side
    assert batch["src"].shape[1] == TASK.seq_len + 1
    with pytest.raises(ValueError, match="positions"):
        model.embed_tokens(torch.zeros(1, TASK.seq_len + 2, dtype=torch.long))


def test_cached_decoder_holds_max_len_positions_and_no_more():
    model = tiny().eval()
    batch = model.collate(toy_pairs(2))
    tokens = torch.tensor([5, 6])
    with torch.no_grad():
        decoder = model.incremental_decoder(batch["src"], batch["src_mask"], max_len=2)
        decoder.start()
        assert decoder.step(tokens).shape == (2, TASK.vocab_size)
        with pytest.raises(ValueError, match="max_len"):
            decoder.step(tokens)
