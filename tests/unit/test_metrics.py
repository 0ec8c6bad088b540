"""pipeline.metrics: hand-worked values, and identity with NLTK / rouge-score / torchmetrics."""

import math
import random

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu
from rouge_score.rouge_scorer import RougeScorer

from pipeline import metrics


def nltk_bleu(ref: str, hyp: str) -> float:
    return nltk_sentence_bleu([ref.split()], hyp.split(),
                              smoothing_function=SmoothingFunction().method4)


def varied_sentences(seed: int, count: int) -> list[str]:
    """Empty, 1-3 words, repeats, long; a small vocabulary so that n-grams match often."""
    rng = random.Random(seed)
    vocab = ["a", "b", "c", "the", "cat", "sat", "?", "x-y", "Dog,", "42", "ça", "É!"]
    out = []
    for _ in range(count):
        length = rng.choice([0, 1, 2, 3, 4, 5, 7, 12, 25])
        words = [rng.choice(vocab) for _ in range(length)]
        if words and rng.random() < 0.3:
            words = words[:2] * 4                              # repeated n-grams (clipping)
        out.append(" ".join(words))
    return out


@pytest.mark.parametrize("text, expected", [("a", 1.0), ("a b", 0.2213885886251307),
                                            ("a b c", 0.5757197301274735), ("a b c d", 1.0),
                                            ("a b c d e f g", 1.0)])
def test_bleu_of_a_sentence_with_itself(text, expected):
    assert metrics.sentence_bleu(text, text) == pytest.approx(expected, abs=1e-12)


def test_bleu_hand_worked_brevity_penalty_and_empties():
    # all n-gram precisions 1, hypothesis 4 words vs reference 5: BP = exp(1 - 5/4)
    assert metrics.sentence_bleu("a b c d e", "a b c d") == pytest.approx(math.exp(-0.25))
    assert metrics.sentence_bleu("a b c", "") == 0.0
    assert metrics.sentence_bleu("", "a b c") == 0.0
    assert metrics.sentence_bleu("a b", "c d") == 0.0                  # no unigram match
    # reference first, hypothesis second: the score is not symmetric
    assert metrics.sentence_bleu("a b c d e", "a b c d") != metrics.sentence_bleu("a b c d", "a b c d e")


def test_bleu_identical_to_nltk_on_varied_pairs():
    sents = varied_sentences(0, 600)
    pairs = list(zip(sents[::2], sents[1::2])) + [(s, s) for s in sents[:50]]
    assert [metrics.sentence_bleu(r, h) for r, h in pairs] == [nltk_bleu(r, h) for r, h in pairs]


def test_pairwise_bleu_identical_to_nltk():
    rng = random.Random(1)
    pool = varied_sentences(1, 200)
    for size in (1, 2, 3, 10):
        cands = rng.sample(pool, size)
        expected = [[nltk_bleu(ref, hyp) for ref in cands] for hyp in cands]
        assert metrics.pairwise_bleu(cands) == expected


def test_pairwise_bleu_of_a_huge_vocabulary_falls_back_to_exact_counting():
    # 37k distinct words would overflow the int64 n-gram codes of the vectorised count
    words = [f"w{i}" for i in range(37_000)]
    cands = [" ".join(words[:18_500] + words[:3]), " ".join(words[18_000:]), "w1 w2 w3 w4"]
    assert metrics.pairwise_bleu(cands) == [[nltk_bleu(ref, hyp) for ref in cands] for hyp in cands]


def test_rouge_l_hand_worked_and_empties():
    # LCS("the cat sat on the mat", "the cat on mat") = 4: P = 1, R = 4/6, F = 0.8
    assert metrics.rouge_l("the cat sat on the mat", "the cat on mat") == pytest.approx(0.8)
    assert metrics.rouge_l("", "a") == 0.0 and metrics.rouge_l("a", "") == 0.0
    assert metrics.rouge_l("The Cat!", "the cat") == 1.0          # rouge-score's tokenisation


def test_rouge_l_is_the_authors_float32_value_of_torchmetrics_and_rouge_score():
    from torchmetrics.functional.text.rouge import rouge_score

    sents = varied_sentences(2, 400)
    pairs = list(zip(sents[::2], sents[1::2])) + [("a b c", "a b c d e f g"), ("x y z", "y x")]
    scorer = RougeScorer(["rougeL"])
    ours = [metrics.rouge_l(r, h) for r, h in pairs]
    assert ours == [float(np.float32(scorer.score(r, h)["rougeL"].fmeasure)) for r, h in pairs]
    # the authors' per-sentence value: `.tolist()` of torchmetrics' 0-d float32 tensor
    authors = [rouge_score(h, r, rouge_keys="rougeL")["rougeL_fmeasure"].tolist() for r, h in pairs[:80]]
    assert ours[:80] == authors
    assert all(isinstance(value, float) for value in ours)
    # 3/7 and 2/3 are not float32 numbers: the float64 F-measure is not what is reported
    assert metrics.rouge_l("a b c", "a b c d e f g") != 2 * (3 / 7) / (3 / 7 + 1)


def test_dist1_len_and_word_count():
    assert metrics.dist1("a a b") == pytest.approx(2 / 3)
    assert metrics.dist1("") == 0.0
    assert metrics.authors_len("[CLS] a b [SEP]") == 4      # spaces left by deleted tokens count
    assert metrics.authors_len("") == 1
    assert metrics.authors_len("a b") == 2
    assert metrics.word_count("[CLS] a b [SEP]".replace("[CLS]", "")) == 3


def test_diversity_over_candidates():
    assert metrics.div4(["a b c d", "a b c d"]) == 0.5
    assert metrics.div4(["a b c d e"]) == 1.0
    assert metrics.div4(["a b c", ""]) == 0.0               # no 4-gram at all
    assert metrics.self_bleu(["a b c d"]) == 0.0            # a single candidate
    assert metrics.self_bleu(["a b c d", "a b c d"]) == 1.0
    assert metrics.self_bleu(["a b", "a b", "c d"]) == pytest.approx(0.2213885886251307 / 3)


def test_corpus_sacrebleu():
    sentence = "the cat sat on the mat"
    assert metrics.corpus_sacrebleu([sentence], [sentence]) == pytest.approx(100.0)
    assert metrics.corpus_sacrebleu(["x y z w"], ["the cat sat on the mat"]) == pytest.approx(0.0)


def test_bertscore_builtin_minilm_offline():
    hyps = ["the cat sat on the mat", "", "a completely different sentence about taxes"]
    refs = ["the cat sat on the mat", "a reference", "the cat sat on the mat"]
    f1 = metrics.bertscore_f1(hyps, refs, model="builtin:minilm", batch_size=4, device="cpu")
    assert len(f1) == 3
    assert f1[0] == pytest.approx(1.0, abs=1e-3)
    assert f1[1] == 0.0                                      # empty hypothesis: 0, no crash
    assert 0.0 < f1[2] < f1[0]


def test_bertscore_model_resolution_errors(tmp_path):
    with pytest.raises(ValueError, match="builtin"):
        metrics.resolve_bertscore_model("builtin:nope", None)
    with pytest.raises(ValueError, match="num_layers"):
        metrics.resolve_bertscore_model(str(tmp_path), None)
    assert metrics.resolve_bertscore_model("microsoft/deberta-xlarge-mnli", None) == (
        "microsoft/deberta-xlarge-mnli", None)
