"""Cross-entropy of a vocabulary projection without its (N, V) logits (DiffuSeq's rounding term).

nll_i = logsumexp_v(h_i · W_v + b_v) - (h_i · W_{y_i} + b_{y_i}): the negative log-likelihood of
word y_i under softmax(lm_head(h_i)). The plain route, `F.cross_entropy(lm_head(h), y)`,
materialises the (N, V) logits, their log-softmax and its gradient; with BERT's V = 30522 and
N = 64 x 128 positions that is 1 GB per tensor and most of a training step. Here the
(positions x words) plane is walked in tiles that fit the CPU caches (and keep the skinny
(d = 64..128) matmuls efficient): the forward keeps only each row's logsumexp (per word block)
and target logit; the backward recomputes each tile's softmax and multiplies it into the
gradients of the rows and of the weight (tied to the word embedding in DiffuSeq) and bias; the
one-hot part of the gradient needs no tile at all. Per step that is four (N x d x V) matmuls
(forward, recompute, two gradients) and two softmax passes over N x V, nothing more.

Precision: under bf16 autocast (which the trainer enables only where the device has native bf16,
`pipeline.distributed.bf16_pays`) the tile matmuls run in bf16, as `lm_head` itself would, and
the backward's softmax is rounded to bf16 where the plain route rounds its gradient to bf16 for
its matmuls; the logsumexp and every accumulation across tiles are fp32. Otherwise all is fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor

# (positions, vocabulary entries) per tile: on CPU a (256, 2048) fp32 tile is 2 MiB, about what
# the caches hold; an accelerator wants far larger tiles to stay busy.
TILE_SHAPE = {"cpu": (256, 2048)}
ACCELERATOR_TILE_SHAPE = (8192, 8192)


def _compute_dtype(hidden: Tensor) -> torch.dtype:
    """bf16 when the caller runs under bf16 autocast, else the input's own dtype."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
        return torch.bfloat16
    return hidden.dtype


