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

Options beyond the paper (each off by default unless stated; BENCHMARKS.md section 11 measures them):
  * ``threshold_mode='relative'``: ``m-threshold`` keeps the reduced tokens with cos >= cos_max - threshold (the
    best match of that token minus a margin) instead of 1 - cos <= threshold: the same rule relative to each
    token's best match, so a token that matches nothing well still averages only its near-best matches.
  * ``match_features='layernorm'``: every similarity (injector, ejector, ``redundancy``) is computed on the tokens
    after a LayerNorm without affine parameters (what the next block's ``norm1`` sees, less its per-channel
    scale): cosine on centred tokens. The raw residual stream of pretrained ViTs has a few huge channels that
    dominate the cosine. The merge still averages the raw tokens.
  * ``importance='redundancy'``: the line score is 1 - the mean cosine (on LayerNorm'd tokens) of the line's tokens
    with the tokens of its neighbouring lines: the lines most similar to their neighbours go first (they are the
    ones a neighbour can stand in for). ``separate_drops=True``: never drop two adjacent lines while a line
    with two kept neighbours is left (greedy by score), so every dropped line has a kept line on each side.
  * ``injector='local'``: a normal token joins the most similar of the (at most 4) representative tokens at the
    crossing of the nearest representative rows above / below and columns left / right of it, not the most
    similar one anywhere: a representative can only absorb its neighbourhood, so no "hub" collects tokens from
    all over the image (the guard against hubs), and the merged token keeps its place's content.
  * ``eject_mode='soft'``: every original token takes a softmax-weighted average of reduced tokens, weights
    exp(-t * d / s), d = 1 - cos, s = the image's mean distance to the best match (scale-free; ``eject_temperature``
    = t), over the reduced tokens within ``eject_radius`` kept lines of its position (``None``: the
    ``eject_topk`` most similar reduced tokens anywhere, as Expediting's reconstruction).
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
from .expediting import nearest_distance_scale, restore_by_weights
from .pooling import resize_tokens

IMPORTANCE = ('max', 'sum', 'range', 'attention', 'redundancy')
SELECTION = ('scores', 'random', 'alternating')
METRICS = ('cosine', 'dot', 'euclidean', 'manhattan')
MERGE = ('average', 'keep', 'max_pool', 'avg_pool', 'bilinear')
EJECT = ('max', 'm-threshold', 'assignment', 'soft')
THRESHOLD_MODES = ('absolute', 'relative')
MATCH_FEATURES = ('raw', 'layernorm')
INJECTORS = ('global', 'local')
# the most literal reading of the paper, point by point (module docstring; docs/token_adapter.md)
PAPER_PRESET = dict(importance='max', selection='scores', metric='cosine', merge='average', eject_mode='m-threshold',
                    threshold=0.02, threshold_mode='absolute', match_features='raw', injector='global',
                    separate_drops=False, unique_ratio_h=0.1, unique_ratio_w=0.05)


def token_importance(x: Tensor, kind: str = 'max') -> Tensor:
    """x: (B, H, W, C) -> (B, H, W) importance per token."""
    if kind == 'max':
        return x.amax(-1)
    if kind == 'sum':
        return x.sum(-1)
    return x.amax(-1) - x.amin(-1)  # range


def match_space(x: Tensor, kind: str) -> Tensor:
    """x: (..., C) -> the features similarities are computed on: raw, or LayerNorm'd without affine."""
    return x if kind == 'raw' else F.layer_norm(x, x.shape[-1:])


def redundancy_line_scores(x: Tensor, valid: Optional[Tensor] = None):
    """Line scores of ``importance='redundancy'``: 1 - mean cosine of a line's tokens with the same-position tokens
    of its neighbouring lines. x: (B, H, W, C) (already in the matching space); valid: (B, H, W) or None.
    Returns (rows (B, H), cols (B, W)); lines without a real token score -inf (dropped first)."""
    xn = F.normalize(x, dim=-1)
    ok = torch.ones(x.shape[:3], dtype=x.dtype, device=x.device) if valid is None else valid.to(x.dtype)
    out = []
    for axis in (1, 2):                                       # rows: neighbours along H; columns: along W
        n = x.shape[axis]
        a, b = xn.narrow(axis, 1, n - 1), xn.narrow(axis, 0, n - 1)
        pair_ok = ok.narrow(axis, 1, n - 1) * ok.narrow(axis, 0, n - 1)
        cos = (a * b).sum(-1) * pair_ok                       # (B, n-1, W) or (B, H, n-1): pair i, i+1
        other = 3 - axis                                      # sum over the other spatial axis
        pair_sum, pair_cnt = cos.sum(other), pair_ok.sum(other)           # (B, n-1)
        zero = pair_sum.new_zeros(pair_sum.shape[0], 1)
        sim = F.pad(pair_sum, (1, 0)) + F.pad(pair_sum, (0, 1)) if n > 1 else zero
        cnt = F.pad(pair_cnt, (1, 0)) + F.pad(pair_cnt, (0, 1)) if n > 1 else zero
        score = 1 - sim / cnt.clamp_min(1)
        real = ok.amax(other) > 0
        out.append(score.masked_fill(~real, float('-inf')))
    return out[0], out[1]


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


def _separated_drop_order(score: Tensor, n_drop: int) -> Tensor:
    """Greedy drop order of ``separate_drops``: (B, L) scores -> (B, L) line order, kept lines first.

    Repeatedly drops the lowest-scoring line that has no dropped neighbour (lines without a real token, score
    -inf, are always allowed, so padding still goes first); only when none is left, the lowest remaining one."""
    B, L = score.shape
    dropped = torch.zeros(B, L, dtype=torch.bool, device=score.device)
    blocked = torch.zeros_like(dropped)
    batch = torch.arange(B, device=score.device)
    padding = torch.isneginf(score)
    for _ in range(n_drop):
        allowed = ~dropped & (~blocked | padding)
        allowed = torch.where(allowed.any(1, keepdim=True), allowed, ~dropped)
        pick = score.masked_fill(~allowed, float('inf')).argmin(1)
        dropped[batch, pick] = True
        real = ~padding[batch, pick]
        blocked[batch[real], (pick[real] - 1).clamp_min(0)] = True
        blocked[batch[real], (pick[real] + 1).clamp_max(L - 1)] = True
    # kept lines first, then the dropped ones, each by descending score (a kept padding line may tie a dropped one)
    by_score = score.argsort(dim=1, descending=True)
    return by_score.gather(1, dropped.gather(1, by_score).to(torch.int8).sort(dim=1, stable=True).indices)


def _select_lines(score: Tensor, n_keep: int, n_unique: int, selection: str, generator=None,
                  separate_drops: bool = False):
    """Pick the kept lines (rows or columns) of each sample and mark the unique ones.

    score: (B, L). Returns kept: (B, n_keep) line indices in ascending order, unique: (B, n_keep) bool.
    """
    B, L = score.shape
    if selection == 'scores' and separate_drops:
        order = _separated_drop_order(score, L - n_keep)
    elif selection == 'scores':
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


def _neighbour_lines(kept: Tensor, is_rep: Tensor, L: int):
    """For every line 0..L-1 of each sample, the kept-grid positions of the nearest representative line at or
    before it and at or after it (the other one where a side has none). kept: (B, n_keep) ascending line
    indices; is_rep: (B, n_keep) bool. Returns (before, after): (B, L) positions in [0, n_keep)."""
    B, n_keep = kept.shape
    pos = torch.arange(n_keep, device=kept.device).expand(B, -1)
    line_pos = torch.full((B, L), -1, dtype=torch.long, device=kept.device)
    line_pos.scatter_(1, kept, torch.where(is_rep, pos, torch.full_like(pos, -1)))   # rep line -> its position
    idx = torch.arange(L, device=kept.device).expand(B, -1)
    before_line = torch.where(line_pos >= 0, idx, torch.full_like(idx, -1)).cummax(1).values
    rev = torch.where(line_pos >= 0, L - 1 - idx, torch.full_like(idx, -1)).flip(1).cummax(1).values.flip(1)
    after_line = torch.where(rev >= 0, L - 1 - rev, torch.full_like(rev, -1))
    before_line = torch.where(before_line >= 0, before_line, after_line)
    after_line = torch.where(after_line >= 0, after_line, before_line)
    return line_pos.gather(1, before_line), line_pos.gather(1, after_line)


def _ejector_window(kept: Tensor, L: int, radius: int):
    """Kept-grid positions within ``radius`` kept lines of every line: (B, L, 2 * radius + 2) positions and a mask.

    A dropped line between kept positions p and p + 1 gets p - radius .. p + 1 + radius; a kept line at position p
    gets p - radius .. p + radius."""
    B, n_keep = kept.shape
    idx = torch.arange(L, device=kept.device)
    n_before = (kept[:, None, :] <= idx[None, :, None]).sum(-1)            # (B, L) kept lines at or before
    is_kept = torch.zeros(B, L, dtype=torch.bool, device=kept.device).scatter_(1, kept, True)
    offsets = torch.arange(2 * radius + 2, device=kept.device)
    pos = (n_before - 1 - radius)[..., None] + offsets                      # (B, L, K)
    ok = (pos >= 0) & (pos < n_keep) & ~(is_kept[..., None] & (offsets == 2 * radius + 1))
    return pos.clamp(0, n_keep - 1), ok


@register_reducer
class TokenAdapter(TokenReducer):
    """Token Adapter injector + ejector. See the module docstring for the algorithm and the options beyond the
    paper.

    Args:
        r_h, r_w: share of rows / columns removed, in [0, 1). Paper default (and default when ``grid`` is not
            given) 0.3 / 0.3.
        grid: (h, w) or int: number of rows / columns kept, instead of ratios (windowed hosts need every
            window reduced to the same k x k). Give either ``grid`` or ratios.
        preset: 'paper' (default, the only one): the most literal reading of the paper, ``PAPER_PRESET``
            (docs/token_adapter.md lists it point by point). The defaults of the options below are the preset's
            values (tested), so a config that names none of them is the paper's reading; an option given (or None)
            overrides it / takes the preset's value (one swap at a time, as BENCHMARKS.md section 11 does).
        unique_ratio_h, unique_ratio_w: share of the kept rows / columns that stay unique (untouched), in [0, 1).
            Preset: 0.1 / 0.05 (not given in the text; read off Fig. 6b).
        importance: line score: per-token 'max' (paper), 'sum' or 'range' over channels, then max per line; or
            'attention': the cls attention of the host (Tab. 4a "scores (attn.)"; the host must expose it); or
            'redundancy' (not in the paper): 1 - mean cosine with the neighbouring lines.
        selection: 'scores' (paper), or the Tab. 4a baselines 'random' / 'alternating'.
        separate_drops: never drop two adjacent lines while another choice is left (``selection='scores'``).
            Preset: False.
        metric: normal -> representative matching: 'cosine' (paper), 'dot', 'euclidean', 'manhattan'.
        match_features: 'raw' (paper: the block output) or 'layernorm' (LayerNorm without affine before every
            similarity).
        injector: 'global' (paper: most similar representative anywhere) or 'local' (among the <= 4 at the
            crossing of the nearest representative rows / columns around the token).
        merge: 'average' (paper); ablations 'keep' (drop normal tokens), 'max_pool' / 'avg_pool' / 'bilinear'
            (resize the whole grid to the kept size, ignoring the matching).
        eject_mode: 'm-threshold' (paper) or 'max'; 'assignment' (not in the paper): every token takes the
            reduced token it was merged into, an exact unmerge as ToMe's; 'soft' (not in the paper): a
            softmax-weighted average, see ``eject_temperature``.
        threshold: 'm-threshold' margin on the cosine, in [0, 2]. The paper gives no value; 0.5 (a third-party
            choice) averages most of the grid on our first-stage CamVid model (mIoU 28.1 -> 10.1, features
            restored), 0.02 is within 0.5 mIoU of 'max' (BENCHMARKS.md section 4): preset 0.02.
        threshold_mode: how ``threshold`` is read. 'absolute' (paper reading): reduced tokens with
            1 - cos <= threshold join the nearest one; 'relative' (scale-free): those with cos >= cos_max - threshold
            (relative to the token's best match). Default 'absolute'.
        eject_temperature: t > 0 of ``eject_mode='soft'``: weights exp(-t * d / s), d = 1 - cos (on
            ``match_features``), s = the image's mean distance of a token to its best reduced match. Default 4.
        eject_radius: 'soft' candidates: the reduced tokens within this many kept lines of the token's position
            (>= 0; 0: the <= 2 x 2 kept tokens around a dropped position, the token itself at a kept one); None:
            the ``eject_topk`` most similar reduced tokens of the whole grid. Default 1.
        eject_topk: candidates of the global soft ejector (``eject_radius=None``), >= 1. Default 4.
        seed: seed of the 'random' selection.
    """

    def __init__(self, r_h: Optional[float] = None, r_w: Optional[float] = None,
                 grid: Union[int, Sequence[int], None] = None, preset: str = 'paper',
                 unique_ratio_h: float = 0.1, unique_ratio_w: float = 0.05, importance: str = 'max',
                 selection: str = 'scores', separate_drops: bool = False, metric: str = 'cosine',
                 match_features: str = 'raw', injector: str = 'global', merge: str = 'average',
                 eject_mode: str = 'm-threshold', threshold: float = 0.02, threshold_mode: str = 'absolute',
                 eject_temperature: float = 4.0,
                 eject_radius: Optional[int] = 1, eject_topk: int = 4, seed: int = 0):
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
        self.preset = check_choice('preset', preset, ('paper',))
        given = dict(unique_ratio_h=unique_ratio_h, unique_ratio_w=unique_ratio_w, importance=importance,
                     selection=selection, separate_drops=separate_drops, metric=metric, match_features=match_features,
                     injector=injector, merge=merge, eject_mode=eject_mode, threshold=threshold,
                     threshold_mode=threshold_mode)
        opt = {k: PAPER_PRESET[k] if v is None else v for k, v in given.items()}   # None: the preset's value
        self.unique_ratio_h = check_ratio('unique_ratio_h', opt['unique_ratio_h'])
        self.unique_ratio_w = check_ratio('unique_ratio_w', opt['unique_ratio_w'])
        self.importance = check_choice('importance', opt['importance'], IMPORTANCE)
        self.selection = check_choice('selection', opt['selection'], SELECTION)
        self.separate_drops = check_choice('separate_drops', opt['separate_drops'], (False, True))
        self.metric = check_choice('metric', opt['metric'], METRICS)
        self.match_features = check_choice('match_features', opt['match_features'], MATCH_FEATURES)
        self.injector = check_choice('injector', opt['injector'], INJECTORS)
        self.merge = check_choice('merge', opt['merge'], MERGE)
        self.eject_mode = check_choice('eject_mode', opt['eject_mode'], EJECT)
        self.threshold = check_ratio('threshold', opt['threshold'], 0.0, 2.0, high_inclusive=True)
        self.threshold_mode = check_choice('threshold_mode', opt['threshold_mode'], THRESHOLD_MODES)
        if not isinstance(eject_temperature, (int, float)) or isinstance(eject_temperature, bool) \
                or eject_temperature <= 0:
            raise ValueError(f'eject_temperature must be a number > 0, got {eject_temperature!r}')
        self.eject_temperature = float(eject_temperature)
        self.eject_radius = None if eject_radius is None else check_int('eject_radius', eject_radius, 0)
        self.eject_topk = check_int('eject_topk', eject_topk, 1)
        self.seed = check_int('seed', seed, 0)
        self.enabled = grid is not None or self.r_h > 0 or self.r_w > 0
        self.needs_importance = self.importance == 'attention'
        if self.eject_mode == 'assignment' and self.merge != 'average':
            raise ValueError("eject_mode='assignment' restores from the merge groups: it needs merge='average', "
                             f'got merge={self.merge!r}')
        if self.injector == 'local' and self.metric != 'cosine':
            raise ValueError(f"injector='local' matches by cosine: it needs metric='cosine', "
                             f'got metric={self.metric!r}')

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
        eject = self.eject_mode
        if eject == 'm-threshold':
            eject += f'@{self.threshold} ({self.threshold_mode})'
        elif eject == 'soft':
            eject += f'@t={self.eject_temperature}, radius={self.eject_radius}, topk={self.eject_topk}'
        return (f'{size}, unique=({self.unique_ratio_h}, {self.unique_ratio_w}), importance={self.importance}'
                f'{" (separate drops)" if self.separate_drops else ""}, selection={self.selection}, '
                f'metric={self.metric} on {self.match_features}, injector={self.injector}, merge={self.merge}, '
                f'eject={eject}')

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

    def _line_scores(self, xf: Tensor, xm: Tensor, valid: Optional[Tensor], importance: Optional[Tensor]):
        """(row scores (B, H), column scores (B, W)); padding never scores (its lines go first)."""
        if self.importance == 'redundancy':
            return redundancy_line_scores(xm, valid)
        score = importance.float() if self.importance == 'attention' else token_importance(xf, self.importance)
        score = masked_fill_invalid(score, valid, float('-inf'))                   # (B, H, W)
        return score.amax(2), score.amax(1)

    def reduce(self, x: Tensor, valid: Optional[Tensor] = None, importance: Optional[Tensor] = None) -> Reduction:
        """x: (B, H, W, C); valid: (B, H, W) bool or None; importance: (B, H, W) host importance (cls
        attention) when ``importance='attention'``."""
        B, H, W, C = x.shape
        n_keep_h, n_keep_w, n_uniq_h, n_uniq_w = self._line_plan(H, W)
        if not self.enabled or (n_keep_h, n_keep_w) == (H, W):
            return identity_reduction(x, valid)
        N = H * W
        xf = x.to(compute_dtype(x))
        xm = match_space(xf, self.match_features)          # what similarities are computed on
        generator = torch.Generator().manual_seed(self.seed) if self.selection == 'random' else None

        # 1-2. row / column scores, kept and unique lines
        row_score, col_score = self._line_scores(xf, xm, valid, importance)
        rows, row_unique = _select_lines(row_score, n_keep_h, n_uniq_h, self.selection, generator,
                                         self.separate_drops)
        cols, col_unique = _select_lines(col_score, n_keep_w, n_uniq_w, self.selection, generator,
                                         self.separate_drops)

        # flat index of every kept token in the full grid, row-major over the kept grid: (B, Nr)
        kept_flat = (rows[:, :, None] * W + cols[:, None, :]).flatten(1)
        Nr = kept_flat.shape[1]
        xm_seq = xm.reshape(B, N, C)
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
            if self.injector == 'local':
                target = self._local_targets(xm_seq, normal_flat, kept_flat, rows, cols, row_unique, col_unique,
                                             H, W, red_valid)
            else:
                sim = similarity(gather_tokens(xm_seq, normal_flat),
                                 gather_tokens(gather_tokens(xm_seq, kept_flat), rep_pos), self.metric)
                if red_valid is not None:
                    sim = sim.masked_fill(~red_valid.gather(1, rep_pos)[:, None, :], torch.finfo(sim.dtype).min)
                target = rep_pos.gather(1, sim.argmax(-1))                        # (B, Nn) into kept set
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
                pooled = resize_tokens(valid[..., None].float(), (H, W), (n_keep_h, n_keep_w), 'max')
                red_valid = pooled[..., 0].flatten(1) > 0
        else:  # keep: the normal tokens are dropped
            reduce_fn = lambda y: gather_tokens(y.reshape(B, N, -1), kept_flat)  # noqa: E731
        x_merged = reduce_fn(xf)

        if self.eject_mode == 'assignment':
            restore = restore_by_assignment(assign, H, W)
        elif self.eject_mode == 'soft' and self.eject_radius is not None:
            restore = self._local_soft_ejector(xm_seq, match_space(x_merged, self.match_features), rows, cols, H, W,
                                               red_valid, valid_seq)
        else:
            restore = self._ejector(xm_seq, match_space(x_merged, self.match_features), H, W, red_valid, valid_seq)
        return Reduction(tokens=x_merged.to(x.dtype), grid=(n_keep_h, n_keep_w), restore=restore,
                         reduce=lambda y: reduce_fn(y.to(compute_dtype(y))).to(y.dtype), valid=red_valid, info=info)

    def _local_targets(self, xm_seq, normal_flat, kept_flat, rows, cols, row_unique, col_unique, H, W, red_valid):
        """Local injector: each normal token -> the most cosine-similar of the representative tokens at the crossing
        of the nearest representative rows above / below and columns left / right. Returns (B, Nn) kept-set
        indices."""
        B, Nn = normal_flat.shape
        w_r = cols.shape[1]
        r_before, r_after = _neighbour_lines(rows, ~row_unique, H)              # (B, H) kept-row positions
        c_before, c_after = _neighbour_lines(cols, ~col_unique, W)              # (B, W)
        ni, nj = normal_flat // W, normal_flat % W
        cand_r = torch.stack([r_before.gather(1, ni), r_after.gather(1, ni)], -1)          # (B, Nn, 2)
        cand_c = torch.stack([c_before.gather(1, nj), c_after.gather(1, nj)], -1)
        cand = (cand_r[..., :, None] * w_r + cand_c[..., None, :]).flatten(2)          # (B, Nn, 4) kept-set idx
        kept_tok = F.normalize(gather_tokens(xm_seq, kept_flat), dim=-1)               # (B, Nr, C)
        c_feat = gather_tokens(kept_tok, cand.flatten(1)).view(B, Nn, 4, -1)
        sim = (c_feat @ F.normalize(gather_tokens(xm_seq, normal_flat), dim=-1)[..., None]).squeeze(-1)
        if red_valid is not None:
            sim = sim.masked_fill(~red_valid.gather(1, cand.flatten(1)).view(B, Nn, 4), -2.0)
        return cand.gather(2, sim.argmax(-1, keepdim=True)).squeeze(-1)

    def _soft_weights(self, dist: Tensor, allowed: Tensor, valid_seq: Optional[Tensor]) -> Tensor:
        """Softmax weights exp(-t * d / s) over the allowed candidates; s = mean best-match distance of the
        image's real tokens. dist, allowed: (B, N, K) -> (B, N, K)."""
        dist = dist.masked_fill(~allowed, float('inf'))
        scale = nearest_distance_scale(dist, None if valid_seq is None else valid_seq.to(dist.dtype))
        logits = -self.eject_temperature * (dist - dist.amin(-1, keepdim=True)) / scale
        return logits.masked_fill(~allowed, float('-inf')).softmax(-1)

    def _local_soft_ejector(self, xm_seq, xm_merged, rows, cols, H, W, red_valid, valid_seq):
        """Soft ejector over the reduced tokens within ``eject_radius`` kept lines of each position. The
        similarities come from the same (N x N_r) matmul as the paper's ejector (a gather of K <= 16 per token from
        it: gathering the K candidate feature vectors instead is memory-bound and 3x slower on CPUs)."""
        B, N, _ = xm_seq.shape
        w_r = cols.shape[1]
        pr, okr = _ejector_window(rows, H, self.eject_radius)                 # (B, H, K1)
        pc, okc = _ejector_window(cols, W, self.eject_radius)                 # (B, W, K1)
        cand = (pr[:, :, None, :, None] * w_r + pc[:, None, :, None, :]).reshape(B, N, -1)   # (B, N, K)
        allowed = (okr[:, :, None, :, None] & okc[:, None, :, None, :]).reshape(B, N, -1)
        sim_all = F.normalize(xm_seq, dim=-1) @ F.normalize(xm_merged, dim=-1).transpose(1, 2)   # (B, N, Nr)
        if red_valid is not None:
            allowed = allowed & red_valid.gather(1, cand.flatten(1)).view_as(allowed)
            # a real token with only padding around it (a corner of the real area): its best real match
            lost = ~allowed.any(-1, keepdim=True)
            best = sim_all.masked_fill(~red_valid[:, None, :], -2.0).argmax(-1, keepdim=True)
            cand = torch.where(lost, best.expand_as(cand), cand)
            allowed = allowed | (lost & (torch.arange(cand.shape[-1], device=cand.device) == 0))
        dist = 1 - sim_all.gather(2, cand)                                                   # (B, N, K)
        return restore_by_weights(cand, self._soft_weights(dist, allowed, valid_seq), H, W, sim_all.shape[-1])

    def _ejector(self, xm_seq: Tensor, xm_merged: Tensor, H: int, W: int, red_valid: Optional[Tensor] = None,
                 valid_seq: Optional[Tensor] = None):
        """Match original tokens (B, N, C) to merged reduced tokens (B, Nr, C) (both in the matching space), never
        to a padding-only reduced token; return y: (B, Nr, D) -> (B, H, W, D)."""
        B, N, _ = xm_seq.shape
        sim = F.normalize(xm_seq, dim=-1) @ F.normalize(xm_merged, dim=-1).transpose(1, 2)   # (B, N, Nr)
        if red_valid is not None:
            sim = sim.masked_fill(~red_valid[:, None, :], -2.0)   # below any cosine: never nearest, never within
        if self.eject_mode == 'soft':      # global: the top-k most similar reduced tokens
            k = min(self.eject_topk, sim.shape[-1])
            top, idx = sim.topk(k, dim=-1)
            allowed = top > -2.0
            allowed[..., 0] = True
            return restore_by_weights(idx, self._soft_weights(1 - top, allowed, valid_seq), H, W)
        nearest = sim.argmax(-1)                                                             # (B, N)
        if self.eject_mode == 'max':
            return restore_by_assignment(nearest, H, W)
        if self.threshold_mode == 'relative':
            weight = sim >= sim.amax(-1, keepdim=True) - self.threshold
            if red_valid is not None:
                weight &= red_valid[:, None, :]
        else:
            weight = (1.0 - sim) <= self.threshold
        weight.scatter_(2, nearest[..., None], True)          # the nearest one always counts
        weight = weight.to(sim.dtype)
        weight = weight / weight.sum(-1, keepdim=True)        # >= 1 entry per row: no division by zero

        def restore(y: Tensor) -> Tensor:
            out = weight.to(y.dtype) @ y
            return out.view(B, H, W, y.shape[-1])
        return restore
