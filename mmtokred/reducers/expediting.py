"""Expediting large-scale vision transformers (NeurIPS 2022): token clustering + token reconstruction.

Clustering (reduce), x: (B, H, W, C) -> (B, h*w, C):
  * initial centres: adaptive average pooling of the grid to h x w; each token's cell is the nearest-interpolated
    cell index (fixed for all iterations, as in the reference);
  * a token may only join the lambda x lambda centres around its own cell (locality, lambda odd);
  * kappa iterations of: squared L2 distance on raw tokens, affinity = softmax over the candidates of
    (-temperature * distance), centre = affinity-weighted mean of its tokens (denominator clamped >= 1e-16).
  ``temperature`` *multiplies* the distance, as in the reference code (the paper divides by tau = 1 / t).

  The reference computes a dense N x hw distance matrix and masks it. Here tokens are compared with the centres
  around their own cell only: cells are grouped in tiles of ``tile`` x ``tile``, each tile's tokens meet the
  (tile + lambda - 1)^2 centres of its window in one batched matmul, masked to each token's lambda^2 window
  (``tile=1``: exactly the lambda^2 candidates). Same result as the dense masked computation (tested), with
  N * (tile + lambda - 1)^2 instead of N * hw work.

Reconstruction (restore): weights exp(-t * d) between the tokens *before* clustering and the centres at clustering
time, top ``topk`` per token, then normalised: ``normalize='l2'`` as the reference (right for logits: argmax is
unchanged, but it inflates feature norms 1.2-2.6x), or ``'sum'`` (sum-to-one; use it when restoring features).
Deviation from the reference, on purpose: the weights are computed as exp(-t * (d - d_min)) per token. After
either normalisation this is exactly the same value, but it cannot underflow to an all-zero row (where the
reference returns a zero vector). Negative distances (rounding) are clamped to 0.

Temperature modes. ``temperature_mode='absolute'`` (default, the reference): the logits are -t * d with d the
squared L2 distance, so t depends on the feature scale (0.02 on the CamVid ViT-T, 20 on DINOv2 ViT-S/14: a
1000x range). ``'relative'`` (not in the paper; scale-free): the reference algorithm with a per-sample
temperature t / s, s = the mean over the sample's real tokens of the squared distance to the nearest allowed
*initial* centre (the pooled cell averages, measured in the first iteration), used for every iteration and for the
reconstruction. Multiplying the features by a constant changes nothing, and one t fits backbones whose tuned
absolute temperatures differ 1000x (t * s = 4-7 for the CamVid ViT-T's 0.02, 3-5 for DINOv2's 20; BENCHMARKS.md
section 11). The batch dimension is the sample (a Swin window on the Swin host), so s is per image or per window.
Cost: one min and one mean over the first iteration's distances.
"""
import functools
import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .base import (
    Reduction,
    TokenReducer,
    check_choice,
    check_int,
    check_ratio,
    compute_dtype,
    identity_reduction,
    register_reducer,
    restore_by_assignment,
)
from .pooling import resize_tokens


def _float32_of(num: int, den: int) -> Tuple[int, int]:
    """num / den (both > 0) rounded to the nearest float32, ties to even, in integer arithmetic: (m, e) with
    value m * 2**e, 2**23 <= m <= 2**24. No subnormals (fine for grid sizes)."""
    e = num.bit_length() - den.bit_length() - 24
    while True:                                     # 2**23 <= num / (den * 2**e) < 2**24: a 24-bit mantissa
        n, d = (num, den << e) if e >= 0 else (num << -e, den)
        m, rem = divmod(n, d)
        if m >= 1 << 24:
            e += 1
        elif m < 1 << 23:
            e -= 1
        else:
            break
    return m + (2 * rem > d or (2 * rem == d and m & 1)), e


def nearest_source_indices(in_size: int, out_size: int) -> Tuple[int, ...]:
    """Source index of every output index of ``F.interpolate(mode='nearest')`` along one axis (out_size,), as
    PyTorch computes it: scale = float32(in / out), src = min(floor(float32(dst * scale)), in - 1) (its shortcuts
    for out == in and out == 2 * in give the same indices). Plain Python ints, so that dynamo constant-folds it
    (tested equal to F.interpolate for every size pair up to 200)."""
    m, e = _float32_of(in_size, out_size)
    src = []
    for dst in range(out_size):
        p = dst * m                                 # dst * scale = p * 2**e exactly; round p to 24 bits
        shift = max(p.bit_length() - 24, 0)
        if shift:
            rem, half = p & ((1 << shift) - 1), 1 << (shift - 1)
            p = (p >> shift) + (rem > half or (rem == half and (p >> shift) & 1))
        shift += e
        src.append(min(p << shift if shift >= 0 else p >> -shift, in_size - 1))      # floor
    return tuple(src)


