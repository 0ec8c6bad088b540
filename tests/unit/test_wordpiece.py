"""The deterministic WordPiece vocabulary learner."""

from pipeline.data.wordpiece import learn_vocab, split_word

SPECIALS = ["[PAD]", "[UNK]"]


def test_split_word_marks_inner_pieces():
    assert split_word("cat") == ["c", "##a", "##t"]


def test_specials_then_characters_then_frequent_merges():
    vocab = learn_vocab({"low": 5, "lower": 2, "newest": 6, "widest": 3}, 30, SPECIALS)
    assert vocab[:2] == SPECIALS
    assert {"l", "n", "w", "##o", "##e", "##s", "##t"} <= set(vocab)
    # "##e ##s" (9) and "##s ##t" (9) are the most frequent pairs: the tie goes to the smaller pair.
    alphabet = {p for w in ("low", "lower", "newest", "widest") for p in split_word(w)}
    first_merge = vocab[len(SPECIALS) + len(alphabet)]
    assert first_merge == "##es"
    assert "newest" in vocab and len(vocab) == len(set(vocab)) <= 30


def test_same_counts_in_any_order_give_the_same_vocabulary():
    words = {f"w{i % 7}x{i % 5}y": 1 + i % 3 for i in range(60)}  # many ties
    shuffled = dict(reversed(list(words.items())))
    assert learn_vocab(words, 40, SPECIALS) == learn_vocab(shuffled, 40, SPECIALS)


def test_stops_when_nothing_is_left_to_merge():
    vocab = learn_vocab({"ab": 1}, 100, SPECIALS)
    assert vocab == ["[PAD]", "[UNK]", "##b", "a", "ab"]
