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
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    Reduction,
    TokenReducer,
    check_choice,
    check_int,
    check_ratio,
    compute_dtype,
    gather_tokens,
    group_mean,
    identity_reduction,
    masked_fill_invalid,
    register_reducer,
    restore_by_assignment,
)
from .pooling import resize_tokens

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


def _first_indices(mask: Tensor, count: int) -> Tensor:
    """(B, N) bool with ``count`` True per row -> (B, count) their indices, ascending (``mask.nonzero()`` per row)."""
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :count]


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
        r_h, r_w: share of rows / columns removed, in [0, 1). Paper default (and default when ``grid`` is not
            given) 0.3 / 0.3.
        grid: (h, w) or int: number of rows / columns kept, instead of ratios (windowed hosts need every
            window reduced to the same k x k). Give either ``grid`` or ratios.
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

    def __init__(self, r_h: Optional[float] = None, r_w: Optional[float] = None,
                 grid: Union[int, Sequence[int], None] = None, unique_ratio_h: float = 0.1,
                 unique_ratio_w: float = 0.05, importance: str = 'max', selection: str = 'scores',
                 metric: str = 'cosine', merge: str = 'average', eject_mode: str = 'm-threshold',
                 threshold: float = 0.02, seed: int = 0):
        super().__init__()
        if grid is not None:
            if r_h is not None or r_w is not None:
                raise ValueError(f'TokenAdapter: give either r_h / r_w or grid (kept rows, columns), got '
                                 f'r_h={r_h!r}, r_w={r_w!r}, grid={grid!r}')
            grid = (grid, grid) if isinstance(grid, int) and not isinstance(grid, bool) else tuple(grid)
            if len(grid) != 2:
                raise ValueError(f'grid must be an int or (h, w), got {grid!r}')
            for name, v in zip(('grid[0]', 'grid[1]'), grid):
                check_int(name, v, 1)
        self.grid = grid
        self.r_h = None if grid else check_ratio('r_h', 0.3 if r_h is None else r_h)
        self.r_w = None if grid else check_ratio('r_w', 0.3 if r_w is None else r_w)
        self.unique_ratio_h = check_ratio('unique_ratio_h', unique_ratio_h)
        self.unique_ratio_w = check_ratio('unique_ratio_w', unique_ratio_w)
        self.importance = check_choice('importance', importance, IMPORTANCE)
        self.selection = check_choice('selection', selection, SELECTION)
        self.metric = check_choice('metric', metric, METRICS)
        self.merge = check_choice('merge', merge, MERGE)
        self.eject_mode = check_choice('eject_mode', eject_mode, EJECT)
        self.threshold = check_ratio('threshold', threshold, 0.0, 2.0, high_inclusive=True)
        self.seed = check_int('seed', seed, 0)
        self.enabled = grid is not None or self.r_h > 0 or self.r_w > 0
        self.needs_importance = self.importance == 'attention'
        if self.eject_mode == 'assignment' and self.merge != 'average':
            raise ValueError("eject_mode='assignment' restores from the merge groups: it needs merge='average', "
                             f'got merge={merge!r}')

    ROLES = 'roles: teal normal / grey representative / orange unique'
    panel_colours = {ROLES: ((0, 150, 150), (150, 150, 150), (255, 140, 0))}

    def panels(self, reduction: Reduction):
        """The kept rows / columns (paper Fig. 3) and the role of every token (Fig. 5): 0 normal, 1 representative,
        2 unique; (B, H, W) each."""
        info = reduction.info
        if 'rows' not in info:      # nothing removed
            return {}
        (H, W), rows, cols = info['grid'], info['rows'], info['cols']
        batch = torch.arange(rows.shape[0], device=rows.device)[:, None, None]
        kept = torch.zeros(rows.shape[0], H, W, dtype=torch.bool, device=rows.device)
        kept[batch, rows[:, :, None], cols[:, None, :]] = True
        roles = torch.zeros(kept.shape, dtype=torch.long, device=rows.device)
        unique = info['row_unique'][:, :, None] | info['col_unique'][:, None, :]
        roles[batch, rows[:, :, None], cols[:, None, :]] = 1 + unique.long()
        return {'removed rows / columns': kept, self.ROLES: roles}

    def extra_repr(self):
        size = f'grid={self.grid}' if self.grid else f'r_h={self.r_h}, r_w={self.r_w}'
        return (f'{size}, unique=({self.unique_ratio_h}, {self.unique_ratio_w}), '
                f'importance={self.importance}, metric={self.metric}, merge={self.merge}, '
                f'eject={self.eject_mode}@{self.threshold}')

    def plan(self, H: int, W: int):
        """(kept rows, kept columns) for an H x W grid; raises if it does not fit."""
        if self.grid is not None:
            n_keep_h, n_keep_w = self.grid
            if n_keep_h > H or n_keep_w > W:
                raise ValueError(f'TokenAdapter: grid {n_keep_h}x{n_keep_w} does not fit the {H}x{W} token grid')
        else:
            n_keep_h = H - math.floor(H * self.r_h + 0.5)
            n_keep_w = W - math.floor(W * self.r_w + 0.5)
        if n_keep_h < 1 or n_keep_w < 1:
            raise ValueError(f'TokenAdapter: grid {H}x{W} is too small for r_h={self.r_h}, r_w={self.r_w} '
                             f'(keeps {n_keep_h}x{n_keep_w} tokens)')
        return n_keep_h, n_keep_w

    def _line_plan(self, H: int, W: int):
        """Numbers of kept and unique rows / columns for an H x W grid."""
        n_keep_h, n_keep_w = self.plan(H, W)
        n_uniq_h = math.floor(n_keep_h * self.unique_ratio_h)
        n_uniq_w = math.floor(n_keep_w * self.unique_ratio_w)
        has_normals = n_keep_h < H or n_keep_w < W
        if has_normals and self.merge == 'average' and (n_uniq_h == n_keep_h or n_uniq_w == n_keep_w):
            raise ValueError(f'TokenAdapter: grid {H}x{W} leaves no representative token for '
                             f'unique_ratio_h={self.unique_ratio_h}, unique_ratio_w={self.unique_ratio_w}')
        return n_keep_h, n_keep_w, n_uniq_h, n_uniq_w

    def reduce(self, x: Tensor, valid: Optional[Tensor] = None, importance: Optional[Tensor] = None) -> Reduction:
        """x: (B, H, W, C); valid: (B, H, W) bool or None; importance: (B, H, W) host importance (cls
        attention) when ``importance='attention'``."""
        B, H, W, C = x.shape
        n_keep_h, n_keep_w, n_uniq_h, n_uniq_w = self._line_plan(H, W)
        if not self.enabled or (n_keep_h, n_keep_w) == (H, W):
            return identity_reduction(x, valid)
        N = H * W
        xf = x.to(compute_dtype(x))
        generator = torch.Generator().manual_seed(self.seed) if self.selection == 'random' else None

        # 1-2. row / column scores (padding never scores: its lines go first), kept and unique lines
        score = importance.float() if self.importance == 'attention' else token_importance(xf, self.importance)
        score = masked_fill_invalid(score, valid, float('-inf'))                   # (B, H, W)
        rows, row_unique = _select_lines(score.amax(2), n_keep_h, n_uniq_h, self.selection, generator)
        cols, col_unique = _select_lines(score.amax(1), n_keep_w, n_uniq_w, self.selection, generator)

        # flat index of every kept token in the full grid, row-major over the kept grid: (B, Nr)
        kept_flat = (rows[:, :, None] * W + cols[:, None, :]).flatten(1)
        Nr = kept_flat.shape[1]
        x_seq = xf.reshape(B, N, C)
        valid_seq = None if valid is None else valid.reshape(B, N)
        red_valid = None if valid is None else valid_seq.gather(1, kept_flat)      # (B, Nr)

        info = dict(rows=rows, cols=cols, row_unique=row_unique, col_unique=col_unique, grid=(H, W))
        assign = None
        if self.merge == 'average':
            is_kept = torch.zeros(B, N, dtype=torch.bool, device=x.device)
            is_kept.scatter_(1, kept_flat, True)
            # stable sorts, not nonzero(): the same ascending indices at a shape torch.compile knows
            normal_flat = _first_indices(~is_kept, N - Nr)                            # (B, Nn)
            rep_in_kept = (~row_unique[:, :, None] & ~col_unique[:, None, :]).flatten(1)  # (B, Nr)
            rep_pos = _first_indices(rep_in_kept, (n_keep_h - n_uniq_h) * (n_keep_w - n_uniq_w))  # (B, Np)
            # 3. each normal token -> most similar (real) representative token
            sim = similarity(gather_tokens(x_seq, normal_flat), gather_tokens(gather_tokens(x_seq, kept_flat),
                                                                              rep_pos), self.metric)
            if red_valid is not None:
                sim = sim.masked_fill(~red_valid.gather(1, rep_pos)[:, None, :], torch.finfo(sim.dtype).min)
            target = rep_pos.gather(1, sim.argmax(-1))                            # (B, Nn) into kept set
            # 4. average merge: every reduced token = mean of its group (itself + the normal tokens it took)
            assign = torch.empty(B, N, dtype=torch.long, device=x.device)
            assign.scatter_(1, kept_flat, torch.arange(Nr, device=x.device).expand(B, -1))
            assign.scatter_(1, normal_flat, target)
            weight = torch.ones(B, N, device=x.device) if valid_seq is None else valid_seq.float()
            reduce_fn = lambda y: group_mean(y.reshape(B, N, -1), assign, weight, Nr)  # noqa: E731
            info.update(normal_flat=normal_flat, normal_target=target, rep_pos=rep_pos)
        elif self.merge in ('max_pool', 'avg_pool', 'bilinear'):
            mode = {'max_pool': 'max', 'avg_pool': 'avg', 'bilinear': 'bilinear'}[self.merge]
            reduce_fn = lambda y: resize_tokens(y, (H, W), (n_keep_h, n_keep_w), mode, valid).flatten(1, 2)  # noqa: E731
            if valid is not None:
                red_valid = resize_tokens(valid[..., None].float(), (H, W), (n_keep_h, n_keep_w),
                                          'max')[..., 0].flatten(1) > 0
        else:  # keep: the normal tokens are dropped
            reduce_fn = lambda y: gather_tokens(y.reshape(B, N, -1), kept_flat)  # noqa: E731
        x_merged = reduce_fn(xf)

        if self.eject_mode == 'assignment':
            restore = restore_by_assignment(assign, H, W)
        else:
            restore = self._ejector(x_seq, x_merged, H, W, red_valid)
        return Reduction(tokens=x_merged.to(x.dtype), grid=(n_keep_h, n_keep_w), restore=restore,
                         reduce=lambda y: reduce_fn(y.to(compute_dtype(y))).to(y.dtype), valid=red_valid, info=info)

    def _ejector(self, x_seq: Tensor, x_merged: Tensor, H: int, W: int, red_valid: Optional[Tensor] = None):
        """Match original tokens (B, N, C) to merged reduced tokens (B, Nr, C), never to a padding-only reduced
        token; return y: (B, Nr, D) -> (B, H, W, D)."""
        B, N, _ = x_seq.shape
        sim = F.normalize(x_seq, dim=-1) @ F.normalize(x_merged, dim=-1).transpose(1, 2)   # (B, N, Nr)
        if red_valid is not None:
            sim = sim.masked_fill(~red_valid[:, None, :], -2.0)   # below any cosine: never nearest, never within
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
