"""What a researcher must know about a task's data before trusting numbers on it: lines skipped,
pairs cut at seq_len, duplicate pairs, and test or validation examples also seen in training.

`prepare` writes these into stats.json and says them in its log, with a warning where they can
change a table (more than `WARN_FRACTION` of a split truncated, any overlap with training).
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np

from pipeline.data.jsonl import PairFile

log = logging.getLogger(__name__)

WARN_FRACTION = 0.01    # truncation above this share of a split is a warning
KEEP_FRACTION = 0.99    # the suggested seq_len keeps this share of a split whole
LISTED_SKIPS = 20       # skipped lines named in the log (all are counted)


def seq_len_keeping(joint_lengths: np.ndarray, fraction: float = KEEP_FRACTION) -> int:
    """The smallest seq_len under which `fraction` of the examples are not truncated."""
    if not len(joint_lengths):
        return 0
    return int(np.sort(joint_lengths)[max(0, math.ceil(fraction * len(joint_lengths)) - 1)])


def _pairs(pair_file: PairFile) -> list[tuple[str, str]]:
    return [(p["src"], p["trg"]) for p in pair_file.pairs]


def duplicates_and_overlaps(files: dict[str, PairFile]) -> dict:
    """Exact duplicates within each split, and exact overlaps of valid/test with train (whole
    pairs, and sources alone)."""
    train_pairs = set(_pairs(files["train"]))
    train_sources = {src for src, _ in train_pairs}
    report: dict = {"duplicate_pairs": {}, "overlap_with_train": {}}
    for split, pair_file in files.items():
        counts = Counter(_pairs(pair_file))
        report["duplicate_pairs"][split] = sum(n - 1 for n in counts.values())
        if split != "train":
            pairs = _pairs(pair_file)
            report["overlap_with_train"][split] = {
                "pairs": sum(pair in train_pairs for pair in pairs),
                "sources": sum(src in train_sources for src, _ in pairs)}
    return report


def log_report(task: str, files: dict[str, PairFile], splits: dict, seq_len: int,
               checks: dict) -> None:
    """Say what prepare found, with warnings where it can change the numbers."""
    for split, stats in splits.items():
        log.info("%s %s: %d pairs kept, %d skipped, %d truncated at seq_len %d", task, split,
                 stats["count"], stats["skipped"], stats["truncated"], seq_len)
        if stats["count"] and stats["truncated"] / stats["count"] > WARN_FRACTION:
            log.warning("%s %s: %.1f %% of the pairs are longer than seq_len %d and are cut; "
                        "seq_len %d would keep %d %% whole", task, split,
                        100 * stats["truncated"] / stats["count"], seq_len,
                        stats["seq_len_keeping_99pct"], round(100 * KEEP_FRACTION))
    skipped = [line for pair_file in files.values() for line in pair_file.skipped]
    for line in skipped[:LISTED_SKIPS]:
        log.warning("skipped %s", line)
    if len(skipped) > LISTED_SKIPS:
        log.warning("... and %d more skipped lines (all listed in stats.json up to its limit)",
                    len(skipped) - LISTED_SKIPS)
    for split, count in checks["duplicate_pairs"].items():
        if count:
            log.warning("%s %s: %d duplicate pairs (exact repeats of another line)", task, split,
                        count)
    for split, overlap in checks["overlap_with_train"].items():
        if overlap["sources"]:
            log.warning("%s %s: %d sources also in train (%d whole pairs): those examples were "
                        "seen in training", task, split, overlap["sources"], overlap["pairs"])
