"""Minimum Bayes risk selection of one output per source from its candidate set.

docs/metrics.md, "MBR": for candidates c_1..c_K of a source, pick argmax_i sum_{j != i}
u(ref=c_j, hyp=c_i) (the paper: u = sentence BLEU, K = 10 seeds), summed exactly as the authors'
evaluation sums it, so that last-digit ties break the same way. Pure Python and numpy; no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline import metrics


def _bleu_matrix(candidates: Sequence[str]) -> list[list[float]]:
    return metrics.pairwise_bleu(candidates)


def _rouge_l_matrix(candidates: Sequence[str]) -> list[list[float]]:
    return [[metrics.rouge_l(ref, hyp) for ref in candidates] for hyp in candidates]


# utility name -> function giving the K x K matrix [i][j] = u(ref=c_j, hyp=c_i)
UTILITIES: dict[str, Callable[[Sequence[str]], list[list[float]]]] = {
    "bleu": _bleu_matrix,
    "rouge_l": _rouge_l_matrix,
}


def utility_matrix(name: str) -> Callable[[Sequence[str]], list[list[float]]]:
    """The pairwise-utility function of a name; an unknown name lists the known ones."""
    if name not in UTILITIES:
        raise KeyError(f"unknown MBR utility '{name}' (known: {sorted(UTILITIES)})")
    return UTILITIES[name]


def select_from_matrix(scores: Sequence[Sequence[float]]) -> int:
    """The MBR rule on a utility matrix, computed as the authors' evaluation computes it.

    The row sums come from numpy's `sum` over the last axis of the float64 K x K array with the
    diagonal set to 0: numpy adds 8 or more terms pairwise (8 interleaved partial sums), not left
    to right, and exact ties are common (identical candidates, all-zero rows), so the order of
    the additions decides which candidate wins. Calling numpy the same way gives the same sums.

    Args:
        scores: K x K, [i][j] = u(ref=c_j, hyp=c_i); the diagonal is ignored.

    Returns:
        `np.argmax` of the row sums: the smallest index among equal sums.
    """
    if not scores:
        raise ValueError("MBR needs at least one candidate per source")
    matrix = np.array(scores, dtype=np.float64)        # (K, K), C-contiguous like np.sum(list)
    np.fill_diagonal(matrix, 0.0)
    return int(np.argmax(matrix.sum(-1)))


def select_one(candidates: Sequence[str], utility: str = "bleu") -> int:
    """Index of the MBR candidate among one source's candidates (see `select_from_matrix`)."""
    return select_from_matrix(utility_matrix(utility)(candidates))


def select(candidates: list[list[str]], utility: str = "bleu") -> list[int]:
    """MBR pick of every source.

    Args:
        candidates: candidates[i] is the candidate list (one per seed) of source i.
        utility: `bleu` (the paper) or `rouge_l`.

    Returns:
        For each source, the index into its candidate list of the selected candidate.
    """
    utility_matrix(utility)             # an unknown name fails before any work
    return [select_one(cands, utility) for cands in candidates]
