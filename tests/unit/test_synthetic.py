"""The embedded `minipara` task: determinism, several valid targets per source, sizes."""

import json
import re

import pytest

from pipeline.config import GeneratorConfig
from pipeline.data.synthetic import INTENTS, SLOTS, SYNONYMS, Question, generate_task

SMALL = GeneratorConfig(seed=3, num_train=400, num_valid=30, num_test=40)
FILES = ("train.jsonl", "valid.jsonl", "test.jsonl", "test_multiref.jsonl")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("minipara")
    generate_task(out, SMALL)
    return out


def test_same_seed_gives_identical_files_and_other_seed_differs(task_dir, tmp_path):
    generate_task(tmp_path / "again", SMALL)
    generate_task(tmp_path / "other", GeneratorConfig(seed=4, num_train=400, num_valid=30,
                                                      num_test=40))
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (task_dir / name).read_bytes()
    other = (tmp_path / "other" / "train.jsonl").read_bytes()
    assert other != (task_dir / "train.jsonl").read_bytes()


def test_split_sizes_and_held_out_sources(task_dir):
    sizes = {name: len(_lines(task_dir / f"{name}.jsonl")) for name in ("train", "valid", "test")}
    assert sizes == {"train": 400, "valid": 30, "test": 40}
    train_sources = {p["src"] for p in _lines(task_dir / "train.jsonl")}
    assert not train_sources & {p["src"] for p in _lines(task_dir / "test.jsonl")}


def test_every_test_source_has_several_valid_references(task_dir):
    test = _lines(task_dir / "test.jsonl")
    multirefs = _lines(task_dir / "test_multiref.jsonl")
    assert [m["index"] for m in multirefs] == list(range(len(test)))
    for pair, multi in zip(test, multirefs):
        refs = multi["references"]
        assert refs[0] == pair["trg"]
        assert 2 <= len(set(refs)) == len(refs) <= 8
        assert pair["src"] not in refs


def test_targets_differ_from_sources_mostly_by_template(task_dir):
    pairs = _lines(task_dir / "train.jsonl")
    assert all(p["src"] != p["trg"] for p in pairs)
    # A different template almost always changes the first three words.
    differ = sum(p["src"].split()[:3] != p["trg"].split()[:3] for p in pairs)
    assert differ / len(pairs) > 0.6


def test_all_realisations_within_5_to_25_words():
    for intent, (_, slots, _) in enumerate(INTENTS):
        for pick in (min, max):
            fillers = {n: pick(SLOTS[c], key=lambda v: len(v.split())) for n, c in slots.items()}
            for _, text in Question(intent, fillers).realisations():
                assert 5 <= len(text.split()) <= 25, text


def test_vocabulary_is_a_few_hundred_words(task_dir):
    grammar = {w for values in list(SLOTS.values()) + list(SYNONYMS.values()) for v in values
               for w in v.split()}
    grammar |= {w for _, _, templates in INTENTS for t in templates
                for w in re.sub(r"\{\w+\}|\[\w+\]", " ", t).split()}
    assert 200 <= len(grammar) <= 800
    used = {w for p in _lines(task_dir / "train.jsonl") for s in p.values() for w in s.split()}
    assert used <= grammar and len(used) > 0.8 * len(grammar)
    assert len(INTENTS) >= 24
