"""The LevT expert policy: its edits turn any rolled-in sequence into the target."""

import random

import pytest

from pipeline.models.levt_oracle import (apply_deletions, apply_insertions, expert_edits,
                                         fill_placeholders)

PLH = -1


def _apply(seq, edits):
    kept = apply_deletions(seq, edits.delete)
    canvas = apply_insertions(kept, edits.insert, PLH)
    return kept, canvas, fill_placeholders(canvas, edits.target, PLH)


def test_edits_reach_the_target_on_random_cases():
    rng = random.Random(0)
    for _ in range(2000):
        vocab = rng.randint(1, 8)  # small vocabularies make repeated tokens and ties common
        seq = [rng.randrange(vocab) for _ in range(rng.randint(0, 12))]
        trg = [rng.randrange(vocab) for _ in range(rng.randint(0, 12))]
        edits = expert_edits(seq, trg)
        kept, canvas, out = _apply(seq, edits)
        assert out == trg
        assert len(edits.delete) == len(seq) and len(edits.insert) == len(kept) + 1
        assert [tok == PLH for tok in canvas] == edits.is_placeholder


def test_edits_are_minimal():
    # Insertion/deletion only: the number of edits is len(seq) + len(trg) - 2 * LCS.
    seq, trg = [5, 3, 7, 9, 3], [3, 7, 1, 3, 3, 2]
    edits = expert_edits(seq, trg)
    assert sum(edits.delete) == 2 and sum(edits.insert) == 3
    assert edits.insert == [0, 0, 1, 2]


def test_identity_and_empty_cases():
    assert expert_edits([4, 5], [4, 5]).insert == [0, 0, 0]
    assert expert_edits([], [1, 2]).insert == [2]
    assert expert_edits([1, 2], []).delete == [True, True]


def test_insertion_counts_must_match_slots():
    with pytest.raises(ValueError, match="len\\+1"):
        apply_insertions([1, 2], [0, 0], PLH)
