"""Reading a prepared task folder: tokenized splits, task info, tokenizer, texts, multirefs."""

import json
import shutil

import numpy as np
import pytest

from pipeline.config import GeneratorConfig, SourceConfig, TaskConfig, TokenizerConfig
from pipeline.data.dataset import load_split, load_task_info, load_tokenizer, read_texts
from pipeline.data.jsonl import DataError
from pipeline.data.prepare import prepare_task
from pipeline.data.synthetic import generate_task


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_task(root / "raw", GeneratorConfig(seed=5, num_train=120, num_valid=8, num_test=10))
    task = TaskConfig(source=SourceConfig(kind="builtin", uri="minipara"),
                      tokenizer=TokenizerConfig(kind="wordpiece", vocab_size=200), seq_len=32,
                      systems=[])
    prepare_task("minipara", task, root / "raw", root / "processed")
    return root


def test_tokenized_split_is_a_sequence_of_int64_pairs(prepared):
    split = load_split(prepared / "processed", "test")
    assert len(split) == 10
    src, trg = split[-1]
    assert src.dtype == trg.dtype == np.int64 and len(src) > 0 and len(trg) > 0
    assert [s.tolist() for s, _ in split[8:]] == [split[8][0].tolist(), src.tolist()]
    assert split.lengths("src").tolist() == [len(s) for s, _ in split]
    with pytest.raises(IndexError):
        split[10]
    with pytest.raises(DataError, match="split 'dev' not prepared"):
        load_split(prepared / "processed", "dev")


def test_texts_are_the_same_from_raw_and_prepared_folders(prepared):
    raw = read_texts(prepared / "raw", "valid")
    assert raw == read_texts(prepared / "processed", "valid")
    assert len(raw) == 8 and set(raw[0]) == {"src", "trg"}


def test_moved_folder_still_finds_its_tokenizer(prepared, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(prepared / "processed", moved)
    info = load_task_info(moved)
    assert info.tokenizer_dir == str(moved / "tokenizer")
    tokenizer = load_tokenizer(info.tokenizer_dir)
    assert len(tokenizer) == info.vocab_size == 200
    assert load_tokenizer(moved).get_vocab() == tokenizer.get_vocab()
    with pytest.raises(DataError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_multirefs_list_the_test_target_first(prepared):
    lines = (prepared / "processed" / "test_multiref.jsonl").read_text().splitlines()
    refs = [json.loads(line) for line in lines]
    texts = read_texts(prepared / "processed", "test")
    assert [r["index"] for r in refs] == list(range(10))
    assert all(r["references"][0] == t["trg"] for r, t in zip(refs, texts))
