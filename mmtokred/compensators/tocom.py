"""Token Compensator (ToCom, Jie et al., ECCV 2024): the plug-in itself, host-independent (pure PyTorch).

A compensator holds one LoRA pair per block for the **query** and one for the **value** projection. Its hidden
dimension is split into one chunk of ``rank`` channels per adjacent step of an ordered list of reduction degrees
(``degrees[0]`` .. ``degrees[n]``, ``n`` steps): chunk k models the gap between degree k and degree k + 1. The
compensator from degree index s to degree index t (a model at home at degree s, run at degree t) is the signed sum
of the chunks between them, times ``scale`` (paper eq. 5-7)::

    dW(s -> t) = scale * sum_{k in [s, t)} up_k @ down_k            (s < t)
    dW(s -> t) = -dW(t -> s)                                         (s > t: the chunks are subtracted)

so s -> t followed by t -> s is the identity and s -> t -> u equals s -> u by construction. Training
(tools/train_compensator.py) runs a frozen teacher at degree b and the same model + dW(b -> a) at degree a, as the
reference code does (the student's degree is the target, the teacher's the source).

Unlike the reference (768 channels, 12 layers, 16 steps of 2 channels hard-coded), width, depth, the number of
steps and the rank per step come from the arguments. The reference also applies dropout (0.1) to the down
projection during training; the delta here is a plain linear map, which is what makes folding exact.

Degrees are *indices* into ``degrees``; the entries themselves (reducer settings, any plain-data value) are
metadata the hosts interpret (:mod:`mmtokred.compensators.branch`, :class:`mmtokred.hosts.Host`).
"""
import math
from typing import Any, List, Optional, Sequence

import torch
from torch import Tensor, nn

FORMAT_VERSION = 1


