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

REDUCERS: Dict[str, type] = {}


def register_reducer(cls):
    """Class decorator: make ``dict(type=cls.__name__, ...)`` buildable by :func:`build_reducer`."""
    if cls.__name__ in REDUCERS:
        raise KeyError(f'reducer {cls.__name__!r} is already registered')
    REDUCERS[cls.__name__] = cls
    return cls


def build_reducer(cfg):
    """Build a reducer from ``dict(type='TokenAdapter', ...)`` (or return a built one unchanged)."""
    if cfg is None or isinstance(cfg, TokenReducer):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"reducer must be a dict such as dict(type='TokenAdapter', r_h=0.3), a built TokenReducer or "
                        f'None, got {type(cfg).__name__} {cfg!r}; registered types: {sorted(REDUCERS)}')
    cfg = dict(cfg)
    name = cfg.pop('type', None)
    if name not in REDUCERS:
        raise KeyError(f'unknown reducer type {name!r}; registered: {sorted(REDUCERS)}')
    return REDUCERS[name](**cfg)


@dataclass
class Reduction:
    """Result of ``TokenReducer.forward``.

    Attributes:
        tokens: (B, N_r, C) reduced tokens, in the order the host runs them.
        grid: (h_r, w_r) if ``tokens`` is again a dense row-major grid (Token Adapter, Expediting, pooling),
            else None (ToMe: an unordered set).
        restore: maps y: (B, N_r, D) -> (B, H, W, D) for any D.
        info: what the reducer decided (indices, labels, groups), for visualisation and tests.
    """
    tokens: Tensor
    grid: Optional[Tuple[int, int]]
    restore: Callable[[Tensor], Tensor]
    info: dict = field(default_factory=dict)


class TokenReducer(nn.Module):
    """Base class. Subclasses implement ``reduce(x)`` for x: (B, H, W, C) and return a :class:`Reduction`.

    Reducers hold no parameters and no buffers, so inserting one never changes a host's state dict.
    ``enabled`` is False when the configured ratio is 0: hosts then skip the reduction entirely, so the model is
    exactly the upstream one.
    """

    enabled: bool = True
    # True if the reducer needs attention information from the host (EViT/MSTM); hosts without it must refuse.
    needs_attention: bool = False

    def forward(self, x: Tensor, attn: Optional[Tensor] = None) -> Reduction:
        """x: (B, H, W, C); attn: (B, H*W) cls-attention importance (mean over heads), for reducers that need it."""
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects tokens as (B, H, W, C), got shape {tuple(x.shape)}')
        if not self.needs_attention:
            return self.reduce(x)
        if attn is None:
            raise ValueError(f'{type(self).__name__} needs the cls attention of the host (attn=None given)')
        return self.reduce(x, attn.reshape(x.shape[:3]))

    def reduce(self, x: Tensor, *args) -> Reduction:  # pragma: no cover - abstract
        raise NotImplementedError


def restore_by_assignment(assign: Tensor, H: int, W: int) -> Callable[[Tensor], Tensor]:
    """Restore closure that copies, for every original token, the reduced token it is assigned to.

    assign: (B, H*W) indices into the reduced set. Returns y: (B, N_r, D) -> (B, H, W, D)."""
    B = assign.shape[0]

    def restore(y: Tensor) -> Tensor:
        out = y.gather(1, assign[..., None].expand(-1, -1, y.shape[-1]))
        return out.view(B, H, W, y.shape[-1])
    return restore


def identity_reduction(x: Tensor) -> Reduction:
    """A Reduction that changes nothing (used when a reducer is disabled)."""
    B, H, W, C = x.shape
    return Reduction(tokens=x.reshape(B, H * W, C), grid=(H, W),
                     restore=lambda y: y.reshape(y.shape[0], H, W, y.shape[-1]))


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
        rng = f'[{low}, {high}]' if high is not None else f'>= {low}'
        raise ValueError(f'{name} must be an integer in {rng}, got {value!r}')
    return value


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f'{name} must be one of {list(choices)}, got {value!r}')
    return value


def compute_dtype(x: Tensor) -> torch.dtype:
    """Matching / clustering arithmetic runs in fp32: fp16 overflows squared distances and sums over channels."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
