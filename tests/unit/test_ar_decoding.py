"""AR decoding: exactness of beam search, sampling law and filters, the decode config, and the
generation contract of every AR family (max length, no specials, reproducible candidates that do
not depend on the batch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pipeline.models import gpt2, gru_attention, transformer
from pipeline.models.ar_decoding import (DecodeConfig, Search, beam_search, filter_probs, run_search,
                                         sample)
from pipeline.models.base import TaskInfo, candidate_generator

torch.set_num_threads(1)
EOS = 0


class MarkovDecoder:
    """Toy decoder: a source's first-token logits, then logits that depend on the last token only."""

    def __init__(self, first: torch.Tensor, table: torch.Tensor):
        self.first, self.table = first, table      # (B, V), (V, V)

    def start(self) -> torch.Tensor:
        return self.first

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]

    def select(self, index: torch.Tensor) -> None:
        self.first = self.first[index]


def markov(num_sources: int = 3, vocab: int = 4, seed: int = 0) -> MarkovDecoder:
    gen = torch.Generator().manual_seed(seed)
    return MarkovDecoder(torch.randn(num_sources, vocab, generator=gen) * 2,
                         torch.randn(vocab, vocab, generator=gen) * 2)


def exhaustive_best(dec: MarkovDecoder, source: int, max_len: int) -> list[int]:
    """The most probable output: ended by EOS within max_len, or cut at max_len."""
    first, table = dec.first[source].log_softmax(-1), dec.table.log_softmax(-1)
    words = range(1, table.shape[0])
    best, best_score = None, -np.inf
    for n in range(max_len + 1):
        for seq in itertools.product(words, repeat=n):
            dists = [first] + [table[t] for t in seq]
            score = sum(float(d[t]) for d, t in zip(dists, seq))
            if n < max_len:
                score += float(dists[-1][EOS])
            if score > best_score:
                best, best_score = list(seq), score
    return best


def test_wide_beam_without_length_penalty_finds_the_most_probable_output():
    dec = markov()
    expected = [exhaustive_best(markov(), i, 3) for i in range(3)]
    best = beam_search(dec, 3, max_len=3, eos_id=EOS, beam_size=27, length_penalty=0.0)
    assert [groups[0] for groups in best] == expected


def test_greedy_follows_the_argmax_chain_and_stops_at_eos():
    first = torch.tensor([[0.0, 5.0, 0.0, 0.0]])
    table = torch.full((4, 4), -5.0)
    table[1, 2] = table[2, 3] = table[3, EOS] = 5.0
    dec = MarkovDecoder(first, table)
    assert run_search(dec, Search("greedy"), 10, EOS, [0, 1], [7]) == [[[1, 2, 3], [1, 2, 3]]]
    # cut at max_len when EOS does not come in time
    assert run_search(MarkovDecoder(first, table), Search("beam"), 2, EOS, [0], [7]) == [[[1, 2]]]


def test_sampling_follows_the_model_distribution():
    logits = torch.tensor([[0.5, 1.0, -1.0, 2.0]])
    gens = [candidate_generator(s, 0) for s in range(4000)]
    rows = sample(MarkovDecoder(logits, torch.zeros(4, 4)), gens, max_len=1, eos_id=EOS)
    counts = np.bincount([r[0] if r else EOS for r in rows], minlength=4) / len(rows)
    assert np.abs(counts - logits.softmax(-1)[0].numpy()).max() < 0.03


def test_filters_keep_top_k_and_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.1, 0.4, 0.2, 0.3]]))
    assert (filter_probs(logits, top_k=2) > 0).tolist() == [[False, True, False, True]]
    assert (filter_probs(logits, top_p=0.6) > 0).tolist() == [[False, True, False, True]]
    assert (filter_probs(logits, top_p=0.05) > 0).tolist() == [[False, True, False, False]]
    assert torch.allclose(filter_probs(logits, temperature=1.0).sum(-1), torch.tensor(1.0))


def test_diverse_groups_differ_and_seeds_map_to_groups():
    search = Search("diverse_beam", beam_size=2, num_groups=3, diversity_penalty=100.0)
    ids = run_search(markov(vocab=6), search, 4, EOS, [0, 1, 2, 3], [0, 1, 2])
    for row in ids:
        assert len({tuple(c) for c in row[:3]}) == 3   # a huge penalty forces distinct first tokens
        assert row[3] == row[0]                        # seed 3 -> group 0


def test_quality_decode_switches_generate_to_the_quality_search():
    decode = DecodeConfig(candidates=Search("sample", top_p=0.9), quality=Search("beam", beam_size=3))
    assert decode.quality_decode().candidates == Search("beam", beam_size=3)
    assert decode.quality_decode().quality == decode.quality
    with pytest.raises(ValueError, match="quality.method"):
        DecodeConfig(quality=Search("sample"))
    with pytest.raises(ValueError):
        Search("sample", top_p=0.0)


# --- the contract of every AR family ----------------------------------------------------------------

TASK = TaskInfo(vocab_size=40, seq_len=12, pad_id=0, cls_id=2, sep_id=3, unk_id=1, tokenizer_dir="")
FAMILIES = {
    "gru_attention": lambda: gru_attention.build(
        gru_attention.ModelConfig(embed_dim=16, hidden_dim=16, attention_dim=16), TASK),
    "transformer": lambda: transformer.build(
        transformer.ModelConfig(d_model=16, num_heads=2, ffn_dim=32, num_encoder_layers=1,
                                num_decoder_layers=1), TASK),
    "gpt2": lambda: gpt2.build(gpt2.ModelConfig(n_layer=1, n_embd=16, n_head=2), TASK),
}
SEARCHES = [Search("sample", top_k=20), Search("sample", top_p=0.9, temperature=1.5),
            Search("greedy"), Search("beam", beam_size=3), Search("diverse_beam", beam_size=2, num_groups=2)]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def model(request):
    torch.manual_seed(0)
    return FAMILIES[request.param]().eval()


def sources(count: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [(rng.integers(4, 40, rng.integers(1, 9)), np.zeros(0, dtype=np.int64)) for _ in range(count)]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: s.method)
def test_candidates_are_reproducible_bounded_and_independent_of_the_batch(model, search):
    pairs, seeds = sources(4), [3, 5]
    decode = DecodeConfig(candidates=search, max_len=6)
    batch = model.generate(model.collate(pairs), seeds, [10, 11, 12, 13], decode).ids
    again = model.generate(model.collate(pairs), seeds, [10, 11, 12, 13], decode).ids
    alone = model.generate(model.collate(pairs[2:3]), [5], [12], decode).ids
    assert batch == again
    assert alone[0][0] == batch[2][1]
    specials = {TASK.pad_id, TASK.cls_id, TASK.sep_id}
    for row in batch:
        assert len(row) == 2 and all(len(c) <= 6 and not specials & set(c) for c in row)
    if search.method == "sample":  # an untrained model samples almost uniformly: seeds differ
        assert any(row[0] != row[1] for row in batch)
