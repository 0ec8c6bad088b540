"""The `prepare` stage: validate raw splits, build the tokenizer, tokenize once, record statistics.

Input: `data/raw/<task>/{train,valid,test}.jsonl`. Output: the prepared folder described in
`pipeline.data.dataset`, written atomically (no partial folder on any failure).

Tokenizers: `wordpiece` trains a BERT-style uncased WordPiece on the train split only (the
embedded tasks); `pretrained` copies a hub or local tokenizer (paper: bert-base-uncased).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.config import TaskConfig, TokenizerConfig
from pipeline.data.dataset import SIDES, TOKENIZER_DIR, array_path
from pipeline.data.jsonl import (MULTIREF_FILE, SPLITS, DataError, PairFile, read_pairs,
                                 split_path, splits_sha256, write_pairs)
from pipeline.data.quality import duplicates_and_overlaps, log_report, seq_len_keeping
from pipeline.data.wordpiece import PREFIX, learn_vocab
from pipeline.io import atomic_dir, atomic_file, write_json
from pipeline.lookup import lookup
from pipeline.types import TaskInfo

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]"}  # in id order: [PAD] is 0
TOKENIZE_CHUNK = 50_000  # texts per tokenizer call: bounds memory on million-line splits
MAX_SKIPPED_LISTED = 100
# DiffuSeq's joint layout [CLS] x [SEP] [SEP] [CLS] y [SEP] adds 5 specials (docs/diffuseq.md §1).
LAYOUT_SPECIALS = 5


def train_wordpiece(cfg: TokenizerConfig, texts: list[str]):
    """A BERT-style WordPiece tokenizer whose vocabulary is learned from `texts`, deterministically.

    Args:
        cfg: vocab_size and lowercase are used.
        texts: training sentences (the train split's sources and targets).

    Returns:
        A transformers PreTrainedTokenizerFast with [PAD]=0 [UNK] [CLS] [SEP] [MASK].
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=cfg.lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    # BERT's normalizer and pre-tokenizer act within whitespace-separated chunks, so each distinct
    # chunk is processed once (a large speed-up over per-text calls).
    for chunk, count in Counter(c for text in texts for c in text.split()).items():
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(chunk)):
            counts[word] += count
    vocab = learn_vocab(counts, cfg.vocab_size, SPECIAL_TOKENS.values())
    tokenizer = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)},
                                           unk_token="[UNK]", continuing_subword_prefix=PREFIX))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(t, vocab.index(t)) for t in ("[CLS]", "[SEP]")])
    # No clean-up of spaces before punctuation: decoding then inverts encoding exactly for
    # lowercase, space-tokenized text (the embedded task and the release's files).
    tokenizer.decoder = decoders.WordPiece(prefix=PREFIX, cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False,
                                   **SPECIAL_TOKENS)


def load_pretrained(cfg: TokenizerConfig, texts: list[str]):
    """A pretrained fast tokenizer from a hub id or a local folder in the hub's format.

    Args:
        cfg: `name` is the hub id or folder.
        texts: unused (nothing is trained); kept so that every kind has one signature.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not cfg.name:
        raise DataError("tokenizer.kind 'pretrained' needs tokenizer.name (a hub id or folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.name)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load tokenizer '{cfg.name}': {exc}") from exc
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise DataError(f"tokenizer '{cfg.name}' has no fast (tokenizers) version")
    missing = [name for name in ("pad_token", "unk_token", "cls_token", "sep_token")
               if getattr(tokenizer, name) is None]
    if missing:
        raise DataError(f"tokenizer '{cfg.name}' lacks {missing} (the sequence layout needs them)")
    return tokenizer


TOKENIZERS = {"wordpiece": train_wordpiece, "pretrained": load_pretrained}


def build_tokenizer(cfg: TokenizerConfig, train_pairs: list[dict[str, str]]):
    """The task tokenizer of `cfg.kind`; an unknown kind is an error listing the known ones."""
    return lookup(TOKENIZERS, cfg.kind, "tokenizer kind", DataError)(cfg, [p[side] for p in train_pairs for side in SIDES])


def _chunks(texts: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        yield texts[start:start + TOKENIZE_CHUNK]


def tokenize_ragged(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word-piece ids of every text, without specials, as (flat ids, (N+1,) int64 offsets)."""
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    parts, lengths = [], []
    for chunk in _chunks(texts):
        encoded = tokenizer(chunk, add_special_tokens=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)["input_ids"]
        parts.extend(np.asarray(ids, dtype=dtype) for ids in encoded)
        lengths.extend(len(ids) for ids in encoded)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return flat, offsets


def _length_stats(lengths: np.ndarray) -> dict:
    """Mean, max and histogram (counts[k] = examples of k word pieces) of one side's lengths."""
    return {"mean": round(float(lengths.mean()), 3) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
            "histogram": np.bincount(lengths).tolist()}