class _Tiles:
    """The (rows x words) tiles of the logits plane, word blocks outermost, and one tile buffer
    reused by all of them: a fresh 1-2 MiB tensor per tile would cost page faults and cache
    evictions every time (hence also the `out=` forms of the softmaxes below)."""

    def __init__(self, num_rows: int, num_words: int, dtype: torch.dtype, device: torch.device):
        self.rows, self.words = TILE_SHAPE.get(device.type, ACCELERATOR_TILE_SHAPE)
        self.num_rows, self.num_words = num_rows, num_words
        self.num_blocks = -(-num_words // self.words)
        self.buffer = torch.empty(self.rows * self.words, dtype=dtype, device=device)
        self.fp32 = (self.buffer if dtype == torch.float32
                     else torch.empty_like(self.buffer, dtype=torch.float32))

    def __iter__(self):
        """(k, word block [lo, hi), row block [start, stop)) for every tile."""
        for k in range(self.num_blocks):
            lo, hi = k * self.words, min((k + 1) * self.words, self.num_words)
            for start in range(0, self.num_rows, self.rows):
                yield k, lo, hi, start, min(start + self.rows, self.num_rows)

    def logits(self, rows: Tensor, words: Tensor, bias: Tensor | None) -> Tensor:
        """lm_head on one tile, in the operands' dtype: (n, d) x (w, d) -> (n, w)."""
        out = self.buffer[:len(rows) * len(words)].view(len(rows), len(words))
        if bias is None:
            return torch.mm(rows, words.t(), out=out)
        return torch.addmm(bias, rows, words.t(), out=out)

    def as_fp32(self, tile: Tensor) -> Tensor:
        """The tile in fp32 (itself when already fp32)."""
        if tile.dtype == torch.float32:
            return tile
        return self.fp32[:tile.numel()].view_as(tile).copy_(tile)


def _forward(hidden: Tensor, weight: Tensor, bias: Tensor | None,
             targets: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's logsumexp per word block, (N, blocks), and its target logit, (N,), fp32.

    A block's logsumexp comes from the fused log_softmax kernel, in place: log_softmax peaks at
    -log(sum exp(x - max)), so lse = max(x) - max(log_softmax(x)). The target logit is read
    off the tile, so that it is rounded exactly like the logsumexp's terms.
    """
    tiles = _Tiles(len(hidden), len(weight), hidden.dtype, hidden.device)
    block_lse = torch.empty(len(hidden), tiles.num_blocks, dtype=torch.float32, device=hidden.device)
    target_logit = torch.zeros(len(hidden), dtype=torch.float32, device=hidden.device)
    target_block, target_column = targets // tiles.words, targets % tiles.words
    for k, lo, hi, start, stop in tiles:
        tile = tiles.as_fp32(tiles.logits(hidden[start:stop], weight[lo:hi],
                                          None if bias is None else bias[lo:hi]))
        hit = target_block[start:stop] == k
        column = torch.where(hit, target_column[start:stop], 0).unsqueeze(1)
        picked = tile.gather(1, column).squeeze(1)
        target_logit[start:stop] = torch.where(hit, picked, target_logit[start:stop])
        top = tile.amax(1)
        torch._log_softmax(tile, 1, False, out=tile)
        block_lse[start:stop, k] = top - tile.amax(1)
    return block_lse, target_logit


def _backward(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
              block_lse: Tensor, grad_nll: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of sum_i g_i nll_i (g = grad_nll) w.r.t. hidden (N, d), weight (V, d), bias (V,).

    d nll_i / d logits_i = softmax_i - onehot(y_i). The softmax part is walked in tiles: the
    softmax over the whole vocabulary is the block-local softmax times exp(block lse - lse), so
    each tile needs one fused softmax (in place, in the tile's dtype: bf16 under autocast, like
    the gradient the plain route hands its bf16 matmuls) and nothing else touches the tile: the
    per-row factor s_i = g_i exp(block lse - lse) scales the (n, d) operands and results
    instead, and a column of ones beside the rows gives the bias gradient from the weight's
    matmul. The one-hot part is one gather / index_add over the N targets. Word blocks are the
    outer loop, so each block's weight gradient stays in cache while the rows stream past it.
    All accumulation is fp32.
    """
    num_rows, dim = hidden.shape
    factor = grad_nll[:, None] * torch.softmax(block_lse, dim=1)                 # (N, blocks)
    rows_aug = hidden if bias is None else torch.cat([hidden, hidden.new_ones(num_rows, 1)], 1)
    grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=hidden.device)
    grad_bias = torch.zeros(len(weight), dtype=torch.float32, device=hidden.device)
    tiles = _Tiles(num_rows, len(weight), hidden.dtype, hidden.device)
    for k, lo, hi, start, stop in tiles:
        if start == 0:  # a new word block: its [weight | bias] gradient, transposed
            block_grad_t = torch.zeros(rows_aug.shape[1], hi - lo, dtype=torch.float32,
                                       device=hidden.device)
        words, s = weight[lo:hi], factor[start:stop, k, None]                      # s: (n, 1)
        tile = tiles.logits(hidden[start:stop], words, None if bias is None else bias[lo:hi])
        torch._softmax(tile, 1, False, out=tile)                                 # block softmax
        grad_hidden[start:stop].addcmul_(s, torch.mm(tile, words).float())
        _accumulate(block_grad_t, (rows_aug[start:stop] * s).to(tile.dtype).t(), tile)
        if stop == num_rows:
            grad_weight[lo:hi] = block_grad_t[:dim].t()
            grad_bias[lo:hi] = block_grad_t[-1]  # the ones column (unused without a bias)
    g = grad_nll[:, None]
    grad_hidden -= g * weight[targets].float()                                    # - onehot part
    grad_weight.index_add_(0, targets, -g * hidden.float())
    grad_bias.index_add_(0, targets, -grad_nll)
    return grad_hidden, grad_weight, grad_bias


def _accumulate(out: Tensor, a: Tensor, b: Tensor) -> None:
    """out += a @ b with out fp32: in place when a, b are fp32; else via the bf16 product."""
    if a.dtype == out.dtype:
        out.addmm_(a, b)
    else:
        out += torch.mm(a, b)


class _VocabNLL(torch.autograd.Function):
    """Autograd wrapper of `_forward` / `_backward`; saves only the (N, blocks) logsumexps."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
                dtype: torch.dtype) -> Tensor:
        operands = _cast(hidden, weight, bias, dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            block_lse, target_logit = _forward(*operands, targets)
        ctx.save_for_backward(hidden, weight, bias, targets, block_lse)
        ctx.dtype = dtype
        return torch.logsumexp(block_lse, dim=1) - target_logit

    @staticmethod
    def backward(ctx, grad_nll: Tensor):
        hidden, weight, bias, targets, block_lse = ctx.saved_tensors
        operands = _cast(hidden, weight, bias, ctx.dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            grad_hidden, grad_weight, grad_bias = _backward(*operands, targets, block_lse,
                                                            grad_nll.float().contiguous())
        return (grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype),
                None if bias is None else grad_bias.to(bias.dtype), None, None)


def _cast(hidden: Tensor, weight: Tensor, bias: Tensor | None,
          dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor | None]:
    return (hidden.detach().to(dtype).contiguous(), weight.detach().to(dtype).contiguous(),
            None if bias is None else bias.detach().to(dtype))


def vocab_nll(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """Per-position NLL of `targets` under softmax(hidden W^T + b), never forming (N, V) tensors.

    Equal (to float rounding) to F.cross_entropy(F.linear(hidden, weight, bias), targets,
    reduction="none"), gradients included; mask or weight positions by selecting rows before the
    call or by weighting its output.

    Args:
        hidden: (..., d) float.
        weight: (V, d) the projection (DiffuSeq: lm_head, tied to the word embedding).
        bias: (V,) or None.
        targets: (...) long word ids.
    Returns:
        (...) fp32 NLL per position.
    """
    flat = hidden.reshape(-1, hidden.shape[-1])
    nll = _VocabNLL.apply(flat, weight, bias, targets.reshape(-1), _compute_dtype(hidden))
    return nll.view(targets.shape)
