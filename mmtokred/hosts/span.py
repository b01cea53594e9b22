"""Bookkeeping shared by every host adapter.

* :class:`ReductionStack`: the reductions live in one forward pass (innermost last), created per call (no state
  on the module): reduce and restore run in their phases and in fp32 under autocast, restores chain back to the
  outermost grid, and a pending restore can be handed to a head.
* :func:`span_phase`: which phase a layer of the host runs in.
* :func:`check_capabilities`: a reducer's declared needs against what a host offers, with errors that say which
  host and why.
* :func:`check_sites`, :func:`check_restore_site`: the placement checks every host shares.
* :func:`run_span`: the span driver (blocks before / reduce / reduced blocks / restore) for hosts whose blocks map
  (B, N, C) tokens to tokens.
"""
from contextlib import nullcontext
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..phases import BACKBONE_AFTER, BACKBONE_FULL, BACKBONE_REDUCED, REDUCE, RESTORE, phase
from ..reducers import Reduction


def full_precision(device_type: str):
    """Reduce / restore arithmetic runs in fp32 even under autocast (matching, clustering and the restore weights
    lose too much in fp16 / bf16). Outside autocast nothing changes."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


def _restore_in_fp32(reductions, y: Tensor) -> Tensor:
    """Chain the restores of ``reductions`` (outermost first) on y: (B, N_r, D) -> (B, H, W, D)."""
    dtype = y.dtype
    y = y.float() if dtype in (torch.float16, torch.bfloat16) else y
    with full_precision(y.device.type):
        for red in reversed(reductions):
            y = red.restore(y)
            if red is not reductions[0]:
                y = y.flatten(1, 2)
    return y.to(dtype)


class ReductionStack:
    """The live reductions of one span in one forward pass.

    Args:
        reducer: the host's reducer (called as ``reducer(x, importance, valid)``).
        grid: (H, W) of the tokens before the first reduction.
    """

    def __init__(self, reducer, grid: Tuple[int, int]):
        self.reducer = reducer
        self.full_grid = tuple(grid)
        self.reductions = []

    def __bool__(self):
        return bool(self.reductions)

    def grid(self, n_tokens: int) -> Tuple[int, int]:
        """(h, w) of the current tokens: the last reduction's grid, (1, n) for a token set."""
        if not self.reductions:
            return self.full_grid
        return self.reductions[-1].grid or (1, n_tokens)

    @property
    def valid(self) -> Optional[Tensor]:
        """(B, N_r) bool of the current tokens, None if all are real."""
        return self.reductions[-1].valid if self.reductions else None

    def reduce(self, tokens: Tensor, importance: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> Tensor:
        """tokens: (B, N, C) on the current grid -> (B, N_r, C); the reduction joins the stack."""
        B, N, C = tokens.shape
        h, w = self.grid(N)
        with phase(REDUCE), full_precision(tokens.device.type):
            reduction = self.reducer(tokens.reshape(B, h, w, C), importance, valid)
        self.reductions.append(reduction)
        return reduction.tokens.to(tokens.dtype)

    @property
    def last(self) -> Reduction:
        return self.reductions[-1]

    def restore(self, tokens: Tensor) -> Tensor:
        """tokens: (B, N_r, D) -> (B, H, W, D) on the full grid."""
        with phase(RESTORE):
            return _restore_in_fp32(self.reductions, tokens)

    def pending_restore(self) -> Callable[[Tensor], Tensor]:
        """The restore as a closure, for a head that runs on the reduced tokens (``restore_site='head'``)."""
        reductions = list(self.reductions)
        return lambda y: _restore_in_fp32(reductions, y)


def span_phase(index: int, last_full: int, last_reduced: int) -> str:
    """Phase of layer ``index`` of a host whose layers ``last_full + 1 .. last_reduced`` run reduced."""
    if index <= last_full:
        return BACKBONE_FULL
    return BACKBONE_REDUCED if index <= last_reduced else BACKBONE_AFTER


def check_capabilities(reducer, host: str, provides_importance: bool, needs_grid: bool = False,
                       supports_sub_block: bool = True, why_no_importance: str = '',
                       supports_per_block: bool = False):
    """Refuse a reducer whose declared needs this host cannot meet (``host`` names it in the message)."""
    name = type(reducer).__name__
    if reducer.needs_importance and not provides_importance:
        raise ValueError(f'{name} ranks tokens by an importance the host supplies (cls attention); {host} has none'
                         f'{why_no_importance}: use a reducer that ranks by the tokens themselves')
    if needs_grid and not reducer.returns_grid:
        raise ValueError(f'{name} returns a token set, but {host} needs a dense grid (every window reduced to the '
                         'same k x k): use TokenAdapter, Expediting or Pooling')
    if reducer.per_sub_block and not supports_sub_block:
        raise ValueError(f"{name} in sub-block mode is not supported on {host}: use mode='span' or a grid reducer")
    if reducer.per_block and not supports_per_block:
        raise ValueError(f'{name} merges inside every block, which only a host that drives it does (the timm '
                         f"classification host); {host} is not one: use mode='span' or 'sub_block'")


RESTORE_SITES = ('backbone', 'head')


def check_restore_site(restore_site, sites=RESTORE_SITES, why: str = ''):
    if restore_site not in sites:
        raise ValueError(f'restore_site must be {"one of " + str(list(sites)) if len(sites) > 1 else repr(sites[0])}'
                         f'{why}, got {restore_site!r}')


def check_sites(value, high: int, model: str, note: str, unit: str = 'layers', allow_list: bool = True) -> List[int]:
    """``reduce_after_layer`` (an int, or with ``allow_list`` an increasing list) in [-1, high] -> list of sites.
    ``model`` and ``note`` complete the message ('for this {model} ({note})')."""
    if value is None:
        raise ValueError('reduce_after_layer is required when a reducer is given')
    sites = list(value) if allow_list and isinstance(value, (list, tuple)) else [value]  # a float / str: reported
    for s in sites:
        if not isinstance(s, int) or isinstance(s, bool) or not -1 <= s <= high:
            alternative = ' (or a list of integers)' if allow_list else ''
            raise ValueError(f'reduce_after_layer must be an integer{alternative} in [-1, {high}] for this {model} '
                             f'({note}), got {value!r}')
    if sorted(set(sites)) != sites:
        raise ValueError(f'reduce_after_layer must list distinct {unit} in increasing order, got {value!r}')
    return sites


def run_span(blocks: Sequence, x: Tensor, plan, n_extra: int, grid: Tuple[int, int],
             call: Callable = lambda block, x: block(x)) -> Tensor:
    """The span driver: run ``blocks`` on x: (B, n_extra + H*W, C) as a one-span ``plan`` says: the patch tokens
    are reduced by ``plan.reducer`` after every block in ``plan.sites`` (-1: before the first) and restored to the
    (H, W) grid after block ``plan.restore_after_layer[0]`` (none: never; a classifier reads the reduced set).
    Extra tokens (cls, registers) bypass the reducer; every block runs in its phase. ``call(block, x)`` runs one
    block (default: ``block(x)``)."""
    reducer, sites = plan.reducer, plan.sites
    restore_after = plan.restore_after_layer[0] if plan.restore_after_layer else None
    stack = ReductionStack(reducer, grid)

    def reduce(x):
        return torch.cat([x[:, :n_extra], stack.reduce(x[:, n_extra:])], 1)

    if -1 in sites:
        x = reduce(x)
    last_reduced = len(blocks) - 1 if restore_after is None else restore_after
    for i, block in enumerate(blocks):
        with phase(span_phase(i, sites[0], last_reduced)):
            x = call(block, x)
        if i in sites and i >= 0:
            x = reduce(x)
        if stack and i == restore_after:
            x = torch.cat([x[:, :n_extra], stack.restore(x[:, n_extra:]).flatten(1, 2)], 1)
            stack = ReductionStack(reducer, grid)
    return x