def initial_cell_labels(H: int, W: int, h: int, w: int, device=None):
    """Cell row of every token row (H,) and cell column of every token column (W,), by nearest interpolation of
    the cell-index grid (the reference's rule, including its float32 rounding: :func:`nearest_source_indices`)."""
    return (torch.tensor(nearest_source_indices(h, H), device=device),
            torch.tensor(nearest_source_indices(w, W), device=device))


def _runs(labels: Sequence[int], n_groups: int) -> Tensor:
    """Members of each group of a monotone label sequence, padded with -1: (n_groups, max group size), built from
    Python ints (static shape under torch.compile)."""
    groups = [[] for _ in range(n_groups)]
    for i, g in enumerate(labels):
        groups[g].append(i)
    size = max(len(g) for g in groups)
    return torch.tensor([g + [-1] * (size - len(g)) for g in groups])


TEMPERATURE_MODES = ('absolute', 'relative')


def nearest_distance_scale(dist: Tensor, token_weight: Optional[Tensor] = None) -> Tensor:
    """Per-sample distance scale of ``temperature_mode='relative'``: the mean over real tokens of the distance to
    the nearest allowed centre.

    dist: (B, N, M) distances, +inf where a centre is not allowed; token_weight: (B, N) 1 for real tokens, 0 for
    padding / dead rows (None: all real). Returns (B, 1, 1), never below 1e-12 (a constant sample has every
    distance 0: its logits stay 0 and finite)."""
    nearest = dist.amin(-1)                                                  # (B, N)
    if token_weight is None:
        scale = nearest.mean(-1)
    else:
        nearest = torch.where(token_weight > 0, nearest, torch.zeros_like(nearest))
        scale = nearest.sum(-1) / token_weight.sum(-1).clamp_min(1.0)
    return scale.clamp_min(1e-12)[:, None, None]


def _tile_tables(H: int, W: int, h: int, w: int, locality: int, tile: int, device: torch.device):
    """Index tables of the local clustering, cached per geometry (eager).

    The h x w cells are grouped into tiles of ``tile`` x ``tile`` cells. Returns
      tok: (T, S) flat token indices of each tile (H*W = a zero padding token),
      cand: (T, L) flat centre indices of each tile's candidate window (h*w = a zero padding centre),
      mask: (T, S, L) True where the token may join the centre: inside the lambda x lambda window around the
            token's own initial cell (the reference's locality rule), both real.
    With ``tile=1`` every token is compared with exactly its lambda^2 candidates.
    Under torch.compile the tables are built in the graph (dynamo does not keep an lru_cache; every shape comes
    from Python ints, so there is no graph break); in eager they are built once per geometry and device.
    """
    if torch.compiler.is_compiling():
        return _build_tile_tables(H, W, h, w, locality, tile, device)
    return _cached_tile_tables(H, W, h, w, locality, tile, device)


