"""Speed of the evaluation on this machine, and identity of its numbers with NLTK / rouge-score.

    python bench/bench_eval.py [--skip-bertscore]

Synthetic, seeded data: a Zipf-distributed vocabulary, references of 5-25 words and candidates
that are noisy copies of them (so candidates share n-grams as real samples do). Measured:
MBR over 1000 sources x 10 candidates; the per-sentence metrics of 1000 pairs; BERTScore of 1000
pairs with the builtin MiniLM; and the comparable of the authors' evaluation script (10 seed files
x 200 sources with MBR, no BERTScore: 137 s; their MBR alone over 200 x 10: 1.17 s), run both with
the reference implementations (NLTK, rouge-score) and with ours on the same data, checking that
every number is identical. The machine is shared: compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu
from rouge_score.rouge_scorer import RougeScorer

from pipeline import metrics
from pipeline.decoding import mbr
from pipeline.distributed import resolve_device

AUTHORS_SCRIPT_S = 137.0       # authors' eval script, 10 files x 200 sources, MBR, no BERTScore
AUTHORS_MBR_S = 1.17           # their MBR over 200 sources x 10 candidates


def synthetic(num_sources: int, num_cands: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """References and, per source, candidates that are noisy copies of the reference."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]

    def noisy(words: list[str]) -> str:
        out = [rng.choices(vocab, weights)[0] if rng.random() < 0.3 else w for w in words]
        if out and rng.random() < 0.3:
            del out[rng.randrange(len(out))]
        return " ".join(out)

    refs, cands = [], []
    for _ in range(num_sources):
        words = rng.choices(vocab, weights, k=rng.randint(5, 25))
        refs.append(" ".join(words))
        cands.append([noisy(words) for _ in range(num_cands)])
    return refs, cands


def nltk_bleu(ref: str, hyp: str) -> float:
    return nltk_sentence_bleu([ref.split()], hyp.split(), smoothing_function=SmoothingFunction().method4)


def reference_mbr(cands: list[str]) -> int:
    """The rule with NLTK, pair by pair (what the authors' script does)."""
    totals = [sum(nltk_bleu(ref, hyp) for j, ref in enumerate(cands) if j != i)
              for i, hyp in enumerate(cands)]
    return totals.index(max(totals))


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def per_sentence_ours(refs: list[str], hyps: list[str]) -> list[tuple]:
    return [(metrics.sentence_bleu(r, h), metrics.rouge_l(r, h), metrics.dist1(h),
             metrics.authors_len(h)) for r, h in zip(refs, hyps)]


def per_sentence_reference(refs: list[str], hyps: list[str]) -> list[tuple]:
    scorer = RougeScorer(["rougeL"])
    return [(nltk_bleu(r, h), scorer.score(r, h)["rougeL"].fmeasure,
             len(set(h.split())) / len(h.split()) if h.split() else 0.0, len(h.strip().split(" ")))
            for r, h in zip(refs, hyps)]


def bench_mbr() -> None:
    refs, cands = synthetic(1000, 10, seed=1)
    picks, ours = timed(mbr.select, cands, "bleu")
    check, ref_s = timed(lambda: [reference_mbr(c) for c in cands[:100]])
    assert picks[:100] == check, "MBR picks differ from the NLTK rule"
    print(f"MBR 1000 sources x 10 candidates: {ours:.2f} s here "
          f"(NLTK pair by pair: {10 * ref_s:.1f} s, extrapolated from 100 sources; "
          f"{10 * ref_s / ours:.0f}x; picks identical on the 100 checked)")


def bench_per_sentence() -> None:
    refs, cands = synthetic(1000, 1, seed=2)
    hyps = [c[0] for c in cands]
    ours, ours_s = timed(per_sentence_ours, refs, hyps)
    ref, ref_s = timed(per_sentence_reference, refs, hyps)
    assert ours == ref, "per-sentence metrics differ from NLTK / rouge-score"
    print(f"per-sentence BLEU, ROUGE-L, dist-1, Len of 1000 pairs: {ours_s:.3f} s here "
          f"(NLTK + rouge-score: {ref_s:.2f} s, {ref_s / ours_s:.0f}x; identical)")


