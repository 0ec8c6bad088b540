"""pipeline.decoding.mbr: the paper's MBR rule (docs/metrics.md)."""

import random

import numpy as np
import pytest

from pipeline.decoding import mbr
from pipeline.metrics import rouge_l
from tests.unit.test_metrics import nltk_bleu, varied_sentences

# The constructed set: numpy's pairwise row sums make candidate 6 ("how best do how")
# win by a last digit; rows summed left to right make candidate 2 ("best how do how") win.
CONSTRUCTED = ["way best do how", "how best do how", "best how do how", "best how do how",
               "best how do how", "how to do how", "how best do how", "best i do how",
               "can how do how", "how best do how"]


def nltk_matrix(cands: list[str]) -> list[list[float]]:
    """NLTK's BLEU of every ordered pair as Python floats: [i][j] = BLEU(ref=c_j, hyp=c_i)."""
    return [[nltk_bleu(ref, hyp) for ref in cands] for hyp in cands]


def authors_pick(cands: list[str], matrix: list[list[float]] | None = None) -> int:
    """The authors' rule, literally: the BLEU matrix, its diagonal set to 0, `np.sum(M, -1)`,
    `np.argmax`."""
    matrix = [list(row) for row in (matrix or nltk_matrix(cands))]
    for i in range(len(cands)):
        matrix[i][i] = 0
    return int(np.argmax(np.sum(matrix, -1)))


def left_to_right_pick(matrix: list[list[float]]) -> int:
    """The same rule with each row summed left to right: what the authors do *not* compute."""
    totals = [sum(value for j, value in enumerate(row) if j != i) for i, row in enumerate(matrix)]
    return totals.index(max(totals))


def tie_sets(seed: int, count: int) -> list[list[str]]:
    """Sets of 8-15 four-word candidates over 6 words, half drawn from 3 repeated sentences:
    row sums that tie exactly or in their last digit."""
    rng = random.Random(seed)
    words = ["how", "best", "do", "to", "i", "can"]
    sets = []
    for _ in range(count):
        repeated = [" ".join(rng.choices(words, k=4)) for _ in range(3)]
        sets.append([rng.choice(repeated) if rng.random() < 0.5 else " ".join(rng.choices(words, k=4))
                     for _ in range(rng.choice([8, 9, 10, 12, 15]))])
    return sets


def test_consensus_candidate_wins():
    cands = ["the cat sat on a mat", "the cat sat on the mat", "the dog ran in the park today"]
    assert mbr.select([cands], "bleu") == [1]


def test_ties_go_to_the_first_candidate():
    assert mbr.select([["a b c d", "a b c d", "a b c d"]], "bleu") == [0]    # identical
    assert mbr.select([["x y", "p q", "m n"]], "bleu") == [0]                # all-zero rows
    assert mbr.select([["", "", "a"]], "bleu") == [0]


def test_single_candidate_and_empty_set():
    assert mbr.select([["only one"]], "bleu") == [0]
    with pytest.raises(ValueError, match="at least one candidate"):
        mbr.select([[]], "bleu")


def test_bleu_picks_equal_the_authors_rule_with_nltk_and_numpy():
    rng = random.Random(3)
    pool = varied_sentences(3, 300)
    sets = [rng.sample(pool, rng.choice([2, 3, 5, 8, 10, 16])) for _ in range(60)]
    sets += [[s] * 3 + [pool[0]] for s in pool[:5]]                          # repeats
    assert mbr.select(sets, "bleu") == [authors_pick(c) for c in sets]


def test_the_constructed_tie_set_picks_what_the_authors_pick():
    pick = mbr.select_one(CONSTRUCTED)
    assert pick == authors_pick(CONSTRUCTED) == 6
    assert CONSTRUCTED[pick] == "how best do how"
    assert left_to_right_pick(nltk_matrix(CONSTRUCTED)) == 2


def test_last_digit_ties_break_as_numpy_breaks_them():
    sets = tie_sets(0, 60)
    matrices = [nltk_matrix(c) for c in sets]
    authors = [authors_pick(c, m) for c, m in zip(sets, matrices)]
    assert mbr.select(sets) == authors
    # the sets do exercise the summation order: many would be picked differently left to right
    assert sum(a != left_to_right_pick(m) for a, m in zip(authors, matrices)) >= 8


def test_rouge_l_utility_and_unknown_name():
    cands = ["a b c", "a b c d", "x"]
    totals = [sum(rouge_l(ref, hyp) for j, ref in enumerate(cands) if j != i)
              for i, hyp in enumerate(cands)]
    assert mbr.select([cands], "rouge_l") == [totals.index(max(totals))]
    with pytest.raises(KeyError, match="known: \\['bleu', 'rouge_l'\\]"):
        mbr.select([cands], "meteor")


def test_sums_follow_candidate_order_not_symmetry():
    # Row i holds candidate i as the hypothesis: row sums (1.0, 0.4, 0.6) decide, column sums
    # (0.5, 1.2, 0.3) would pick candidate 1.
    scores = [[0.0, 0.9, 0.1], [0.2, 0.0, 0.2], [0.3, 0.3, 0.0]]
    assert mbr.select_from_matrix(scores) == 0
    assert mbr.select_from_matrix([[0.0, 0.5], [0.5, 0.0]]) == 0
