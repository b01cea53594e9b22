"""Simple baselines of the Expediting paper (Tab. 4-5): resize the token grid down, run the span, resize back.

reduce: adaptive average pooling ('avg'), adaptive max pooling ('max') or bilinear resizing ('bilinear') of the
(H, W) grid to (h, w); restore: bilinear (default) or nearest upsampling of the refined (h, w) grid to (H, W).
With a ``valid`` mask, padded tokens take no part: averages and bilinear weights are renormalised over the real
tokens (normalised convolution), max pooling ignores them, and a reduced cell with no real token is invalid.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch.nn.functional as F
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
)


def _resize(g: Tensor, size, mode: str) -> Tensor:
    """g: (B, D, H, W) -> (B, D, h, w)."""
    if mode == 'avg':
        return F.adaptive_avg_pool2d(g, size)
    if mode == 'max':
        return F.adaptive_max_pool2d(g, size)
    if mode == 'nearest':
        return F.interpolate(g, size=size, mode='nearest')
    return F.interpolate(g, size=size, mode='bilinear', align_corners=False)


def resize_tokens(y: Tensor, grid: Tuple[int, int], size: Tuple[int, int], mode: str,
                  valid: Optional[Tensor] = None) -> Tensor:
    """y: (B, H*W, D) or (B, H, W, D) on the (H, W) ``grid`` -> (B, h, w, D) resized to ``size``, padded positions
    (``valid`` False, (B, H, W)) excluded. mode: 'avg', 'max', 'bilinear' or 'nearest'."""
    g = y.reshape(y.shape[0], grid[0], grid[1], y.shape[-1]).permute(0, 3, 1, 2)
    if valid is None:
        out = _resize(g, size, mode)
    elif mode == 'max':
        out = _resize(g.masked_fill(~valid[:, None], float('-inf')), size, mode)
        out = out.masked_fill(out == float('-inf'), 0.0)
    else:
        v = valid[:, None].to(g.dtype)
        out = _resize(g * v, size, mode) / _resize(v, size, mode).clamp_min(1e-12)
    return out.permute(0, 2, 3, 1)


@register_reducer
class Pooling(TokenReducer):
    """Args:
        mode: 'avg', 'max' or 'bilinear' (how the grid is shrunk).
        grid: (h, w) or int; or ``ratio``: share of rows/columns kept, in (0, 1]. Exactly one of the two.
        restore_mode: 'bilinear' or 'nearest'.
    """

    def __init__(self, mode: str = 'avg', grid: Union[int, Sequence[int], None] = None,
                 ratio: Optional[float] = None, restore_mode: str = 'bilinear'):
        super().__init__()
        self.mode = check_choice('mode', mode, ('avg', 'max', 'bilinear'))
        self.restore_mode = check_choice('restore_mode', restore_mode, ('bilinear', 'nearest'))
        if (grid is None) == (ratio is None):
            raise ValueError(f'Pooling: give exactly one of grid and ratio, got grid={grid!r}, ratio={ratio!r}')
        if grid is not None:
            grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
            for name, v in zip(('grid[0]', 'grid[1]'), grid):
                check_int(name, v, 1)
        self.grid = grid
        self.ratio = None if ratio is None else check_ratio('ratio', ratio, 0.0, 1.0, high_inclusive=True)
        if self.ratio == 0:
            raise ValueError('ratio must be a number in (0, 1], got 0')
        self.enabled = self.ratio != 1.0

    def extra_repr(self):
        return f'mode={self.mode}, grid={self.grid}, ratio={self.ratio}, restore={self.restore_mode}'

    def plan(self, H: int, W: int):
        h, w = self.grid if self.grid else (max(1, math.floor(H * self.ratio + 0.5)),
                                            max(1, math.floor(W * self.ratio + 0.5)))
        if h > H or w > W:
            raise ValueError(f'Pooling: grid {h}x{w} does not fit the {H}x{W} token grid')
        return h, w

    def reduce(self, x: Tensor, valid: Optional[Tensor] = None) -> Reduction:
        B, H, W, C = x.shape
        h, w = self.plan(H, W)
        if not self.enabled or (h, w) == (H, W):
            return identity_reduction(x, valid)
        restore_mode = self.restore_mode
        red_valid = None
        if valid is not None:
            red_valid = resize_tokens(valid[..., None].float(), (H, W), (h, w), 'max')[..., 0] > 0   # (B, h, w)

        def reduce(y: Tensor) -> Tensor:
            yf = y.to(compute_dtype(y))
            return resize_tokens(yf, (H, W), (h, w), self.mode, valid).reshape(B, h * w, -1).to(y.dtype)

        def restore(y: Tensor) -> Tensor:
            return resize_tokens(y, (h, w), (H, W), restore_mode, red_valid)

        return Reduction(tokens=reduce(x), grid=(h, w), restore=restore, reduce=reduce,
                         valid=None if red_valid is None else red_valid.flatten(1),
                         info=dict(grid=(H, W), cluster_grid=(h, w)))
