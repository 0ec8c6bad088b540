"""The tiled vocabulary cross-entropy against the plain F.cross_entropy(lm_head(h)), fp32."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.diffusion import vocab_ce
from pipeline.diffusion.vocab_ce import vocab_nll

torch.set_num_threads(1)
ROWS, WORDS = vocab_ce.TILE_SHAPE["cpu"]
N, D, V = 3 * ROWS - 37, 16, 2 * WORDS + 123  # several tiles, neither size a multiple of a tile


def _inputs(seed: int, bias: bool = True):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=gen, dtype=torch.float64).float().requires_grad_()
    weight = (0.5 * torch.randn(V, D, generator=gen)).requires_grad_()
    b = torch.randn(V, generator=gen).requires_grad_() if bias else None
    targets = torch.randint(0, V, (N,), generator=gen)
    targets[:5] = torch.tensor([0, V - 1, WORDS - 1, WORDS, 7])
    return hidden, weight, b, targets


def _value_and_grads(loss_fn, hidden, weight, bias, weights):
    nll = loss_fn()
    (nll * weights).sum().backward()
    grads = [p.grad.clone() for p in (hidden, weight, bias) if p is not None]
    for p in (hidden, weight, bias):
        if p is not None:
            p.grad = None
    return nll.detach(), grads


def _assert_relative(actual, expected, rtol=1e-5):
    scale = expected.abs().max()
    assert float((actual - expected).abs().max() / scale) < rtol


@pytest.mark.parametrize("bias", [True, False])
def test_equals_plain_cross_entropy_values_and_gradients(bias):
    hidden, weight, b, targets = _inputs(0, bias)
    weights = torch.rand(N, generator=torch.Generator().manual_seed(1))  # any upstream gradient
    tiled = _value_and_grads(lambda: vocab_nll(hidden, weight, b, targets), hidden, weight, b, weights)
    plain = _value_and_grads(lambda: F.cross_entropy(F.linear(hidden, weight, b), targets, reduction="none"),
                             hidden, weight, b, weights)
    _assert_relative(tiled[0], plain[0])
    for got, want in zip(tiled[1], plain[1]):
        _assert_relative(got, want)


def test_masked_mean_per_example_equals_plain():
    """The masked variant: rows selected before the call, mean over each example's rows."""
    hidden, weight, b, targets = _inputs(2)
    examples = hidden[:440].view(40, 11, D)
    ids = targets[:440].view(40, 11)
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.6

    def masked_mean(nll_of_rows):
        per_row = torch.zeros(ids.shape).masked_scatter(mask, nll_of_rows(examples[mask], ids[mask]))
        return per_row.sum(-1) / mask.sum(-1).clamp(min=1)                # (40,)

    def tiled():
        return masked_mean(lambda h, y: vocab_nll(h, weight, b, y))

    def plain():
        return masked_mean(lambda h, y: F.cross_entropy(F.linear(h, weight, b), y, reduction="none"))

    weights = torch.linspace(0.5, 2.0, 40)
    got, want = (_value_and_grads(fn, hidden, weight, b, weights) for fn in (tiled, plain))
    _assert_relative(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        _assert_relative(g, w)


def test_tied_embedding_gradient_adds_up():
    """DiffuSeq's use: the projection is the word embedding that also made the inputs."""
    embedding = torch.nn.Embedding(V, D)
    ids = torch.randint(0, V, (4, 50), generator=torch.Generator().manual_seed(4))
    grads = []
    for loss_fn in (lambda h: vocab_nll(h, embedding.weight, None, ids),
                    lambda h: F.cross_entropy(F.linear(h, embedding.weight).flatten(0, 1), ids.flatten(),
                                              reduction="none").view(ids.shape)):
        embedding.zero_grad()
        loss_fn(embedding(ids) + 0.1).mean().backward()
        grads.append(embedding.weight.grad.clone())
    _assert_relative(grads[0], grads[1])


def test_under_bf16_autocast_stays_fp32_and_close_to_the_plain_route():
    hidden, weight, b, targets = _inputs(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tiled = vocab_nll(hidden, weight, b, targets)
        plain = F.cross_entropy(F.linear(hidden, weight, b).float(), targets, reduction="none")
    assert tiled.dtype == torch.float32
    torch.testing.assert_close(tiled, plain, rtol=2e-2, atol=2e-2)
    tiled.mean().backward()
    assert all(p.grad.dtype == torch.float32 for p in (hidden, weight, b))


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_never_forms_a_rows_by_vocabulary_tensor():
    hidden, weight, b, targets = _inputs(6)
    with _LargestTensor() as mode:
        vocab_nll(hidden, weight, b, targets).mean().backward()
    assert mode.largest <= ROWS * WORDS < N * V / 4


def test_no_rows_gives_zero_gradients():
    _, weight, b, _ = _inputs(7)
    hidden = torch.zeros(0, D, requires_grad=True)
    vocab_nll(hidden, weight, b, torch.zeros(0, dtype=torch.long)).sum().backward()
    assert not weight.grad.any() and not b.grad.any()
