"""GRU-attention: overfits a batch through the shared trainer, ignores padding, rebuilds from export."""

from __future__ import annotations

import torch

from pipeline.models import gru_attention
from pipeline.models.ar_decoding import DecodeConfig, Search
from tests.helpers.toy_pairs import TASK, mean_loss_terms, overfit, toy_pairs

torch.set_num_threads(1)
CFG = gru_attention.ModelConfig(embed_dim=32, hidden_dim=32, attention_dim=32, dropout=0.0)


def tiny():
    torch.manual_seed(0)
    return gru_attention.build(CFG, TASK)


def with_extra_padding(batch, extra: int = 3):
    """The same batch padded further, pad positions filled with arbitrary ids."""
    out = {}
    for key, value in batch.items():
        fill = torch.zeros_like(value[:, :1]) if value.dtype == torch.bool else torch.full_like(value[:, :1], 7)
        out[key] = torch.cat([value] + [fill] * extra, 1)
    return out


def test_overfits_sixteen_pairs_and_decodes_them(tmp_path):
    model, pairs, batch, before = overfit(tiny(), tmp_path, steps=60, lr=2e-2)
    assert mean_loss_terms(model, batch)["loss"] < before["loss"] / 50
    out = model.generate(batch, [0], list(range(16)), DecodeConfig(quality=Search("greedy")).quality_decode())
    assert [row[0] for row in out.ids] == [list(y) for _, y in pairs]   # stops at each EOS


def test_loss_ignores_padding():
    model = tiny().eval()
    batch = model.collate(toy_pairs(4))
    base = model.loss(batch)["loss"]
    scrambled = {k: v.clone() for k, v in batch.items()}
    for ids, mask in (("src", "src_mask"), ("trg_in", "trg_mask"), ("trg_out", "trg_mask")):
        scrambled[ids][~scrambled[mask]] = 9
    assert torch.allclose(model.loss(scrambled)["loss"], base, atol=1e-6)
    assert torch.allclose(model.loss(with_extra_padding(batch))["loss"], base, atol=1e-6)
