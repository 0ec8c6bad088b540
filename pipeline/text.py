"""Text normalisation shared by every system's output writer and by the evaluation.

docs/metrics.md, "Text normalisation": a hypothesis made of the task tokenizer's ids is exactly that
tokenizer's decode of them with the `[CLS]`, `[SEP]`, `[PAD]` strings removed and surrounding
whitespace stripped (the authors' text). References, and outputs of systems with their own tokenizer
(GPT-2's BPE, T5), go through the task tokenizer's tokenize -> decode round trip, so every system is
scored on text of the same form. `output_text` is the one function every output writer uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# The strings the authors' evaluation deletes from decoded text (BERT's sos/eos/sep/pad).
SPECIAL_STRINGS = ("[CLS]", "[SEP]", "[PAD]")


def remove_special_strings(text: str, extra: Iterable[str] = ()) -> str:
    """Delete the special-token strings from `text`, then strip surrounding whitespace.

    Inner whitespace is kept as it is (the authors' Len column counts it; see `metrics.authors_len`).
    """
    for token in (*SPECIAL_STRINGS, *extra):
        text = text.replace(token, "")
    return text.strip()


def _tokenizer_specials(tokenizer: Any) -> list[str]:
    """The tokenizer's own boundary/padding strings (e.g. GPT-2's `<|endoftext|>`)."""
    names = ("cls_token", "sep_token", "pad_token", "bos_token", "eos_token")
    return [str(tok) for tok in (getattr(tokenizer, n, None) for n in names) if tok]


def decode_ids(tokenizer: Any, ids: Sequence[int]) -> str:
    """Decode word-piece ids to the text that is written and scored.

    Args:
        tokenizer: any transformers tokenizer.
        ids: word-piece ids, (L,); special tokens may be present (they are removed).

    Returns:
        The decoded text without `[CLS]`/`[SEP]`/`[PAD]` (or the tokenizer's equivalents), stripped.
    """
    text = tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)
    return remove_special_strings(text, _tokenizer_specials(tokenizer))


def normalize(tokenizer: Any, text: str) -> str:
    """The tokenize -> decode round trip applied to references (and any plain-text output).

    Args:
        tokenizer: the task's tokenizer (any transformers tokenizer).
        text: raw text, e.g. a target of `test.jsonl`.

    Returns:
        `decode_ids(tokenizer, tokenize(text))`: lower-cased, word pieces re-joined, unknown
        words as the tokenizer's unknown token, exactly as a model's output would read.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return decode_ids(tokenizer, ids)


def output_text(tokenizer: Any, ids: Sequence[int], task_tokenizer: Any | None = None) -> str:
    """The text written for a model's output ids.

    The task tokenizer's ids are only decoded: a second round trip would not be idempotent (an
    orphan `##s` piece becomes `# # s`, `[unused3]` becomes `[ unused3 ]`), and the authors' text
    is the plain decode.

    Args:
        tokenizer: the tokenizer of `ids` (the model's).
        ids: word-piece ids, (L,).
        task_tokenizer: the task's tokenizer when it is not `tokenizer` (GPT-2's BPE, T5); None
            when the ids are the task tokenizer's.

    Returns:
        `decode_ids(tokenizer, ids)`, then `normalize`d with `task_tokenizer` when one is given.
    """
    text = decode_ids(tokenizer, ids)
    return text if task_tokenizer is None else normalize(task_tokenizer, text)
