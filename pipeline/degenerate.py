"""Outputs that are not really outputs: candidates that are empty, identical across seeds, or
copies of the source. A system that produces mostly those has rates near 1 here, and its table
row is flagged rather than bolded (self-BLEU 0 of empty strings is not diversity)."""

from __future__ import annotations

import logging

from pipeline.text import remove_special_strings

log = logging.getLogger(__name__)

FLAG_SHARE = 0.5   # a rate above this flags the system


def degenerate_rates(candidates: list[list[str]], sources: list[str]) -> dict[str, float]:
    """Shares of degenerate outputs.

    Args:
        candidates: candidates[i] = the texts of source i, one per seed, as written.
        sources: the source texts.
    Returns:
        {"empty": share of candidates with no word, "copies_source": share equal to their source,
         "identical_across_seeds": share of sources whose (two or more) candidates are all equal}.
    """
    cleaned = [[remove_special_strings(c) for c in row] for row in candidates]
    flat = [(c, src) for row, src in zip(cleaned, sources) for c in row]
    multi = [row for row in cleaned if len(row) > 1]
    return {"empty": sum(not c.split() for c, _ in flat) / max(1, len(flat)),
            "copies_source": sum(c.strip() == src.strip() for c, src in flat) / max(1, len(flat)),
            "identical_across_seeds": sum(len(set(row)) == 1 for row in multi) / max(1, len(multi))}


def flags(rates: dict[str, float]) -> list[str]:
    """The rates that make a system's outputs degenerate (identical seeds alone do not: a
    deterministic decoder gives them by design)."""
    return [name for name in ("empty", "copies_source") if rates[name] > FLAG_SHARE]


def warn(what: str, rates: dict[str, float]) -> None:
    """Say it in the job's log when outputs are degenerate."""
    for name in flags(rates):
        log.warning("%s: %.0f %% of the candidates are %s", what, 100 * rates[name],
                    {"empty": "empty", "copies_source": "copies of their source"}[name])
    if rates["identical_across_seeds"] > FLAG_SHARE:
        log.warning("%s: for %.0f %% of the sources every seed gave the same candidate", what,
                    100 * rates["identical_across_seeds"])
