"""AR decoding: exactness of beam search, sampling law and filters, the decode config, the
generation contract of every AR family (max length, no specials, reproducible candidates that do
not depend on the batch), cached incremental decoding against the full-prefix decoder, and the
batch padding (the batch's own length gives the losses of padding to seq_len)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from transformers.modeling_outputs import BaseModelOutput

from pipeline.models import gpt2, gpvae, gru_attention, levt, transformer
from pipeline.models.ar_decoding import (DecodeConfig, Search, beam_search, filter_probs,
                                         nucleus_threshold, pad_multiple, padded_width, run_search,
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


@pytest.mark.parametrize("scale", [0.3, 3.0, 12.0])       # near-uniform to peaked, as V grows
def test_nucleus_threshold_keeps_the_tokens_of_a_sorted_nucleus(scale):
    gen = torch.Generator().manual_seed(int(scale * 10))
    probs = (torch.randn(6, 3000, generator=gen) * scale).softmax(-1)
    probs[:, :200] = 0.0                                          # filtered out before (top-k)
    for top_p in (0.05, 0.5, 0.9, 0.999):
        ranked, order = probs.double().sort(-1, descending=True)
        keep_ranked = ranked.cumsum(-1) - ranked < top_p       # mass before each token < top_p
        expected = torch.zeros_like(keep_ranked).scatter(1, order, keep_ranked)
        assert torch.equal(probs >= nucleus_threshold(probs, top_p), expected), top_p
    tied = torch.full((1, 8), 0.125)
    assert bool((tied >= nucleus_threshold(tied, 0.3)).all())  # ties with the last kept stay


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


def test_finished_samples_leave_the_decoder_and_rows_stay_independent():
    table = torch.zeros(6, 6)
    table[:, EOS] = 1.5                                  # EOS likely at every step
    first = torch.zeros(2, 6)
    seen = []

    class Counting(MarkovDecoder):
        def step(self, tokens):
            seen.append(len(tokens))
            return super().step(tokens)

    gens = lambda pairs: [candidate_generator(s, i) for i, s in pairs]  # noqa: E731
    pairs = [(i, s) for i in (0, 1) for s in (4, 5, 6, 7)]
    together = sample(Counting(first, table), gens(pairs), max_len=8, eos_id=EOS)
    alone = [sample(MarkovDecoder(first[:1], table), gens([p]), max_len=8, eos_id=EOS)[0] for p in pairs]
    assert together == alone
    assert seen == sorted(seen, reverse=True) and seen[-1] < len(pairs)
    assert len(seen) == max(len(row) for row in together)   # the last step ran the longest rows only


def test_padded_width_is_the_longest_row_rounded_up_within_the_task_limit():
    assert [padded_width(n) for n in (0, 1, 8, 9, 17)] == [1, 1, 8, 9, 17]
    assert [padded_width(n, multiple=8) for n in (0, 1, 8, 9, 17)] == [1, 8, 8, 16, 24]
    assert padded_width(30, limit=33, multiple=8) == 32 and padded_width(33, limit=33, multiple=8) == 33
    assert padded_width(34, limit=33, multiple=8) == 34            # a longer row is never cut


def test_batches_round_their_width_only_for_a_model_on_a_gpu():
    model = torch.nn.Linear(2, 2)
    assert pad_multiple(model) == 1 and pad_multiple(torch.nn.Module()) == 1
    assert pad_multiple(model.to("meta")) == 1


# --- incremental decoding gives the tokens of the full-prefix decoder ---------------------------------

class FullPrefixDecoder:
    """The reference decoder: re-runs a model's teacher-forced forward over the whole prefix at
    every step and keeps the last position's logits."""

    def __init__(self, last_logits, rows: dict, prefix: torch.Tensor):
        self.last_logits, self.rows, self.prefix = last_logits, rows, prefix

    def start(self) -> torch.Tensor:
        return self.last_logits(self.rows, self.prefix)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.prefix = torch.cat([self.prefix, tokens[:, None]], 1)
        return self.last_logits(self.rows, self.prefix)

    def select(self, index: torch.Tensor) -> None:
        self.rows = {k: v[index] for k, v in self.rows.items()}
        self.prefix = self.prefix[index]