def plain(value):
    """Config values (ConfigDict, tuples inside) -> plain dicts / lists / scalars that ``torch.load(weights_only=
    True)`` accepts and that compare equal to the config they came from."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f'degree settings must be plain data (dicts, lists, numbers, strings), got {type(value).__name__}')


class TokenCompensator(nn.Module):
    """LoRA chunks on the q / v projections of every block, one chunk per adjacent degree step.

    Args:
        embed_dims: width C of the host (q and v are C x C maps).
        num_layers: number of blocks L.
        degrees: the ordered degree settings, at least two (degree 0 is usually "no reduction").
        rank: channels per step (the paper's h = 2 for DeiT-B, 16 steps -> a 32-channel LoRA).
        scale: the paper's s (trained at 0.1; the paper searches 0.01..0.15 at inference). A per-call override
            is accepted by :meth:`delta_weight`.
        host: name of the host family the compensator belongs to (e.g. ``'mmseg.VisionTransformer'``).

    Parameters: ``down`` (L, 2, n*rank, C) and ``up`` (L, 2, C, n*rank); index 0 of the second axis is the query,
    1 the value. ``up`` starts at zero, so a fresh compensator changes nothing.
    """

    def __init__(self, embed_dims: int, num_layers: int, degrees: Sequence[Any], rank: int = 2,
                 scale: float = 0.1, host: str = ''):
        super().__init__()
        for name, value in (('embed_dims', embed_dims), ('num_layers', num_layers), ('rank', rank)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        degrees = plain(list(degrees))
        if len(degrees) < 2:
            raise ValueError(f'degrees must list at least two settings (one step), got {len(degrees)}')
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise ValueError(f'scale must be a positive number, got {scale!r}')
        self.embed_dims, self.num_layers, self.rank = embed_dims, num_layers, rank
        self.degrees: List[Any] = degrees
        self.scale = float(scale)
        self.host = str(host)
        hidden = rank * self.num_steps
        self.down = nn.Parameter(torch.empty(num_layers, 2, hidden, embed_dims))
        self.up = nn.Parameter(torch.zeros(num_layers, 2, embed_dims, hidden))
        # nn.Linear's default initialisation of the down projection (the reference's adapter_down)
        bound = 1 / math.sqrt(embed_dims)
        nn.init.uniform_(self.down, -bound, bound)

    @property
    def num_steps(self) -> int:
        return len(self.degrees) - 1

    def extra_repr(self):
        return (f'embed_dims={self.embed_dims}, num_layers={self.num_layers}, steps={self.num_steps}, '
                f'rank={self.rank}, scale={self.scale}, host={self.host!r}')

    # ------------------------------------------------------------------------------------------------------------
    # degrees and chunk arithmetic
    # ------------------------------------------------------------------------------------------------------------
    def check_degree(self, name: str, value) -> int:
        """A degree index in [0, num_steps], else a ValueError naming the parameter and the trained range."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.num_steps:
            raise ValueError(f'{name} must be a degree index in [0, {self.num_steps}] of this compensator '
                             f'(trained for degrees {self.degrees}), got {value!r}')
        return value

    def index_of(self, setting) -> int:
        """Index of the degree whose setting equals ``setting`` (plain-data comparison), else a ValueError."""
        setting = plain(setting)
        for i, d in enumerate(self.degrees):
            if d == setting:
                return i
        raise ValueError(f'the reduction setting {setting} is not one of the degrees this compensator was trained '
                         f'for: {self.degrees}')

    def step_signs(self, source: int, target: int) -> Tensor:
        """(num_steps,) +1 for the steps from source up to target, -1 for the steps from target up to source."""
        source, target = self.check_degree('source', source), self.check_degree('target', target)
        signs = torch.zeros(self.num_steps)
        lo, hi = min(source, target), max(source, target)
        signs[lo:hi] = 1.0 if target > source else -1.0
        return signs

    def delta_weight(self, source: int, target: int, scale: Optional[float] = None,
                     layer: Optional[int] = None) -> Tensor:
        """The weight change dW(source -> target): (L, 2, C, C) for (query, value) of every block, or (2, C, C) for
        block ``layer``, such that the compensated projection is (W + dW) x. Only the chunks between the two
        degrees are computed (equal degrees give zeros)."""
        self.check_degree('source', source)
        self.check_degree('target', target)
        scale = self.scale if scale is None else float(scale)
        lo, hi = sorted((source, target))
        cols = slice(lo * self.rank, hi * self.rank)
        sign = 1.0 if target > source else -1.0
        up, down = self.up, self.down
        if layer is not None:
            up, down = up[layer], down[layer]
        return (scale * sign) * (up[..., cols] @ down[..., cols, :])

    def delta(self, x: Tensor, layer: int, which: int, source: int, target: int) -> Tensor:
        """The LoRA branch on tokens, x: (..., C) -> (..., C) = dW(source -> target) x for block ``layer`` and
        projection ``which`` (0 query, 1 value): what the reference adds to q / v."""
        return x @ self.delta_weight(source, target, layer=layer)[which].transpose(0, 1).to(x.dtype)

    # ------------------------------------------------------------------------------------------------------------
    # compatibility and files
    # ------------------------------------------------------------------------------------------------------------
    def check_host(self, embed_dims: int, num_layers: int, host: str):
        """Refuse a host of another width, depth or family, naming what was expected."""
        problems = []
        if embed_dims != self.embed_dims:
            problems.append(f'width {embed_dims} (compensator: {self.embed_dims})')
        if num_layers != self.num_layers:
            problems.append(f'depth {num_layers} (compensator: {self.num_layers})')
        if self.host and host != self.host:
            problems.append(f'host {host!r} (compensator: {self.host!r})')
        if problems:
            raise ValueError('this compensator does not fit the model: ' + ', '.join(problems) +
                             f'; it was trained for a {self.num_layers}-layer, {self.embed_dims}-channel '
                             f'{self.host or "ViT"}')

    def metadata(self) -> dict:
        return dict(format_version=FORMAT_VERSION, embed_dims=self.embed_dims, num_layers=self.num_layers,
                    degrees=self.degrees, rank=self.rank, scale=self.scale, host=self.host)

    def save(self, path: str, half: bool = False, extra: Optional[dict] = None):
        """A small file of its own: ``{'meta': metadata (+ extra), 'state_dict': {'down', 'up'}}``, plain
        tensors (loads with ``weights_only=True``); ``half`` stores fp16 tensors."""
        state = {k: (v.detach().half() if half else v.detach().float()).cpu().contiguous()
                 for k, v in self.state_dict().items()}
        meta = self.metadata()
        if extra:
            meta['extra'] = plain(extra)
        torch.save(dict(meta=meta, state_dict=state), path)

    @classmethod
    def load(cls, path: str, map_location='cpu') -> 'TokenCompensator':
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(ckpt, dict) or 'meta' not in ckpt or 'state_dict' not in ckpt:
            raise ValueError(f'{path} is not a compensator file (expected the keys meta and state_dict)')
        meta = ckpt['meta']
        if meta.get('format_version') != FORMAT_VERSION:
            raise ValueError(f'{path}: compensator format {meta.get("format_version")!r} is not supported '
                             f'(expected {FORMAT_VERSION})')
        comp = cls(meta['embed_dims'], meta['num_layers'], meta['degrees'], meta['rank'], meta['scale'],
                   meta['host'])
        comp.load_state_dict({k: v.float() for k, v in ckpt['state_dict'].items()}, strict=True)
        comp.extra = meta.get('extra', {})
        return comp
