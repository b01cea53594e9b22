"""MSTM-style token mergence (training-free part of Multi-Scale Token Mergence).

Crucial tokens = the ``ceil(keep_rate * N)`` patch tokens with the largest cls attention (importance i). Every
non-crucial token u_k joins its most cosine-similar crucial token i_j, and the merged token is the
importance-weighted mean (paper eq. 4): m_j = (w_j i_j + sum_k w_k u_k) / (w_j + sum_k w_k), w = cls attention.
Restore as EViT: each position copies the crucial token it merged into (crucial tokens copy themselves).
The multi-scale feature fusion of the paper needs a retrained backbone and is not part of this reducer.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Reduction, gather_tokens, group_mean, identity_reduction, register_reducer, restore_by_assignment
from .evit import AttentionRankedReducer


@register_reducer
class MSTM(AttentionRankedReducer):
    """Args:
        keep_rate: share of crucial tokens, in (0, 1]; 1.0 disables it.
    """

    def __init__(self, keep_rate: float = 0.5):
        super().__init__(keep_rate)

    def extra_repr(self):
        return f'keep_rate={self.keep_rate}'

    def reduce(self, x: Tensor, valid, importance: Tensor) -> Reduction:
        if not self.enabled:
            return identity_reduction(x)
        B, H, W, C = x.shape
        N = H * W
        xf, w, kept, pruned = self.rank(x, importance)
        n_keep = kept.shape[1]
        assign = torch.empty(B, N, dtype=torch.long, device=x.device)
        assign.scatter_(1, kept, torch.arange(n_keep, device=x.device).expand(B, -1))
        if pruned.shape[1]:
            crucial = gather_tokens(xf, kept)
            others = gather_tokens(xf, pruned)
            target = (F.normalize(others, dim=-1) @ F.normalize(crucial, dim=-1).transpose(1, 2)).argmax(-1)
            assign.scatter_(1, pruned, target)

        def reduce(y: Tensor) -> Tensor:
            """importance-weighted mean of every crucial token's group (eq. 4)."""
            return group_mean(y.reshape(B, N, -1), assign, w, n_keep)

        return Reduction(tokens=reduce(xf).to(x.dtype), grid=None, restore=restore_by_assignment(assign, H, W),
                         reduce=reduce, info=dict(grid=(H, W), kept=kept, assign=assign))
