"""Validated reading and writing of task files: one `{"src": str, "trg": str}` object per line.

This is the format of the DiffuSeq authors' release, so their files drop in unchanged. A bad
line is either an error naming file, line and field, or (when a task says `on_bad_line: skip`)
skipped and reported.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.io import atomic_file, sha256_file

SPLITS = ("train", "valid", "test")
FIELDS = ("src", "trg")
MULTIREF_FILE = "test_multiref.jsonl"


class DataError(ValueError):
    """A task file that cannot be used; the message names the file, and the line when relevant."""


@dataclass
class PairFile:
    """The usable lines of one split file.

    pairs: {"src", "trg"} texts, in file order.
    line_numbers: 1-based line number of each pair in the file.
    skipped: "file:line: reason" of every skipped line (empty unless skipping).
    """

    pairs: list[dict[str, str]] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def split_path(folder: Path, split: str) -> Path:
    """Where a split's jsonl lives in a raw or prepared task folder."""
    return Path(folder) / f"{split}.jsonl"


def _problem(line: str) -> tuple[dict[str, str] | None, str]:
    """The validated pair of one line, or None and what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    for name in FIELDS:
        if name not in record:
            return None, f"field '{name}' is missing"
        if not isinstance(record[name], str):
            return None, f"field '{name}' must be a string, got {type(record[name]).__name__}"
        if not record[name].strip():
            return None, f"field '{name}' is empty"
    return {name: record[name] for name in FIELDS}, ""


def _decoded_lines(path: Path, name: str) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, why not) of every line, decoded as UTF-8 on its own, so an
    undecodable line is reported with its number. A UTF-8 byte-order mark is accepted (dropped);
    a UTF-16/32 file is refused as a whole (in no mode can its lines be read)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DataError(f"{name}: the file is UTF-16 (or UTF-32) encoded; save it as UTF-8")
        handle.seek(len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0)
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8"), ""
            except UnicodeDecodeError as exc:
                yield number, None, (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                     f"{exc.start + 1})")


def read_pairs(path: Path, on_bad_line: Literal["error", "skip"] = "error",
               shown_as: str | None = None) -> PairFile:
    """Read and validate every line of a split file.

    Args:
        path: a `{split}.jsonl` file (UTF-8, with or without a byte-order mark).
        on_bad_line: "error" raises DataError at the first bad line; "skip" drops and records it.
        shown_as: how messages name the file (the user's own file that `path` is a copy of).

    Returns:
        The usable pairs with their line numbers and the skipped lines.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    name = shown_as or str(path)
    result = PairFile()
    for number, line, reason in _decoded_lines(path, name):
        pair, reason = _problem(line) if line is not None else (None, reason)
        if pair is not None:
            result.pairs.append(pair)
            result.line_numbers.append(number)
        elif on_bad_line == "skip":
            result.skipped.append(f"{name}:{number}: {reason}")
        else:
            raise DataError(f"{name}:{number}: {reason}")
    return result


def write_pairs(path: Path, pairs: Iterable[dict[str, str]]) -> None:
    """Write pairs as jsonl, atomically."""
    with atomic_file(path) as handle:
        for pair in pairs:
            handle.write(json.dumps({name: pair[name] for name in FIELDS}) + "\n")


def splits_sha256(folder: Path) -> str:
    """Checksum of a task's three split files (names and contents): same data, same value."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(f"{split}.jsonl:{sha256_file(split_path(folder, split))}\n".encode())
    return digest.hexdigest()