def encoder_decoder_pair(model, batch, max_len):
    src, mask = batch["src"], batch["src_mask"]
    prefix = torch.full((len(src), 1), TASK.cls_id)
    reference = lambda: FullPrefixDecoder(  # noqa: E731
        lambda rows, p: model(rows["src"], rows["mask"], p)[:, -1], {"src": src, "mask": mask}, prefix)
    return lambda: model.incremental_decoder(src, mask, max_len), reference


def gpt2_pair(model, batch, max_len):
    def last_logits(rows, generated):
        mask = torch.cat([rows["mask"], torch.ones_like(generated, dtype=torch.bool)], 1).long()
        ids = torch.cat([rows["ids"], generated], 1)
        out = model.lm(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0))
        return out.logits[:, -1]

    ids, mask = batch["prompt_ids"], batch["prompt_mask"]
    empty = torch.zeros((len(ids), 0), dtype=torch.long)
    return (lambda: gpt2._GPT2Decoder(model.lm, ids, mask),
            lambda: FullPrefixDecoder(last_logits, {"ids": ids, "mask": mask}, empty))


def gpvae_pair(model, batch, max_len):
    def last_logits(rows, prefix):
        out = model.t5(encoder_outputs=BaseModelOutput(last_hidden_state=rows["memory"]),
                       attention_mask=rows["mask"], decoder_input_ids=prefix)
        return out.logits[:, -1].float().index_fill(-1, model.banned, float("-inf"))

    mask = batch["src_mask"]
    memory = model.t5.encoder(input_ids=batch["src"], attention_mask=mask).last_hidden_state
    start = torch.full((len(mask), 1), model.start_id)
    return (lambda: gpvae._T5Decoder(model.t5, memory, mask, model.start_id, model.banned),
            lambda: FullPrefixDecoder(last_logits, {"memory": memory, "mask": mask}, start))


def tiny_transformer(**kw):
    return transformer.build(transformer.ModelConfig(
        d_model=16, num_heads=2, ffn_dim=32, num_encoder_layers=2, num_decoder_layers=2, **kw), TASK)


DECODER_PAIRS = {
    "gru_attention": (FAMILIES["gru_attention"], encoder_decoder_pair),
    "transformer": (tiny_transformer, encoder_decoder_pair),
    "transformer_pre_norm": (lambda: tiny_transformer(norm_first=True, positions="learned"),
                             encoder_decoder_pair),
    "gpt2": (FAMILIES["gpt2"], gpt2_pair),
    "gpvae": (lambda: gpvae.build(gpvae.ModelConfig(d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                                    num_decoder_layers=2, num_heads=2), TASK), gpvae_pair),
}


@pytest.fixture(scope="module", params=sorted(DECODER_PAIRS))
def decoder_pair(request):
    """(cached decoder factory, full-prefix decoder factory) over the same 4 sources, max_len 10."""
    build, pair = DECODER_PAIRS[request.param]
    torch.manual_seed(0)
    model = build().eval()
    return pair(model, model.collate(sources(4, seed=2)), 10)


def test_cached_step_logits_equal_the_full_prefix_logits(decoder_pair):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        decoders = [make() for make in decoder_pair]
        logits = [d.start() for d in decoders]
        for step in range(9):
            assert torch.allclose(logits[0], logits[1], atol=1e-5), step
            if step == 2:      # reorder and duplicate rows (beams, seeds), then drop some (finished)
                index = torch.tensor([3, 0, 0, 2, 1, 3])
            elif step == 5:
                index = torch.tensor([0, 2, 5])
            else:
                index = None
            if index is not None:
                for d in decoders:
                    d.select(index)
            tokens = torch.randint(4, 40, (len(logits[0]) if index is None else len(index),), generator=gen)
            logits = [d.step(tokens) for d in decoders]


