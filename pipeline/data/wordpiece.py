"""A deterministic WordPiece vocabulary learner (BERT-style, "##" marks a word-internal piece).

The `tokenizers` library's WordPieceTrainer breaks ties between equally frequent merges in hash-map
order, so two runs on the same text can give different vocabularies. This learner follows the
same recipe (start from characters, repeatedly merge the most frequent adjacent pair, as in BPE)
but breaks ties by the pair's spelling, so the same words always give the same vocabulary. The
vocabulary is then used by `tokenizers`' WordPiece model (greedy longest match), as in BERT.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

PREFIX = "##"

Pair = tuple[str, str]


def split_word(word: str) -> list[str]:
    """A word as its initial pieces: first character, then "##"-prefixed characters."""
    return [word[0]] + [PREFIX + ch for ch in word[1:]]


def merge_symbol(left: str, right: str) -> str:
    return left + right[len(PREFIX):]


class _PairIndex:
    """Counts of adjacent piece pairs over all words, which words hold each pair, and a max-heap of
    counts (entries go stale when a count changes; `best` skips them)."""

    def __init__(self, words: list[list[str]], counts: list[int]):
        self.words, self.counts = words, counts
        self.pair_counts: Counter[Pair] = Counter()
        self.where: defaultdict[Pair, set[int]] = defaultdict(set)
        for index in range(len(words)):
            self._count(index, +1)
        self.heap = [(-count, pair) for pair, count in self.pair_counts.items()]
        heapq.heapify(self.heap)

    def _count(self, index: int, sign: int) -> set[Pair]:
        """Add (sign +1) or remove (-1) the pairs of one word; return the pairs touched."""
        pieces = self.words[index]
        pairs = set(zip(pieces, pieces[1:]))
        for pair in zip(pieces, pieces[1:]):
            self.pair_counts[pair] += sign * self.counts[index]
            if sign > 0:
                self.where[pair].add(index)
        return pairs

    def best(self) -> Pair | None:
        """The most frequent pair (ties: the smallest pair in string order), or None."""
        while self.heap:
            negative, pair = self.heap[0]
            if negative < 0 and self.pair_counts[pair] == -negative:
                return pair
            heapq.heappop(self.heap)
        return None

    def merge(self, pair: Pair) -> None:
        """Replace every occurrence of `pair` by its merged piece, updating the counts."""
        merged, touched = merge_symbol(*pair), set()
        for index in sorted(self.where.pop(pair)):
            touched |= self._count(index, -1)
            self.words[index] = _merge_in(self.words[index], pair, merged)
            touched |= self._count(index, +1)
        for other in touched - {pair}:
            if self.pair_counts[other] > 0:
                heapq.heappush(self.heap, (-self.pair_counts[other], other))


def _merge_in(pieces: list[str], pair: Pair, merged: str) -> list[str]:
    out, i = [], 0
    while i < len(pieces):
        if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return out


def learn_vocab(word_counts: dict[str, int], vocab_size: int, specials: Iterable[str]) -> list[str]:
    """A WordPiece vocabulary: specials, every character piece, then merged pieces by frequency.

    Args:
        word_counts: normalised, pre-tokenized words and their frequencies.
        vocab_size: target size; the character pieces are always kept, even beyond it.
        specials: tokens placed first, in order (ids 0, 1, ...).

    Returns:
        The vocabulary in id order; the same inputs always give the same list.
    """
    ordered = sorted(word_counts)
    words = [split_word(w) for w in ordered]
    vocab = list(dict.fromkeys(list(specials) + sorted({p for w in words for p in w})))
    known = set(vocab)
    index = _PairIndex(words, [word_counts[w] for w in ordered])
    while len(vocab) < vocab_size and (pair := index.best()) is not None:
        index.merge(pair)
        if (merged := merge_symbol(*pair)) not in known:
            vocab.append(merged)
            known.add(merged)
    return vocab
