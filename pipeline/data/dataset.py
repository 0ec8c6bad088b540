"""Reading a prepared task folder (`data/processed/<task>`), the only thing later stages depend on.

Layout written by `pipeline.data.prepare`:
    tokenizer/                    a transformers PreTrainedTokenizerFast folder
    task.json, stats.json         TaskInfo fields; counts, lengths, checksums
    {split}.jsonl                 the validated texts, {"src", "trg"} per line
    {split}.{side}.ids.npy        side in (src, trg): all word-piece ids of the split, concatenated
    {split}.{side}.offsets.npy    int64 (N+1,): example i is ids[offsets[i]:offsets[i+1]]
    test_multiref.jsonl           optional: {"index", "references"} per test line (for users;
                                  the paper's metrics use the single reference)
Ids carry no special tokens; each model family adds its own layout (e.g. DiffuSeq's x [SEP] y).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

from pipeline.data.jsonl import DataError, read_pairs, split_path
from pipeline.types import Pair, TaskInfo

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SIDES = ("src", "trg")
TOKENIZER_DIR = "tokenizer"


def array_path(processed_dir: Path, split: str, side: str, part: str) -> Path:
    """File of one ragged id array: part "ids" (flat ids) or "offsets" (N+1 boundaries)."""
    return Path(processed_dir) / f"{split}.{side}.{part}.npy"


def load_task_info(processed_dir: Path) -> TaskInfo:
    """The TaskInfo of a prepared task.

    The tokenizer folder is resolved against `processed_dir`, so a copied or moved folder
    still loads its own tokenizer.
    """
    info = json.loads((Path(processed_dir) / "task.json").read_text())
    info["tokenizer_dir"] = str(Path(processed_dir) / TOKENIZER_DIR)
    return TaskInfo(**info)


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """The task tokenizer from a prepared task folder or from its tokenizer/ folder."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if (path / TOKENIZER_DIR).is_dir():
        path = path / TOKENIZER_DIR
    if not (path / "tokenizer.json").is_file():
        raise DataError(f"{path}: no tokenizer.json (is this a prepared task folder?)")
    return PreTrainedTokenizerFast.from_pretrained(str(path))


class TokenizedSplit(Sequence[Pair]):
    """One split's (src_ids, trg_ids) pairs, memory-mapped; item i is two int64 arrays."""

    def __init__(self, processed_dir: Path, split: str):
        def load(side: str, part: str) -> np.ndarray:
            path = array_path(processed_dir, split, side, part)
            if not path.is_file():
                raise DataError(f"{path}: missing (split '{split}' not prepared?)")
            return np.load(path, mmap_mode="r")

        self._ids = {side: load(side, "ids") for side in SIDES}
        self._offsets = {side: load(side, "offsets") for side in SIDES}

    def __len__(self) -> int:
        return len(self._offsets["src"]) - 1

    @overload
    def __getitem__(self, index: int) -> Pair: ...
    @overload
    def __getitem__(self, index: slice) -> list[Pair]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a split of {len(self)} examples")
        index %= len(self)
        return tuple(self._side(side, index) for side in SIDES)

    def _side(self, side: str, index: int) -> np.ndarray:
        offsets = self._offsets[side]
        return np.asarray(self._ids[side][offsets[index]:offsets[index + 1]], dtype=np.int64)

    def lengths(self, side: str) -> np.ndarray:
        """Number of word pieces of every example on one side, (N,) int64."""
        return np.diff(np.asarray(self._offsets[side])).astype(np.int64)


def load_split(processed_dir: Path, split: str) -> TokenizedSplit:
    """The tokenized pairs of one split of a prepared task."""
    return TokenizedSplit(Path(processed_dir), split)


def read_texts(folder: Path, split: str) -> list[dict[str, str]]:
    """The {"src", "trg"} texts of a split, from a prepared or a raw task folder (validated)."""
    return read_pairs(split_path(folder, split)).pairs