@pytest.mark.parametrize("search", SEARCHES + [Search("sample")], ids=lambda s: s.method)
def test_cached_search_gives_the_tokens_of_the_full_prefix_decoder(decoder_pair, search):
    cached, reference = decoder_pair
    seeds, indices = [3, 5, 8], [10, 11, 12, 13]
    with torch.no_grad():
        got = run_search(cached(), search, 10, TASK.sep_id, seeds, indices)
        want = run_search(reference(), search, 10, TASK.sep_id, seeds, indices)
    assert got == want
    assert any(len(c) == 10 for row in got for c in row)      # decoded to the end of the cache


# --- dynamic padding: the batch's own length gives the losses of padding to seq_len ---------------

PAD = TASK.pad_id
SIDE = TASK.seq_len + 1
ENC_DEC = {"src": (SIDE, PAD), "src_mask": (SIDE, False), "trg_in": (SIDE, PAD), "trg_out": (SIDE, PAD),
           "trg_mask": (SIDE, False)}
# key -> (width when padded to seq_len, fill); prompts are left-padded
SEQ_LEN_LAYOUT = {
    "gru_attention": ENC_DEC,
    "transformer": ENC_DEC,
    "gpt2": {"input_ids": (2 * SIDE, PAD), "attention_mask": (2 * SIDE, False), "labels": (2 * SIDE, -100),
             "prompt_ids": (-SIDE, PAD), "prompt_mask": (-SIDE, False)},
    "gpvae": {"src": (SIDE, PAD), "src_mask": (SIDE, 0), "labels": (SIDE, -100), "decoder_input": (SIDE, PAD)},
    "levt": {"src": (SIDE + 1, PAD), "trg": (SIDE + 1, PAD)},
}
LOSS_MODELS = {
    **{name: build for name, build in FAMILIES.items()},
    "gpvae": DECODER_PAIRS["gpvae"][0],
    "levt": lambda: levt.build(levt.ModelConfig(d_model=16, num_heads=2, ffn_dim=32, num_encoder_layers=1,
                                                num_decoder_layers=1, max_insertions=4), TASK),
}


def pad_to_seq_len(batch: dict, layout: dict) -> dict:
    out = dict(batch)
    for key, (width, fill) in layout.items():
        value = batch[key]
        extra = torch.full((len(value), abs(width) - value.shape[1]), fill, dtype=value.dtype)
        out[key] = torch.cat([value, extra] if width > 0 else [extra, value], 1)
    return out


@pytest.mark.parametrize("family", sorted(SEQ_LEN_LAYOUT))
def test_dynamic_padding_gives_the_per_example_losses_of_seq_len_padding(family):
    torch.manual_seed(0)
    model = LOSS_MODELS[family]().eval()
    if family == "gpvae":  # a near-zero posterior spread: the latent noise (shaped like the batch) vanishes
        torch.nn.init.constant_(model.posterior_logvar.bias, -60.0)
    pairs = [(x[:6], y[:6]) for (x, _), (y, _) in zip(sources(6, seed=3), sources(6, seed=4))]
    batch = model.collate(pairs)
    layout = SEQ_LEN_LAYOUT[family]
    for key, (width, _) in layout.items():  # the batch's own width, short of the task's
        assert batch[key].shape[1] < abs(width), key
    with torch.no_grad():
        torch.manual_seed(1)
        dynamic = model.loss(batch)
        torch.manual_seed(1)
        full = model.loss(pad_to_seq_len(batch, layout))
    assert dynamic.keys() == full.keys()
    for term in dynamic:
        torch.testing.assert_close(dynamic[term], full[term], rtol=1e-5, atol=1e-6)