def _split_stats(offsets: dict[str, np.ndarray], pair_file: PairFile, seq_len: int) -> dict:
    lengths = {side: np.diff(offsets[side]) for side in SIDES}
    joint = lengths["src"] + lengths["trg"] + LAYOUT_SPECIALS
    return {"count": len(pair_file.pairs),
            "skipped": len(pair_file.skipped),
            "truncated": int((joint > seq_len).sum()),
            "seq_len_keeping_99pct": seq_len_keeping(joint),
            "length": {side: _length_stats(lengths[side]) for side in SIDES}}


def _write_split(tmp: Path, split: str, pair_file: PairFile, tokenizer, seq_len: int) -> dict:
    """Write a split's texts and id arrays into the prepared folder; return its statistics."""
    write_pairs(split_path(tmp, split), pair_file.pairs)
    offsets = {}
    for side in SIDES:
        ids, offsets[side] = tokenize_ragged(tokenizer, [p[side] for p in pair_file.pairs])
        np.save(array_path(tmp, split, side, "ids"), ids)
        np.save(array_path(tmp, split, side, "offsets"), offsets[side])
    return _split_stats(offsets, pair_file, seq_len)


def _copy_multirefs(raw_dir: Path, tmp: Path, test: PairFile) -> bool:
    """Copy test_multiref.jsonl, renumbered to the kept test lines; False when there is none."""
    source = raw_dir / MULTIREF_FILE
    if not source.is_file():
        return False
    lines = source.read_text(encoding="utf-8").splitlines()
    if len(lines) < max(test.line_numbers, default=0):
        raise DataError(f"{source}: {len(lines)} lines, fewer than the test split's")
    with atomic_file(tmp / MULTIREF_FILE) as handle:
        for index, number in enumerate(test.line_numbers):
            references = json.loads(lines[number - 1])["references"]
            handle.write(json.dumps({"index": index, "references": references}) + "\n")
    return True


def _origins(raw_dir: Path) -> dict[str, str]:
    """The user's name of each raw split file (recorded by download), for messages."""
    source = raw_dir / "source.json"
    origins = json.loads(source.read_text()).get("origins", {}) if source.is_file() else {}
    return {split: origins.get(split_path(raw_dir, split).name, str(split_path(raw_dir, split)))
            for split in SPLITS}


def _read_raw(raw_dir: Path, on_bad_line: str) -> dict[str, PairFile]:
    """Every split's usable lines; bad lines are named in the user's own file."""
    origins = _origins(raw_dir)
    files = {split: read_pairs(split_path(raw_dir, split), on_bad_line, origins[split])
             for split in SPLITS}
    for split, pair_file in files.items():
        if not pair_file.pairs:
            raise DataError(f"{origins[split]}: no usable line")
    return files


def prepare_task(name: str, task: TaskConfig, raw_dir: Path, out_dir: Path) -> dict:
    """Validate, tokenize and describe one task (the `prepare` stage).

    Args:
        name: task name (recorded in stats.json).
        task: the task's parameters (tokenizer, seq_len, on_bad_line).
        raw_dir: folder with train/valid/test.jsonl (and optionally test_multiref.jsonl).
        out_dir: the prepared folder to (re)create, e.g. data/processed/<task>.

    Returns:
        The statistics written to out_dir/stats.json.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    files = _read_raw(raw_dir, task.on_bad_line)
    tokenizer = build_tokenizer(task.tokenizer, files["train"].pairs)
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        splits = {split: _write_split(tmp, split, files[split], tokenizer, task.seq_len)
                  for split in SPLITS}
        info = TaskInfo(vocab_size=len(tokenizer), seq_len=task.seq_len,
                        pad_id=tokenizer.pad_token_id, cls_id=tokenizer.cls_token_id,
                        sep_id=tokenizer.sep_token_id, unk_id=tokenizer.unk_token_id,
                        tokenizer_dir=str(out_dir / TOKENIZER_DIR))
        write_json(tmp / "task.json", dataclasses.asdict(info))
        skipped = [line for split in SPLITS for line in files[split].skipped]
        stats = {"task": name, "splits": splits, "vocab_size": len(tokenizer),
                 "word_vocab_size": len({w for p in files["train"].pairs
                                         for side in SIDES for w in p[side].lower().split()}),
                 "tokenizer": {"kind": task.tokenizer.kind, "name": task.tokenizer.name},
                 "raw_sha256": splits_sha256(raw_dir), "seq_len": task.seq_len,
                 "skipped": {"count": len(skipped), "lines": skipped[:MAX_SKIPPED_LISTED]},
                 "has_multirefs": _copy_multirefs(raw_dir, tmp, files["test"]),
                 **duplicates_and_overlaps(files)}
        write_json(tmp / "stats.json", stats)
    log_report(name, files, splits, task.seq_len, stats)
    log.info("prepared %s: %s", name, {s: v["count"] for s, v in splits.items()})
    return stats
