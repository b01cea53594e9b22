"""EViT-style token pruning for dense prediction (the Expediting paper's adaptation, for any batch size).

Inside a host layer, after its attention and before its MLP (as in EViT), keep the ``ceil(keep_rate * N)`` patch
tokens with the largest cls attention (mean over heads); optionally fuse the others into one extra token, their
average weighted by cls attention (EViT's inattentive-token fusion). Restore: every pruned position copies the
refined value of its most similar kept token (cosine, at pruning time); the fused token is dropped.

Needs the host's cls attention: hosts without a cls token or without attention weights reject it.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    Reduction,
    TokenReducer,
    check_ratio,
    compute_dtype,
    gather_tokens,
    identity_reduction,
    register_reducer,
    restore_by_assignment,
)


def keep_top_tokens(x: Tensor, importance: Tensor, n_keep: int):
    """x: (B, N, C), importance: (B, N) -> kept indices (B, n_keep) in original order, pruned indices."""
    order = importance.argsort(dim=1, descending=True)
    kept = order[:, :n_keep].sort(dim=1).values
    pruned = order[:, n_keep:].sort(dim=1).values
    return kept, pruned


def nearest_kept_assignment(x: Tensor, kept: Tensor, pruned: Tensor, kept_tokens: Tensor) -> Tensor:
    """For every token of x (B, N, C): the index (into the kept set) it is restored from: itself if kept, else its
    most cosine-similar kept token. Returns (B, N)."""
    B, N, C = x.shape
    assign = torch.empty(B, N, dtype=torch.long, device=x.device)
    assign.scatter_(1, kept, torch.arange(kept.shape[1], device=x.device).expand(B, -1))
    if pruned.shape[1]:
        x_pruned = x.gather(1, pruned[..., None].expand(-1, -1, C))
        sim = F.normalize(x_pruned, dim=-1) @ F.normalize(kept_tokens, dim=-1).transpose(1, 2)
        assign.scatter_(1, pruned, sim.argmax(-1))
    return assign


class AttentionRankedReducer(TokenReducer):
    """Base of the reducers that keep the ``ceil(keep_rate * N)`` tokens with the largest cls attention.

    Args:
        keep_rate: share of the patch tokens kept, in (0, 1]; 1.0 disables the reducer.
    """

    needs_importance = True
    returns_grid = False
    supports_valid = False

    def __init__(self, keep_rate: float):
        super().__init__()
        self.keep_rate = check_ratio('keep_rate', keep_rate, 0.0, 1.0, high_inclusive=True)
        if self.keep_rate == 0:
            raise ValueError('keep_rate must be a number in (0, 1], got 0')
        self.enabled = self.keep_rate < 1.0

    def rank(self, x: Tensor, attn: Tensor):
        """x: (B, H, W, C), attn: (B, H, W) -> (tokens (B, N, C) in fp32/fp64, importance (B, N), kept, pruned)."""
        B, H, W, C = x.shape
        xf = x.reshape(B, H * W, C).to(compute_dtype(x))
        importance = attn.reshape(B, H * W).to(xf.dtype)
        kept, pruned = keep_top_tokens(xf, importance, math.ceil(self.keep_rate * H * W))
        return xf, importance, kept, pruned


@register_reducer
class EViT(AttentionRankedReducer):
    """Args:
        keep_rate: share of the patch tokens kept, in (0, 1]; 1.0 disables it.
        fuse: fuse the pruned tokens into one extra token (EViT); it is dropped at restore.
    """

    def __init__(self, keep_rate: float = 0.8, fuse: bool = True):
        super().__init__(keep_rate)
        self.fuse = bool(fuse)

    def extra_repr(self):
        return f'keep_rate={self.keep_rate}, fuse={self.fuse}'

    def reduce(self, x: Tensor, valid, importance: Tensor) -> Reduction:
        if not self.enabled:
            return identity_reduction(x)
        B, H, W, C = x.shape
        xf, importance, kept, pruned = self.rank(x, importance)
        n_keep = kept.shape[1]
        fuse = self.fuse and pruned.shape[1] > 0
        w = importance.gather(1, pruned)
        w = w / w.sum(1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)

        def reduce(y: Tensor) -> Tensor:
            """kept tokens, then (with ``fuse``) the cls-attention-weighted mean of the pruned ones."""
            y = y.reshape(B, H * W, -1)
            out = gather_tokens(y, kept)
            if fuse:
                fused = (w.to(y.dtype)[..., None] * gather_tokens(y, pruned)).sum(1, keepdim=True)
                out = torch.cat([out, fused], 1)
            return out

        assign = nearest_kept_assignment(xf, kept, pruned, gather_tokens(xf, kept))
        restore_kept = restore_by_assignment(assign, H, W)

        def restore(y: Tensor) -> Tensor:
            return restore_kept(y[:, :n_keep])   # drop the fused token

        return Reduction(tokens=reduce(xf).to(x.dtype), grid=None, restore=restore, reduce=reduce,
                         info=dict(grid=(H, W), kept=kept, assign=assign))