def _build_tile_tables(H: int, W: int, h: int, w: int, locality: int, tile: int, device: torch.device):
    """:func:`_tile_tables` uncached. The labels, group sizes and used candidate slots are Python ints; the
    tensor ops below have static shapes."""
    r = locality // 2
    row_ints, col_ints = nearest_source_indices(h, H), nearest_source_indices(w, W)
    row_lab, col_lab = torch.tensor(row_ints, device=device), torch.tensor(col_ints, device=device)
    th, tw = -(-h // tile), -(-w // tile)
    rows = _runs([c // tile for c in row_ints], th).to(device)                       # (th, sh)
    cols = _runs([c // tile for c in col_ints], tw).to(device)                       # (tw, sw)
    ok = (rows[:, None, :, None] >= 0) & (cols[None, :, None, :] >= 0)            # (th, tw, sh, sw)
    pad_tok = torch.full_like(ok, H * W, dtype=torch.long)
    tok = torch.where(ok, rows[:, None, :, None] * W + cols[None, :, None, :], pad_tok)
    tok_r = torch.where(ok, row_lab[rows.clamp_min(0)][:, None, :, None].expand_as(ok), -10 * h)
    tok_c = torch.where(ok, col_lab[cols.clamp_min(0)][None, :, None, :].expand_as(ok), -10 * w)
    span = range(-r, tile + r)                                                     # window offsets per tile
    wl = len(span)
    cy = torch.arange(th, device=device)[:, None] * tile + torch.arange(-r, tile + r, device=device)[None]
    cx = torch.arange(tw, device=device)[:, None] * tile + torch.arange(-r, tile + r, device=device)[None]
    c_ok = ((cy >= 0) & (cy < h))[:, None, :, None] & ((cx >= 0) & (cx < w))[None, :, None, :]
    pad_cand = torch.full_like(c_ok, h * w, dtype=torch.long)
    cand = torch.where(c_ok, cy[:, None, :, None] * w + cx[None, :, None, :], pad_cand)
    T = th * tw
    tok, tok_r, tok_c = tok.reshape(T, -1), tok_r.reshape(T, -1), tok_c.reshape(T, -1)
    cy_t = cy[:, None, :, None].expand(th, tw, wl, wl).reshape(T, -1)
    cx_t = cx[None, :, None, :].expand(th, tw, wl, wl).reshape(T, -1)
    cand, c_ok = cand.reshape(T, -1), c_ok.reshape(T, -1)
    # drop the candidate slots outside the grid for every tile (one tile: all but h*w)
    used_y = [any(0 <= t * tile + s < h for t in range(th)) for s in span]
    used_x = [any(0 <= t * tile + s < w for t in range(tw)) for s in span]
    used = torch.tensor([i * wl + j for i in range(wl) for j in range(wl) if used_y[i] and used_x[j]], device=device)
    cand, c_ok, cy_t, cx_t = cand[:, used], c_ok[:, used], cy_t[:, used], cx_t[:, used]
    mask = (((tok_r[:, :, None] - cy_t[:, None, :]).abs() <= r) & ((tok_c[:, :, None] - cx_t[:, None, :]).abs() <= r)
            & c_ok[:, None, :])
    return tok, cand, mask


_cached_tile_tables = functools.lru_cache(maxsize=64)(_build_tile_tables)


def local_token_clustering(x: Tensor, h: int, w: int, locality: int, iterations: int, temperature: float,
                           tile: int = 1, valid: Optional[Tensor] = None, temperature_mode: str = 'absolute'):
    """x: (B, H, W, C) fp32 -> (centres (B, h, w, C), reduce_like, centre_valid (B, h, w) bool or None), each
    token joining only centres in its lambda^2 window.

    Tokens are grouped by tile of cells once; per iteration each tile's candidate centres are gathered
    contiguously, token-centre distances are one batched matmul (masked to each token's own window), and the
    weighted sums go back to the centres with index_add (the adjoint of the gather). ``tile=1`` computes exactly
    the lambda^2 candidates per token; larger tiles compute (tile + lambda - 1)^2 (masked), in fewer and larger
    matmuls, which is faster on CPUs. All give the same centres (tested against a dense masked reference).

    ``reduce_like(y: (B, H, W, D)) -> (B, h, w, D)`` averages another tensor with the last iteration's
    affinities (``reduce_like(x) == centres``). With ``valid`` (B, H, W), padded tokens take no part: they are
    left out of the initial pooling and of every centre update, and a centre whose initial cell holds no real
    token is invalid and never a candidate (the reference clusters zero padding with the real tokens).
    ``temperature_mode='relative'``: the temperature is t / s per sample, s = the mean distance of its real tokens
    to their nearest initial centre (:func:`nearest_distance_scale` of the first iteration). Returns the
    temperature used as a 4th item: ``temperature`` itself, or the (B,) per-sample values (for the reconstruction).
    """
    B, H, W, C = x.shape
    M = h * w
    if tile + locality - 1 >= max(h, w):
        tile = max(h, w)      # a tile's window would cover (nearly) the grid: one tile, exactly the h*w centres
    tok, cand, mask = _tile_tables(H, W, h, w, locality, tile, x.device)
    T, S = tok.shape
    L = cand.shape[1]

    def gather_tiles(y):
        """(B, H, W, D) -> (B*T, S, D) tokens of every tile (zeros for the tiles' padding slots)."""
        y_pad = torch.cat([y.reshape(B, H * W, -1), y.new_zeros(B, 1, y.shape[-1])], 1)
        return y_pad[:, tok].reshape(B * T, S, -1)

    xb = gather_tiles(x)                                                   # (B*T, S, C)
    xb_sq = (xb * xb).sum(-1, keepdim=True)                                # (B*T, S, 1)
    neg = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, float('-inf')).repeat(B, 1, 1)
    tok_w = mask.any(-1).to(x.dtype).repeat(B, 1)[..., None]               # padding slots contribute nothing
    flat_cand = cand.reshape(-1)
    offsets = (torch.arange(B, device=x.device) * (M + 1))[:, None]        # per-sample row offset incl. dummy
    scatter_idx = (flat_cand[None] + offsets).reshape(-1)                  # (B*T*L,) rows of (B*(M+1), C)

    centres = resize_tokens(x, (H, W), (h, w), 'avg', valid).reshape(B, M, C)
    centre_valid = None
    if valid is not None:
        tok_w = tok_w * gather_tiles(valid[..., None].to(x.dtype))       # padded tokens contribute nothing
        centre_valid = resize_tokens(valid[..., None].float(), (H, W), (h, w), 'max')[..., 0] > 0
        cv = torch.cat([centre_valid.reshape(B, M), centre_valid.new_zeros(B, 1)], 1)[:, flat_cand]
        neg = neg.masked_fill(~cv.reshape(B * T, 1, L), float('-inf'))
    # a row with no allowed candidate (a tile's padding slot, a token whose window holds only invalid centres) gets
    # finite logits and weight 0: an all -inf softmax row is NaN, and its gradient would be NaN even where the
    # forward masks it out (training a compensator through the clustering)
    dead = torch.isinf(neg).all(-1, keepdim=True)
    neg = neg.masked_fill(dead, 0.0)
    tok_w = tok_w * (~dead).to(x.dtype)                                     # (B*T, S, 1), as tok_w

    def weighted_means(aff, y):
        """Affinity-weighted mean per centre of y: (B*T, S, D) -> (B, M, D)."""
        D = y.shape[-1]
        num = aff.transpose(1, 2) @ y                                      # (B*T, L, D)
        sums = y.new_zeros(B * (M + 1), D).index_add_(0, scatter_idx, num.reshape(-1, D))
        den = y.new_zeros(B * (M + 1)).index_add_(0, scatter_idx, aff.sum(1).reshape(-1).to(y.dtype))
        return (sums / den.clamp_min(1e-16)[:, None]).view(B, M + 1, D)[:, :M]

    aff = None
    t = temperature
    for it in range(iterations):
        padded = torch.cat([centres, centres.new_zeros(B, 1, C)], 1)       # (B, M+1, C), dummy row last
        c = padded[:, flat_cand].reshape(B * T, L, C)                      # (B*T, L, C) contiguous
        c_sq = (padded * padded).sum(-1)[:, flat_cand].reshape(B * T, 1, L)
        dist = (xb_sq + c_sq - 2 * (xb @ c.transpose(1, 2))).clamp_min(0)    # (B*T, S, L)
        if temperature_mode == 'relative' and it == 0:   # one scale per sample, over all its tiles
            allowed_dist = (dist - neg).reshape(B, T * S, L)              # +inf where not allowed
            scale = nearest_distance_scale(allowed_dist, tok_w.reshape(B, T * S))
            t = temperature / scale.repeat_interleave(T, 0)                # (B*T, 1, 1)
        aff = (-t * dist + neg).softmax(-1) * tok_w                        # dead rows and padding -> 0
        centres = weighted_means(aff, xb)

    def reduce_like(y: Tensor) -> Tensor:
        return weighted_means(aff.to(y.dtype), gather_tiles(y)).reshape(B, h, w, -1)

    per_sample_t = t if not isinstance(t, Tensor) else t.view(B, T)[:, 0]
    return centres.reshape(B, h, w, C), reduce_like, centre_valid, per_sample_t


def reconstruction_weights(x: Tensor, centres: Tensor, topk: int, temperature: Union[float, Tensor], normalize: str,
                           centre_valid: Optional[Tensor] = None):
    """x: (B, N, C), centres: (B, M, C), centre_valid: (B, M) or None -> (idx, weight), both (B, N, topk).
    ``temperature``: a number, or (B,) per sample (``temperature_mode='relative'``). Invalid (padding-only) centres
    get weight 0."""
    # squared distances by one matmul (not cdist(...).square(): its sqrt has an infinite gradient at distance 0)
    dist = ((x * x).sum(-1, keepdim=True) + (centres * centres).sum(-1)[:, None, :]
            - 2 * (x @ centres.transpose(1, 2))).clamp_min(0)               # (B, N, M)
    if centre_valid is not None:
        dist = dist.masked_fill(~centre_valid[:, None, :], float('inf'))
    d, idx = dist.topk(topk, dim=-1, largest=False)                        # ascending
    if isinstance(temperature, Tensor):
        temperature = temperature.view(-1, 1, 1)
    weight = torch.exp(-temperature * (d - d[..., :1]))                    # max weight 1: never all-zero
    if normalize == 'l2':
        weight = weight / weight.norm(dim=-1, keepdim=True)
    else:
        weight = weight / weight.sum(-1, keepdim=True)
    return idx, weight


DENSE_RESTORE_RATIO = 128


def restore_by_weights(idx: Tensor, weight: Tensor, H: int, W: int, n_reduced: Optional[int] = None,
                       dense_ratio: int = DENSE_RESTORE_RATIO):
    """Restore closure: every token is the weighted sum of k reduced tokens. idx, weight: (B, H*W, k).
    Returns y: (B, N_r, D) -> (B, H, W, D).

    ``n_reduced`` (N_r, optional): when N_r <= dense_ratio * k, the weights are scattered (summed, so repeated
    indices with zero weight are harmless) into one dense (B, N, N_r) matrix and the restore is one matmul
    (N * N_r * D MACs) instead of gathering k rows of D channels per token (N * k * D values moved): the same
    weighted sum (tested), 3-4x faster for k = 16 of N_r = 784 at 1024 channels on a CPU (BENCHMARKS.md section 13)."""
    B, N, k = idx.shape
    if n_reduced is not None and n_reduced <= dense_ratio * k:
        dense = weight.new_zeros(B, N, n_reduced).scatter_add_(2, idx, weight)

        def restore_dense(y: Tensor) -> Tensor:
            return (dense.to(y.dtype) @ y).view(B, H, W, y.shape[-1])
        return restore_dense

    def restore(y: Tensor) -> Tensor:
        D = y.shape[-1]
        picked = y.gather(1, idx.reshape(B, N * k, 1).expand(-1, -1, D)).view(B, N, k, D)
        return (weight.to(y.dtype)[:, :, None, :] @ picked).squeeze(2).view(B, H, W, D)
    return restore


@register_reducer
class Expediting(TokenReducer):
    """Token clustering + token reconstruction. See the module docstring.

    Args:
        cluster_grid: (h, w) or int: number of cluster centres per axis (ADE20K Segmenter: 28 x 28).
        cluster_ratio: alternative to ``cluster_grid``: share of rows / columns kept, in (0, 1]; h = round(H * ratio).
            Exactly one of the two must be given. ``cluster_ratio=1.0`` or a grid equal to the input disables it.
        locality: lambda, odd, >= 1: candidate window in cells (5 -> 25 candidates).
        iterations: kappa, >= 1.
        temperature: t > 0, multiplies the squared distance (reference convention; paper tau = 1 / t). Default
            0.02 (reference, ``'absolute'``).
        temperature_mode: 'absolute' (default, the reference: t multiplies the raw squared distances) or
            'relative' (scale-free: the distances are first divided by the per-sample mean squared distance to
            the nearest initial centre; see the module docstring). With 'relative', t ~ 3-8 (BENCHMARKS.md
            section 11).
        topk: k, reconstruction neighbours per token, 1 <= k <= h * w.
        normalize: 'l2' (reference), 'sum' (sum-to-one), or 'hard': each token copies its nearest centre (the
            reference DPT inference path).
        tile: cells per side of the blocks the local clustering batches together (>= 1). 1 computes exactly the
            lambda^2 candidates of each token; 4 (default) computes (4 + lambda - 1)^2 per token, masked to the same
            lambda^2, in larger matmuls: same centres, ~10x faster on CPU than tile=1 (see BENCHMARKS.md).
    """

    def __init__(self, cluster_grid: Union[int, Sequence[int], None] = None, cluster_ratio: Optional[float] = None,
                 locality: int = 5, iterations: int = 5, temperature: float = 0.02, topk: int = 20,
                 normalize: str = 'l2', tile: int = 4, temperature_mode: str = 'absolute'):
        super().__init__()
        if (cluster_grid is None) == (cluster_ratio is None):
            raise ValueError('Expediting: give exactly one of cluster_grid (h, w) and cluster_ratio, '
                             f'got cluster_grid={cluster_grid!r}, cluster_ratio={cluster_ratio!r}')
        if cluster_grid is not None:
            grid = (cluster_grid, cluster_grid) if isinstance(cluster_grid, int) else tuple(cluster_grid)
            if len(grid) != 2:
                raise ValueError(f'cluster_grid must be an int or (h, w), got {cluster_grid!r}')
            for name, v in zip(('cluster_grid[0]', 'cluster_grid[1]'), grid):
                check_int(name, v, 1)
            self.cluster_grid = grid
        else:
            self.cluster_grid = None
        self.cluster_ratio = None if cluster_ratio is None else check_ratio(
            'cluster_ratio', cluster_ratio, 0.0, 1.0, high_inclusive=True)
        if self.cluster_ratio == 0.0:
            raise ValueError('cluster_ratio must be a number in (0, 1], got 0.0')
        self.locality = check_int('locality', locality, 1)
        if locality % 2 == 0:
            raise ValueError(f'locality (lambda) must be odd, got {locality}')
        self.iterations = check_int('iterations', iterations, 1)
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f'temperature must be a number > 0, got {temperature!r}')
        self.temperature = float(temperature)
        self.temperature_mode = check_choice('temperature_mode', temperature_mode, TEMPERATURE_MODES)
        self.topk = check_int('topk', topk, 1)
        self.tile = check_int('tile', tile, 1)
        self.normalize = check_choice('normalize', normalize, ('l2', 'sum', 'hard'))
        if self.cluster_grid is not None and self.topk > self.cluster_grid[0] * self.cluster_grid[1]:
            raise ValueError(f'topk ({topk}) must not exceed the number of clusters '
                             f'{self.cluster_grid[0]}x{self.cluster_grid[1]}')
        self.enabled = self.cluster_ratio != 1.0

    def extra_repr(self):
        size = f'grid={self.cluster_grid}' if self.cluster_grid else f'ratio={self.cluster_ratio}'
        return (f'{size}, lambda={self.locality}, kappa={self.iterations}, t={self.temperature} '
                f'({self.temperature_mode}), k={self.topk}, normalize={self.normalize}')

    def plan(self, H: int, W: int):
        if self.cluster_grid is not None:
            h, w = self.cluster_grid
        else:
            h, w = max(1, math.floor(H * self.cluster_ratio + 0.5)), max(1, math.floor(W * self.cluster_ratio + 0.5))
        if h > H or w > W:
            raise ValueError(f'Expediting: cluster_grid {h}x{w} does not fit the {H}x{W} token grid')
        if self.topk > h * w:
            raise ValueError(f'Expediting: topk ({self.topk}) must not exceed the number of clusters {h}x{w}')
        return h, w

    def reduce(self, x: Tensor, valid: Optional[Tensor] = None) -> Reduction:
        """x: (B, H, W, C); valid: (B, H, W) bool or None (padded tokens take no part)."""
        B, H, W, C = x.shape
        h, w = self.plan(H, W)
        if not self.enabled or (h, w) == (H, W):
            return identity_reduction(x, valid)
        xf = x.to(compute_dtype(x))
        centres, reduce_like, centre_valid, temperature = local_token_clustering(
            xf, h, w, self.locality, self.iterations, self.temperature, self.tile, valid, self.temperature_mode)
        centres_seq = centres.reshape(B, h * w, C)
        red_valid = None if centre_valid is None else centre_valid.reshape(B, h * w)
        hard = self.normalize == 'hard'    # hard copy needs only the nearest centre
        idx, weight = reconstruction_weights(xf.reshape(B, H * W, C), centres_seq, 1 if hard else self.topk,
                                             temperature, 'sum' if hard else self.normalize, red_valid)
        info = dict(grid=(H, W), cluster_grid=(h, w), nearest_cluster=idx[..., 0].view(B, H, W))

        def reduce(y: Tensor) -> Tensor:
            return reduce_like(y.reshape(B, H, W, -1).to(xf.dtype)).reshape(B, h * w, -1).to(y.dtype)

        if self.normalize == 'hard':
            return Reduction(tokens=centres_seq.to(x.dtype), grid=(h, w), reduce=reduce, valid=red_valid,
                             restore=restore_by_assignment(idx[..., 0], H, W), info=info)

        # dense (N x hw) matmul only when k is a large share of the clusters (Swin windows: k 60 of 64), the
        # rule this reducer was measured with (BENCHMARKS.md section 7); otherwise a gather of k rows per token
        restore = restore_by_weights(idx, weight, H, W, h * w, dense_ratio=4)
        return Reduction(tokens=centres_seq.to(x.dtype), grid=(h, w), restore=restore, reduce=reduce,
                         valid=red_valid, info=info)
