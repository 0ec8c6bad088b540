"""Arg-max over the vocabulary without (N, V) scores: the clamping ("rounding") trick that snaps
x̂_0 to the nearest word embedding (DiffuSeq §3.3), and the final decode argmax(lm_head(z_0)).

Both are argmax_v (alpha * x·e_v + b_v): decoding has alpha = 1 and b the lm_head bias; the
nearest embedding by squared L2 distance has alpha = 2 and b_v = -||e_v||², since
argmin_v ||x - e_v||² = argmax_v (2 x·e_v - ||e_v||²) (||x||² is the same for every v). So each is
one matmul (fused with the bias by `addmm`) and a running max, walked over (rows x words) tiles
that fit the CPU caches; no (N, V) or (N, V, D) temporary is ever formed.
"""

from __future__ import annotations

import torch
from torch import Tensor

# (rows, vocabulary entries) per tile: a (512, 2048) fp32 score tile on CPU is 4 MiB; an
# accelerator wants far larger tiles to stay busy.
TILE_SHAPE = {"cpu": (512, 2048)}
ACCELERATOR_TILE_SHAPE = (8192, 8192)


def vocab_argmax(x: Tensor, weight: Tensor, bias: Tensor | None = None, alpha: float = 1.0) -> Tensor:
    """argmax_v (alpha * x·weight_v + bias_v) per row, in fp32; ties go to the lowest id.

    Args:
        x: (N, D); weight: (V, D); bias: (V,) or None.
    Returns:
        (N,) long ids.
    """
    x, weight = x.float(), weight.float()
    bias = torch.zeros(len(weight), device=x.device) if bias is None else bias.float()
    best_score = torch.full((len(x),), -torch.inf, device=x.device)
    best_id = torch.zeros(len(x), dtype=torch.long, device=x.device)
    tile_rows, tile_words = TILE_SHAPE.get(x.device.type, ACCELERATOR_TILE_SHAPE)
    for lo in range(0, len(weight), tile_words):
        words, words_bias = weight[lo:lo + tile_words].t(), bias[lo:lo + tile_words]
        for start in range(0, len(x), tile_rows):
            scores = torch.addmm(words_bias, x[start:start + tile_rows], words, alpha=alpha)
            top = scores.amax(1)
            # Strict: an earlier block keeps a tie. The arg-max (several times the cost of the
            # max) is taken only on rows that improve, a few blocks per row.
            better = (top > best_score[start:start + tile_rows]).nonzero().squeeze(1)
            best_score[start + better] = top[better]
            best_id[start + better] = scores[better].argmax(1) + lo
    return best_id


class NearestEmbedding:
    """Nearest vocabulary embedding by squared L2 distance.

    Args:
        weight: (V, D) embedding table (the model's tied word_embedding / lm_head weight).
    """

    def __init__(self, weight: Tensor):
        self.weight = weight.detach()                                       # (V, D)
        self.neg_sq_norm = -(self.weight.float() ** 2).sum(-1)              # (V,)

    def indices(self, x: Tensor) -> Tensor:
        """Ids of the nearest embeddings. x: (..., D) -> (...) long."""
        flat = x.reshape(-1, x.shape[-1])
        return vocab_argmax(flat, self.weight, self.neg_sq_norm, alpha=2.0).view(x.shape[:-1])

    def __call__(self, x: Tensor) -> Tensor:
        """The nearest embeddings themselves, same shape and dtype as x (..., D)."""
        return self.weight[self.indices(x)].to(x.dtype)
