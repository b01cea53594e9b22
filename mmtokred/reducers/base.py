"""The interface every reducer implements, and the registry that builds them.

A reducer looks at a grid of patch tokens once and returns a :class:`Reduction`: the reduced tokens plus a
``restore`` closure that maps *any* per-token tensor living on the reduced set (refined features, class logits,
...) back to the full grid. Matching is computed once, in ``reduce``; ``restore`` only applies it, so restoring
several outputs (e.g. DPT's ``out_indices`` inside the span) costs one gather or one small matmul each.

Extra tokens (cls, registers) never enter a reducer: hosts split them off and re-attach them.

This module and the algorithm files import nothing from OpenMMLab.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..utils.registry import Registry

REDUCERS = Registry('reducer')


def register_reducer(cls):
    """Class decorator: make ``dict(type=cls.__name__, ...)`` buildable by :func:`build_reducer`."""
    return REDUCERS.register(cls)


def build_reducer(cfg):
    """Build a reducer from ``dict(type='TokenAdapter', ...)`` (or return a built one unchanged)."""
    if cfg is None or isinstance(cfg, TokenReducer):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"reducer must be a dict such as dict(type='TokenAdapter', r_h=0.3), a built TokenReducer or "
                        f'None, got {type(cfg).__name__} {cfg!r}; registered types: {sorted(REDUCERS)}')
    cfg = dict(cfg)
    name = cfg.pop('type', None)
    return REDUCERS.get_or_raise(name)(**cfg)


@dataclass
class Reduction:
    """Result of ``TokenReducer.forward``.

    Attributes:
        tokens: (B, N_r, C) reduced tokens, in the order the host runs them.
        grid: (h_r, w_r) if ``tokens`` is again a dense row-major grid (Token Adapter, Expediting, pooling),
            else None (ToMe, EViT, MSTM: a token set).
        restore: maps y: (B, N_r, D) -> (B, H, W, D) for any D.
        reduce: maps y: (B, H, W, D) -> (B, N_r, D) for any D: another tensor reduced the way the tokens were
            (same matching / clusters / weights); ``reduce(x) == tokens`` for the reducer's own input x.
        valid: (B, N_r) bool, False for reduced tokens that hold only padding (None: all valid). Hosts keep
            invalid tokens out of attention and crop their restored positions.
        info: what the reducer decided (indices, labels, groups), for visualisation and tests.
    """
    tokens: Tensor
    grid: Optional[Tuple[int, int]]
    restore: Callable[[Tensor], Tensor]
    reduce: Callable[[Tensor], Tensor]
    valid: Optional[Tensor] = None
    info: dict = field(default_factory=dict)

    def assignment(self) -> Tensor:
        """(B, H, W) index of the reduced token each position takes most of its restored value from (for
        pictures and tests; costs one (N x N_r) restore)."""
        B, n_r = self.tokens.shape[:2]
        eye = torch.eye(n_r, device=self.tokens.device).expand(B, -1, -1)
        return self.restore(eye).argmax(-1)


class TokenReducer(nn.Module):
    """Base class. Subclasses implement ``reduce(x, valid[, importance])`` for x: (B, H, W, C) and return a
    :class:`Reduction`.

    Reducers hold no parameters and no buffers, so inserting one never changes a host's state dict.
    What a reducer needs from its host and gives back is declared, so hosts and tools never test its class:

    * ``enabled``: False when the configured amount is 0: hosts then skip the reduction entirely, so the model is
      exactly the upstream one.
    * ``returns_grid``: True if the reduced tokens form a dense (h, w) grid again (then ``plan(H, W) -> (h, w)``
      says which, before running); False for a token set. Windowed hosts (Swin) need a grid.
    * ``needs_importance``: True if tokens are ranked by an importance the host supplies (the cls attention of a
      ViT layer, for EViT / MSTM / Token Adapter ``importance='attention'``); hosts that have none refuse it.
    * ``per_sub_block``: True if the host must apply the reducer around every sub-block (attention, MLP) of the
      span instead of once (ToMe ``mode='sub_block'``, the papers' ToMe baseline).
    * ``per_block``: True if the host itself must merge inside every block (ToMe ``mode='layer'``, ToMe's
      classification form with size tracking and proportional attention); only hosts that drive it accept it.
      Such a reducer declares ``block_schedule(depth)`` (tokens merged per block), ``block_merge(metric, r,
      class_token)`` (the merge of one block) and ``size_bias`` (add log size to the attention logits).
    * ``supports_valid``: True if a ``valid`` mask is honoured (padded tokens never enter importance, matching or
      clustering). Reducers without it refuse a mask with False entries.
    """

    enabled: bool = True
    returns_grid: bool = True
    needs_importance: bool = False
    per_sub_block: bool = False
    sub_blocks: tuple = ('attention', 'mlp')     # which sub-blocks, when per_sub_block
    per_block: bool = False
    supports_valid: bool = True

    def forward(self, x: Tensor, importance: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> Reduction:
        """x: (B, H, W, C); importance: (B, H, W) or (B, H*W) host-supplied token importance (cls attention),
        for reducers that need it; valid: (B, H, W) bool, False at padded positions (None: all real)."""
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects tokens as (B, H, W, C), got shape {tuple(x.shape)}')
        if valid is not None:
            if tuple(valid.shape) != tuple(x.shape[:3]):
                raise ValueError(f'valid must have shape {tuple(x.shape[:3])} (B, H, W), got {tuple(valid.shape)}')
            # an all-real mask is dropped (the unmasked path); under torch.compile this data-dependent test would
            # break the graph, so the mask is kept (hosts pass one only when they pad: never all real)
            if not torch.compiler.is_compiling() and bool(valid.all()):
                valid = None
            elif not self.supports_valid:
                raise ValueError(f'{type(self).__name__} does not take a valid mask (padded tokens): use a grid '
                                 'reducer (TokenAdapter, Expediting, Pooling) on a host that pads')
        if not self.needs_importance:
            return self.reduce(x, valid)
        if importance is None:
            raise ValueError(f'{type(self).__name__} ranks tokens by an importance the host supplies (the cls '
                             'attention of a ViT layer); this host gave none')
        return self.reduce(x, valid, importance.reshape(x.shape[:3]))

    def reduce(self, x: Tensor, valid: Optional[Tensor] = None, *args) -> Reduction:  # pragma: no cover
        raise NotImplementedError

    size_bias: bool = False                      # per_block: proportional attention
    panel_colours: Dict[str, tuple] = {}         # RGB per category of an integer panel (see ``panels``)

    def panels(self, reduction: 'Reduction') -> Dict[str, Tensor]:
        """What this reducer decided, as pictures on its input grid: name -> (B, H, W) tensor, bool (True: kept)
        or integer categories (colours in ``panel_colours[name]``). Every reduction also has its groups
        (:meth:`Reduction.assignment`); default: nothing more."""
        return {}

    def block_schedule(self, depth: int):
        """per_block reducers: the number of tokens merged in each of ``depth`` blocks."""
        raise NotImplementedError(f'{type(self).__name__} does not merge inside every block')

    def block_merge(self, metric: Tensor, r: int, class_token: bool) -> Callable:
        """per_block reducers: ``merge(x, size) -> (x, size)`` of one block, matched on metric: (B, N, C)."""
        raise NotImplementedError(f'{type(self).__name__} does not merge inside every block')

    def plan(self, H: int, W: int) -> Tuple[int, int]:
        """(h, w) of the reduced grid for an H x W input (grid reducers); raises if it does not fit."""
        raise NotImplementedError(f'{type(self).__name__} returns a token set, not a grid: it has no plan')


def restore_by_assignment(assign: Tensor, H: int, W: int) -> Callable[[Tensor], Tensor]:
    """Restore closure that copies, for every original token, the reduced token it is assigned to.

    assign: (B, H*W) indices into the reduced set. Returns y: (B, N_r, D) -> (B, H, W, D)."""
    B = assign.shape[0]

    def restore(y: Tensor) -> Tensor:
        out = y.gather(1, assign[..., None].expand(-1, -1, y.shape[-1]))
        return out.view(B, H, W, y.shape[-1])
    return restore


def group_mean(y: Tensor, target: Tensor, weight: Tensor, n_groups: int) -> Tensor:
    """Weighted mean of the tokens of each group: y: (B, N, D), target: (B, N) group of every token in
    [0, n_groups), weight: (B, N) -> (B, n_groups, D). An empty group (all weights 0) gives 0."""
    B, N, D = y.shape
    w = weight.to(y.dtype)
    num = y.new_zeros(B, n_groups, D).scatter_add_(1, target[..., None].expand(-1, -1, D), y * w[..., None])
    den = y.new_zeros(B, n_groups).scatter_add_(1, target, w)
    return num / den.clamp_min(torch.finfo(y.dtype).tiny)[..., None]


def masked_fill_invalid(values: Tensor, valid: Optional[Tensor], fill: float) -> Tensor:
    """values: (B, ...) with valid (B, ...) bool or None -> values with ``fill`` where not valid."""
    return values if valid is None else values.masked_fill(~valid, fill)


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x: (B, N, C), index: (B, M) -> (B, M, C)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def identity_reduction(x: Tensor, valid: Optional[Tensor] = None) -> Reduction:
    """A Reduction that changes nothing (used when a reducer is disabled or its plan keeps the grid)."""
    B, H, W, C = x.shape
    return Reduction(tokens=x.reshape(B, H * W, C), grid=(H, W),
                     restore=lambda y: y.reshape(y.shape[0], H, W, y.shape[-1]),
                     reduce=lambda y: y.reshape(y.shape[0], H * W, y.shape[-1]),
                     valid=None if valid is None else valid.reshape(B, H * W))


# ----------------------------------------------------------------------------------------------------------------
# validation helpers: every public parameter is checked with a message naming it and its valid range
# ----------------------------------------------------------------------------------------------------------------
def check_ratio(name: str, value, low_inclusive: float = 0.0, high: float = 1.0, high_inclusive: bool = False):
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    in_range = ok_type and value >= low_inclusive and (value <= high if high_inclusive else value < high)
    if not in_range:
        bracket = ']' if high_inclusive else ')'
        raise ValueError(f'{name} must be a number in [{low_inclusive}, {high}{bracket}, got {value!r}')
    return float(value)


def check_int(name: str, value, low: int, high: Optional[int] = None):
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        rng = f'in [{low}, {high}]' if high is not None else f'>= {low}'
        raise ValueError(f'{name} must be an integer {rng}, got {value!r}')
    return value


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f'{name} must be one of {list(choices)}, got {value!r}')
    return value


def compute_dtype(x: Tensor) -> torch.dtype:
    """Matching / clustering arithmetic runs in fp32: fp16 overflows squared distances and sums over channels."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
