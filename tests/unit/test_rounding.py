"""Tiled vocabulary argmax: the clamping trick's nearest embedding and the decode argmax."""

import torch

from pipeline.diffusion import rounding
from pipeline.diffusion.rounding import NearestEmbedding, vocab_argmax

torch.set_num_threads(1)
ROWS, WORDS = rounding.TILE_SHAPE["cpu"]
V, D = 2 * WORDS + 77, 8   # several word tiles, the last one partial


def _weight(seed: int = 0) -> torch.Tensor:
    return torch.randn(V, D, generator=torch.Generator().manual_seed(seed))


def test_argmax_equals_plain_argmax_of_the_logits():
    weight, bias = _weight(), torch.randn(V, generator=torch.Generator().manual_seed(1))
    x = torch.randn(ROWS + 45, D, generator=torch.Generator().manual_seed(2))
    assert torch.equal(vocab_argmax(x, weight, bias), (x @ weight.T + bias).argmax(-1))
    assert torch.equal(vocab_argmax(x, weight), (x @ weight.T).argmax(-1))


def test_ties_across_word_tiles_go_to_the_lowest_id():
    weight = _weight()
    late = WORDS + 5
    weight[3] = weight[late] = 100 * torch.ones(D)  # two identical words in different tiles,
    x = torch.ones(1, D)                             # both far ahead of every other word
    assert vocab_argmax(x, weight).item() == 3


def test_nearest_embedding_is_the_l2_nearest_word():
    weight = _weight(3)
    x = torch.randn(5, 7, D, generator=torch.Generator().manual_seed(4))
    clamp = NearestEmbedding(weight)
    expected = torch.cdist(x.reshape(-1, D), weight).argmin(-1).view(5, 7)
    assert torch.equal(clamp.indices(x), expected)
    assert torch.equal(clamp(x), weight[expected])
