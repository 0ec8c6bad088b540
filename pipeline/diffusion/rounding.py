"""The clamping ("rounding") trick: snap x̂_0 to the nearest word embedding (DiffuSeq §3.3).

argmin_v ||x - e_v||² = argmax_v (2 x·e_v - ||e_v||²), since ||x||² is the same for every v: one
matmul (fused with the bias by `addmm`) and an argmax per row, with ||e_v||² computed once per
sampling call. No (N, V, D) temporary is ever formed; rows go through in chunks so that the
(rows, V) score matrix stays bounded.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCORE_ELEMENTS = 1 << 22  # at most this many scores (rows x V) alive at once: 16 MiB in fp32


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
        flat = x.reshape(-1, x.shape[-1]).float()                           # (N, D)
        rows = max(1, SCORE_ELEMENTS // len(self.weight))
        weight_t = self.weight.float().t()                                  # (D, V)
        ids = [torch.addmm(self.neg_sq_norm, chunk, weight_t, alpha=2.0).argmax(-1)
               for chunk in flat.split(rows)]
        return torch.cat(ids).view(x.shape[:-1])

    def __call__(self, x: Tensor) -> Tensor:
        """The nearest embeddings themselves, same shape and dtype as x (..., D)."""
        return self.weight[self.indices(x)].to(x.dtype)