def bench_bertscore() -> None:
    refs, cands = synthetic(1000, 1, seed=3)
    hyps = [c[0] for c in cands]
    _, load_s = timed(metrics.bertscore_f1, hyps[:2], refs[:2], "builtin:minilm", None, 64, "auto")
    scores, run_s = timed(metrics.bertscore_f1, hyps, refs, "builtin:minilm", None, 64, "auto")
    print(f"BERTScore (builtin MiniLM-L6, device {resolve_device('auto')}) of 1000 pairs: "
          f"{run_s:.1f} s (first call with model load: {load_s:.1f} s); mean F1 {np.mean(scores):.4f}")


def authors_workload() -> None:
    """Per-file metrics of 10 seed files x 200 sources, then MBR over the 10 candidates."""
    refs, cands = synthetic(200, 10, seed=4)
    files = [[c[k] for c in cands] for k in range(10)]
    ours, ours_files_s = timed(lambda: [per_sentence_ours(refs, f) for f in files])
    ours_picks, ours_mbr_s = timed(mbr.select, cands, "bleu")
    ref, ref_files_s = timed(lambda: [per_sentence_reference(refs, f) for f in files])
    ref_picks, ref_mbr_s = timed(lambda: [reference_mbr(c) for c in cands])
    assert ours == ref and ours_picks == ref_picks, "numbers differ from NLTK / rouge-score"
    ours_s, ref_s = ours_files_s + ours_mbr_s, ref_files_s + ref_mbr_s
    print(f"authors' workload (10 files x 200 sources + MBR 200 x 10, no BERTScore): {ours_s:.2f} s "
          f"here vs {AUTHORS_SCRIPT_S:.0f} s quoted ({AUTHORS_SCRIPT_S / ours_s:.0f}x) and "
          f"{ref_s:.1f} s for NLTK + rouge-score here ({ref_s / ours_s:.0f}x); identical numbers")
    print(f"  its MBR alone: {ours_mbr_s:.3f} s here vs {AUTHORS_MBR_S} s quoted "
          f"({AUTHORS_MBR_S / ours_mbr_s:.0f}x) and {ref_mbr_s:.2f} s for NLTK here "
          f"({ref_mbr_s / ours_mbr_s:.0f}x)")


def bench_evaluate_stage() -> None:
    """The evaluate stage end to end (files in, metrics JSON out) on the same workload."""
    import json

    from pipeline.config import (BertScoreConfig, Config, EvaluationConfig, SamplingConfig,
                                 SourceConfig, SystemConfig, TaskConfig, TokenizerConfig)
    from pipeline.evaluate import evaluate_system

    refs, cands = synthetic(200, 10, seed=4)
    seeds = list(range(10))
    cfg = Config(scale="bench", systems={"s": SystemConfig(family="diffuseq")},
                 tasks={"t": TaskConfig(source=SourceConfig(kind="local", uri="-"), seq_len=64,
                                        tokenizer=TokenizerConfig(kind="wordpiece"), systems=["s"])},
                 sampling=SamplingConfig(seeds=seeds),
                 evaluation=EvaluationConfig(mbr_sizes=[1, 3, 5, 10],
                                             bertscore=BertScoreConfig(enabled=False)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k in seeds:
            (folder / f"seed{k}.jsonl").write_text("".join(
                json.dumps({"source": "-", "reference": r, "recover": c[k]}) + "\n"
                for r, c in zip(refs, cands)))
        _, stage_s = timed(evaluate_system, cfg, "t", "s", folder, folder, folder / "m.json")
    print(f"evaluate stage end to end (MBR sizes 1/3/5/10, diversity, sacreBLEU; no BERTScore): "
          f"{stage_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-bertscore", action="store_true")
    args = parser.parse_args()
    bench_mbr()
    bench_per_sentence()
    authors_workload()
    bench_evaluate_stage()
    if not args.skip_bertscore:
        bench_bertscore()


if __name__ == "__main__":
    main()
