"""Token Adapter (ECCV 2024): reduce whole rows and columns of the token grid, restore by matching.

Injector (reduce), x: (B, H, W, C):
  1. importance per token = max (or sum / range) over channels; row score = max over the row, column score = max
     over the column.
  2. drop the round(r_h * H) lowest rows and round(r_w * W) lowest columns; of the kept rows (columns) the
     highest-scoring share ``unique_ratio_h`` (``unique_ratio_w``) is *unique*, the rest *representative*.
     A kept token is unique if its row or its column is unique, otherwise representative; tokens in a dropped row
     or column are *normal*.
  3. every normal token joins its most similar representative token (cosine by default);
  4. each representative token becomes the average of itself and the normal tokens that joined it;
  5. the reduced set is the kept (h_r, w_r) grid in original order: a dense grid again.
Ejector (restore): distances between the original tokens X and the merged, not yet refined reduced tokens X_r^m
(paper Tab. 4c); each original token takes the refined value of its nearest reduced token (``max``) or the mean
of that one and every reduced token within ``threshold`` (``m-threshold``, paper default). Distances are cosine
distances, 1 - cos, in [0, 2].

Both matchings are computed once in ``reduce``; ``restore`` is a gather (max) or one (N x N_r) matmul.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (Reduction, TokenReducer, check_choice, check_int, check_ratio, compute_dtype,
                   identity_reduction, register_reducer, restore_by_assignment)

IMPORTANCE = ('max', 'sum', 'range', 'attention')
SELECTION = ('scores', 'random', 'alternating')
METRICS = ('cosine', 'dot', 'euclidean', 'manhattan')
MERGE = ('average', 'keep', 'max_pool', 'avg_pool', 'bilinear')
EJECT = ('max', 'm-threshold', 'assignment')


def token_importance(x: Tensor, kind: str = 'max') -> Tensor:
    """x: (B, H, W, C) -> (B, H, W) importance per token."""
    if kind == 'max':
        return x.amax(-1)
    if kind == 'sum':
        return x.sum(-1)
    return x.amax(-1) - x.amin(-1)  # range


def similarity(a: Tensor, b: Tensor, metric: str) -> Tensor:
    """a: (B, N, C), b: (B, M, C) -> (B, N, M), larger = more similar."""
    if metric == 'cosine':
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(1, 2)
    if metric == 'dot':
        return a @ b.transpose(1, 2)
    if metric == 'euclidean':
        return -torch.cdist(a, b)
    return -torch.cdist(a, b, p=1)  # manhattan


def _select_lines(score: Tensor, n_keep: int, n_unique: int, selection: str, generator=None):
    """Pick the kept lines (rows or columns) of each sample and mark the unique ones.

    score: (B, L). Returns kept: (B, n_keep) line indices in ascending order, unique: (B, n_keep) bool.
    """
    B, L = score.shape
    if selection == 'scores':
        order = score.argsort(dim=1, descending=True)
    elif selection == 'random':
        order = torch.stack([torch.randperm(L, generator=generator, device='cpu') for _ in range(B)]).to(score.device)
    else:  # alternating: evenly spaced lines survive, the same for every sample
        keep = torch.linspace(0, L - 1, n_keep).round().long()
        rest = torch.tensor([i for i in range(L) if i not in set(keep.tolist())], dtype=torch.long)
        order = torch.cat([keep, rest]).to(score.device).expand(B, L)
    kept = order[:, :n_keep]
    # unique = the highest-scoring kept lines, whatever chose the kept set
    kept_scores = score.gather(1, kept)
    rank = kept_scores.argsort(dim=1, descending=True).argsort(dim=1)
    unique = rank < n_unique
    kept, perm = kept.sort(dim=1)
    return kept, unique.gather(1, perm)


@register_reducer
class TokenAdapter(TokenReducer):
    """Token Adapter injector + ejector. See the module docstring for the algorithm.

    Args:
        r_h, r_w: share of rows / columns removed, in [0, 1). Paper default 0.3 / 0.3.
        unique_ratio_h, unique_ratio_w: share of the kept rows / columns that stay unique (untouched), in [0, 1).
        importance: per-token score over channels: 'max' (paper), 'sum' or 'range'; or 'attention': the cls
            attention of the host (Tab. 4a "scores (attn.)"; the host must expose it).
        selection: 'scores' (paper), or the Tab. 4a baselines 'random' / 'alternating'.
        metric: normal -> representative matching: 'cosine' (paper), 'dot', 'euclidean', 'manhattan'.
        merge: 'average' (paper); ablations 'keep' (drop normal tokens), 'max_pool' / 'avg_pool' / 'bilinear'
            (resize the whole grid to the kept size, ignoring the matching).
        eject_mode: 'm-threshold' (paper) or 'max'; or 'assignment' (not in the paper): every token takes the
            reduced token it was merged into (kept tokens themselves), an exact unmerge as ToMe's.
        threshold: cosine distance (1 - cos, in [0, 2]) under which further reduced tokens join the average in
            'm-threshold' mode. The paper gives no value; 0.5 (a third-party choice) averages most of the grid on
            our first-stage CamVid model (mIoU 28.1 -> 10.1, features restored), larger values lose more, 0.02 is
            within 0.5 mIoU of 'max' (BENCHMARKS.md): hence the default 0.02.
        seed: seed of the 'random' selection.
    """

    def __init__(self, r_h: float = 0.3, r_w: float = 0.3, unique_ratio_h: float = 0.1,
                 unique_ratio_w: float = 0.05, importance: str = 'max', selection: str = 'scores',
                 metric: str = 'cosine', merge: str = 'average', eject_mode: str = 'm-threshold',
                 threshold: float = 0.02, seed: int = 0):
        super().__init__()
        self.r_h = check_ratio('r_h', r_h)
        self.r_w = check_ratio('r_w', r_w)
        self.unique_ratio_h = check_ratio('unique_ratio_h', unique_ratio_h)
        self.unique_ratio_w = check_ratio('unique_ratio_w', unique_ratio_w)
        self.importance = check_choice('importance', importance, IMPORTANCE)
        self.selection = check_choice('selection', selection, SELECTION)
        self.metric = check_choice('metric', metric, METRICS)
        self.merge = check_choice('merge', merge, MERGE)
        self.eject_mode = check_choice('eject_mode', eject_mode, EJECT)
        self.threshold = check_ratio('threshold', threshold, 0.0, 2.0, high_inclusive=True)
        self.seed = check_int('seed', seed, 0)
        self.enabled = self.r_h > 0 or self.r_w > 0
        self.needs_attention = self.importance == 'attention'
        if self.eject_mode == 'assignment' and self.merge != 'average':
            raise ValueError("eject_mode='assignment' restores from the merge groups: it needs merge='average', "
                             f'got merge={merge!r}')

    def extra_repr(self):
        return (f'r_h={self.r_h}, r_w={self.r_w}, unique=({self.unique_ratio_h}, {self.unique_ratio_w}), '
                f'importance={self.importance}, metric={self.metric}, merge={self.merge}, '
                f'eject={self.eject_mode}@{self.threshold}')

    def plan(self, H: int, W: int):
        """Numbers of kept and unique rows / columns for an H x W grid; raises if the grid is too small."""
        n_keep_h = H - math.floor(H * self.r_h + 0.5)
        n_keep_w = W - math.floor(W * self.r_w + 0.5)
        if n_keep_h < 1 or n_keep_w < 1:
            raise ValueError(f'TokenAdapter: grid {H}x{W} is too small for r_h={self.r_h}, r_w={self.r_w} '
                             f'(keeps {n_keep_h}x{n_keep_w} tokens)')
        n_uniq_h = math.floor(n_keep_h * self.unique_ratio_h)
        n_uniq_w = math.floor(n_keep_w * self.unique_ratio_w)
        has_normals = n_keep_h < H or n_keep_w < W
        if has_normals and self.merge == 'average' and (n_uniq_h == n_keep_h or n_uniq_w == n_keep_w):
            raise ValueError(f'TokenAdapter: grid {H}x{W} leaves no representative token for '
                             f'unique_ratio_h={self.unique_ratio_h}, unique_ratio_w={self.unique_ratio_w}')
        return n_keep_h, n_keep_w, n_uniq_h, n_uniq_w

    def reduce(self, x: Tensor, attn: Tensor = None) -> Reduction:
        """x: (B, H, W, C); attn: (B, H, W) cls attention when ``importance='attention'``."""
        if not self.enabled:
            return identity_reduction(x)
        B, H, W, C = x.shape
        n_keep_h, n_keep_w, n_uniq_h, n_uniq_w = self.plan(H, W)
        xf = x.to(compute_dtype(x))
        generator = torch.Generator().manual_seed(self.seed) if self.selection == 'random' else None

        # 1-2. row / column scores, kept and unique lines
        score = attn.float() if self.importance == 'attention' else token_importance(xf, self.importance)  # (B,H,W)
        rows, row_unique = _select_lines(score.amax(2), n_keep_h, n_uniq_h, self.selection, generator)
        cols, col_unique = _select_lines(score.amax(1), n_keep_w, n_uniq_w, self.selection, generator)

        # flat index of every kept token in the full grid, row-major over the kept grid: (B, Nr)
        kept_flat = (rows[:, :, None] * W + cols[:, None, :]).flatten(1)
        Nr = kept_flat.shape[1]
        x_seq = xf.reshape(B, H * W, C)
        x_kept = x_seq.gather(1, kept_flat[..., None].expand(-1, -1, C))          # (B, Nr, C)

        info = dict(rows=rows, cols=cols, row_unique=row_unique, col_unique=col_unique, grid=(H, W))
        if self.merge == 'average' and Nr < H * W:
            is_kept = torch.zeros(B, H * W, dtype=torch.bool, device=x.device)
            is_kept.scatter_(1, kept_flat, True)
            normal_flat = (~is_kept).nonzero()[:, 1].view(B, H * W - Nr)          # (B, Nn)
            rep_in_kept = (~row_unique[:, :, None] & ~col_unique[:, None, :]).flatten(1)  # (B, Nr)
            rep_pos = rep_in_kept.nonzero()[:, 1].view(B, -1)                     # (B, Np) index into kept set
            x_normal = x_seq.gather(1, normal_flat[..., None].expand(-1, -1, C))
            x_rep = x_kept.gather(1, rep_pos[..., None].expand(-1, -1, C))
            # 3. each normal token -> most similar representative token
            best = similarity(x_normal, x_rep, self.metric).argmax(-1)            # (B, Nn)
            target = rep_pos.gather(1, best)                                      # (B, Nn) into kept set
            # 4. average merge: representative = mean(itself, its normal tokens)
            total = x_kept.scatter_add(1, target[..., None].expand(-1, -1, C), x_normal)
            count = torch.ones(B, Nr, device=x.device, dtype=xf.dtype).scatter_add(
                1, target, torch.ones_like(target, dtype=xf.dtype))
            x_merged = total / count[..., None]
            info.update(normal_flat=normal_flat, normal_target=target, rep_pos=rep_pos)
        elif self.merge in ('max_pool', 'avg_pool', 'bilinear'):
            grid = xf.permute(0, 3, 1, 2)
            if self.merge == 'max_pool':
                grid = F.adaptive_max_pool2d(grid, (n_keep_h, n_keep_w))
            elif self.merge == 'avg_pool':
                grid = F.adaptive_avg_pool2d(grid, (n_keep_h, n_keep_w))
            else:
                grid = F.interpolate(grid, size=(n_keep_h, n_keep_w), mode='bilinear', align_corners=False)
            x_merged = grid.flatten(2).transpose(1, 2)
        else:  # keep, or nothing to merge
            x_merged = x_kept

        if self.eject_mode == 'assignment':
            restore = restore_by_assignment(self._assignment(kept_flat, info, B, H * W), H, W)
        else:
            restore = self._ejector(x_seq, x_merged, H, W)
        return Reduction(tokens=x_merged.to(x.dtype), grid=(n_keep_h, n_keep_w), restore=restore, info=info)

    @staticmethod
    def _assignment(kept_flat, info, B, N):
        """(B, N) index into the reduced set: kept tokens -> themselves, normal tokens -> the representative they
        were merged into (``merge='average'``, checked in ``__init__``)."""
        Nr = kept_flat.shape[1]
        assign = torch.zeros(B, N, dtype=torch.long, device=kept_flat.device)
        assign.scatter_(1, kept_flat, torch.arange(Nr, device=kept_flat.device).expand(B, -1))
        if 'normal_flat' in info:
            assign.scatter_(1, info['normal_flat'], info['normal_target'])
        return assign

    def _ejector(self, x_seq: Tensor, x_merged: Tensor, H: int, W: int):
        """Match original tokens (B, N, C) to merged reduced tokens (B, Nr, C); return y: (B, Nr, D) -> (B, H, W, D)."""
        B, N, _ = x_seq.shape
        sim = F.normalize(x_seq, dim=-1) @ F.normalize(x_merged, dim=-1).transpose(1, 2)   # (B, N, Nr)
        nearest = sim.argmax(-1)                                                             # (B, N)
        if self.eject_mode == 'max':
            return restore_by_assignment(nearest, H, W)
        weight = (1.0 - sim) <= self.threshold
        weight.scatter_(2, nearest[..., None], True)          # the nearest one always counts
        weight = weight.to(sim.dtype)
        weight = weight / weight.sum(-1, keepdim=True)        # >= 1 entry per row: no division by zero

        def restore(y: Tensor) -> Tensor:
            out = weight.to(y.dtype) @ y
            return out.view(B, H, W, y.shape[-1])
        return restore
