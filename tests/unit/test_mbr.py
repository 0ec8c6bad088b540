"""pipeline.decoding.mbr: the paper's MBR rule (spec/metrics.md)."""

import random

import pytest

from pipeline.decoding import mbr
from pipeline.metrics import rouge_l
from tests.unit.test_metrics import nltk_bleu, varied_sentences


def brute_force_pick(cands: list[str]) -> int:
    """The rule written out with NLTK: argmax_i sum_{j != i} BLEU(ref=c_j, hyp=c_i), first wins."""
    totals = []
    for i, hyp in enumerate(cands):
        total = 0.0
        for j, ref in enumerate(cands):
            if j != i:
                total += nltk_bleu(ref, hyp)
        totals.append(total)
    return totals.index(max(totals))


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


def test_bleu_picks_equal_the_brute_force_rule_with_nltk():
    rng = random.Random(3)
    pool = varied_sentences(3, 300)
    sets = [rng.sample(pool, rng.choice([2, 3, 5, 10])) for _ in range(60)]
    sets += [[s] * 3 + [pool[0]] for s in pool[:5]]                          # repeats
    assert mbr.select(sets, "bleu") == [brute_force_pick(c) for c in sets]


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
