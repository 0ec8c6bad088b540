"""The contract of a model family, checked once for every registered family.

Each family is built from its system block in params/tiny.yaml (so a new family is covered as soon
as it has one there) on the 40-id toy task, and must: rebuild from its saved folder with the same
outputs, give a candidate that does not depend on the other sources of its batch (nor on their
padding), reproduce its candidates from the same seeds, and, where its loss is deterministic in
eval mode, give per-example losses that do not depend on the batch's padding.
"""

from __future__ import annotations

import pytest
import torch

from pipeline import checkpoint
from pipeline.config import load_config
from pipeline.models.registry import family_names, get_family, load_model, system_configs
from tests.helpers.toy_pairs import TASK, toy_pairs

torch.set_num_threads(1)
TINY = load_config("params/tiny.yaml")
SYSTEM_OF = {block.family: name for name, block in TINY.systems.items()}
PAIRS = toy_pairs(5, seed=3)


def test_every_registered_family_has_a_tiny_system():
    assert sorted(SYSTEM_OF) == family_names()


def _build(name: str):
    system = SYSTEM_OF[name]
    model_cfg, decode = system_configs(TINY.systems[system], f"systems.{system}")
    torch.manual_seed(0)
    model = get_family(name).build(model_cfg, TASK)
    model.use_training_data(toy_pairs(12, seed=9))
    return model.eval(), decode


def _generate(model, decode, pairs, seeds, indices):
    return model.generate(model.collate(list(pairs)), seeds, indices, decode)


@pytest.fixture(params=family_names())
def family(request):
    return request.param


def test_saved_folder_rebuilds_the_same_model(family, tmp_path):
    if not get_family(family).trains:
        pytest.skip(f"{family} has no model to save")
    model, decode = _build(family)
    checkpoint.save_model(model, model.export_config(), tmp_path / "model", family)
    rebuilt = load_model(tmp_path / "model")
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in model.state_dict().items())
    batch = model.collate(PAIRS)
    torch.manual_seed(3)
    expected = model.loss(batch)["loss"]
    torch.manual_seed(3)
    assert torch.equal(rebuilt.loss(batch)["loss"], expected)
    indices = list(range(len(PAIRS)))
    assert _generate(rebuilt, decode, PAIRS, [1, 2], indices).ids == \
        _generate(model, decode, PAIRS, [1, 2], indices).ids


def test_a_candidate_does_not_depend_on_its_batch(family):
    model, decode = _build(family)
    together = _generate(model, decode, PAIRS, [5, 6], [20, 21, 22, 23, 24])
    for i in (0, 3):
        alone = _generate(model, decode, PAIRS[i:i + 1], [6], [20 + i])
        assert alone.ids[0][0] == together.ids[i][1]
        assert {f: rows[0][0] for f, rows in alone.trace.items()} == \
            {f: rows[i][1] for f, rows in together.trace.items()}


def test_candidates_are_reproducible_from_their_seeds(family):
    model, decode = _build(family)
    first = _generate(model, decode, PAIRS, [7, 8], [0, 1, 2, 3, 4])
    again = _generate(model, decode, PAIRS, [7, 8], [0, 1, 2, 3, 4])
    assert first.ids == again.ids and first.trace == again.trace
    assert all(isinstance(t, int) for row in first.ids for c in row for t in c)


def test_per_example_loss_ignores_the_padding_of_its_batch(family):
    if not get_family(family).trains:
        pytest.skip(f"{family} is not trained")
    model, _ = _build(family)
    short = sorted(PAIRS, key=lambda p: len(p[0]) + len(p[1]))[:2]
    long = (torch.arange(5, 5 + TASK.seq_len).numpy(), torch.arange(6, 6 + TASK.seq_len).numpy())
    losses = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        losses.append(model.loss(model.collate(short))["loss"])
    if not torch.equal(*losses):
        pytest.skip(f"{family}'s loss draws noise per batch (checked by its own tests)")
    padded = model.loss(model.collate([*short, long]))["loss"][:len(short)]
    assert torch.allclose(padded, losses[0], atol=1e-5, rtol=1e-5)
