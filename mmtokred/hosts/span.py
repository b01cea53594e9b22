"""Bookkeeping shared by every host adapter.

* :class:`ReductionStack`: the reductions live in one forward pass (innermost last), created per call (no state
  on the module): reduce and restore run in their phases and in fp32 under autocast, restores chain back to the
  outermost grid, and a pending restore can be handed to a head.
* :func:`span_phase`: which phase a layer of the host runs in.
* :func:`run_span`: the span driver (blocks before / reduce / reduced blocks / restore) for hosts whose blocks map
  (B, N, C) tokens to tokens.
"""
from contextlib import nullcontext
from typing import Callable, Optional, Sequence, Tuple

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


def run_span(blocks: Sequence, x: Tensor, plan, n_extra: int, grid: Tuple[int, int], call: Optional[Callable] = None,
             finish: Optional[Callable] = None, output: Optional[Callable] = None) -> Tuple[Tensor, ReductionStack]:
    """The span driver: run ``blocks`` on x: (B, n_extra + H*W, C) as a one-span ``plan`` says. The patch tokens
    are reduced by ``plan.reducer`` after every block in ``plan.sites`` (-1: before the first) and restored to the
    (H, W) grid after block ``plan.restore_after_layer[0]`` (with ``restore_site='backbone'``; a plan without one
    is never restored: a classifier reads the reduced set). Extra tokens (cls, registers) bypass the reducer; every
    block runs in its phase; reduce and restore run in fp32 under autocast.

    Hooks for what a host does besides (all optional):
        call(i, block, x, phase_name, reduce) -> x: runs block i (default: ``block(x)`` in its phase). Reducers
            that run inside a block (declared ``needs_importance`` or ``per_sub_block``) are the host's to run
            here: ``reduce(x, importance)`` reduces the patch tokens of x; the driver does not reduce after it.
        finish(i, x, phase_name) -> x: after block i, before its reduce / restore (e.g. a final norm).
        output(i, x, stack): after block i's reduce / restore, and once with i = -1 before anything (the host's
            outputs: ``stack`` holds the live reductions).
    Returns (x, the stack of reductions not restored: empty unless the head restores).
    """
    reducer, sites = plan.reducer, plan.sites
    restores = plan.restore_after_layer and plan.restore_after_layer[0] is not None
    last_reduced = plan.restore_after_layer[0] if restores else len(blocks) - 1
    restore_after = last_reduced if restores and plan.restore_site == 'backbone' else None
    after_block = not (reducer.needs_importance or reducer.per_sub_block)
    stack = ReductionStack(reducer, grid)

    def reduce(x, importance=None):
        return torch.cat([x[:, :n_extra], stack.reduce(x[:, n_extra:], importance)], 1)

    if output:
        output(-1, x, stack)
    if sites[0] == -1:   # reduce the patch embeddings: every block runs on fewer tokens
        x = reduce(x)
    for i, block in enumerate(blocks):
        stage = span_phase(i, sites[0], last_reduced)
        if call:
            x = call(i, block, x, stage, reduce)
        else:
            with phase(stage):
                x = block(x)
        if finish:
            x = finish(i, x, stage)
        if i in sites and after_block:
            x = reduce(x)
        if stack and i == restore_after:
            x = torch.cat([x[:, :n_extra], stack.restore(x[:, n_extra:]).flatten(1, 2)], 1)
            stack = ReductionStack(reducer, grid)
        if output:
            output(i, x, stack)
    return x, stack
