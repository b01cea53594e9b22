"""Host adapter for Swin Transformer (mmseg's and mmdet's ``SwinTransformer``): window token reduction.

Inside a stage, every K x K window (after the blocks' usual zero padding of the map to a multiple of K) is reduced
to k x k by a *grid* reducer (Token Adapter per window, Expediting per window, pooling), the windows batched as the
batch dimension. The following blocks of the stage run on the reduced map with window k and shift k // 2 (for the
blocks that shift), with

* the relative-position-bias table resized bilinearly from the checkpoint's (2K-1)^2 to (2k-1)^2 on the fly,
  cached per table version and never written into the state dict;
* the SW-MSA mask built for window k and shift k // 2 (attention never crosses the cyclic wrap);
* reduced tokens that hold only padding kept out of attention as keys (logit -100, the value of Swin's own masks).

The map is restored at the end of the span (default: the stage's last block), before PatchMerging, and the
padding is cropped. k == K, or a disabled reducer, runs exactly the upstream blocks.

Placement follows the ViT host's convention: ``reduce_after_layer`` is the global 0-based index of the last
full-resolution block over all stages (-1: before the first), so the first reduced block is
``reduce_after_layer + 1`` = Expediting's alpha on Swin; ``restore_after_layer`` is the last reduced block (default
and maximum: the last block of that stage, since a span never crosses PatchMerging). Lists reduce several stages
(one span per stage), with one reducer per span if ``reducer`` is a list.

Deviations from the Expediting reference, on purpose (docs/swin.md): its SW-MSA mask is built for the old shift
K // 2 while the features roll by k // 2 (``reference_shift_mask=True`` reproduces that, for comparison only); it
clusters zero padding together with the real tokens and runs the padding through the reduced blocks as real
tokens; it resizes the bias table in place, changing the state dict after the first forward.
"""
import math
from functools import partial
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..analysis.phases import BACKBONE_AFTER, BACKBONE_FULL, BACKBONE_REDUCED, phase
from ..reducers import build_reducer
from .registry import HostAdapter, register_host, upstream_defaults
from .span import ReductionStack, check_capabilities

MASK_VALUE = -100.0   # Swin's own value for masked attention logits


def window_partition(x: Tensor, window: int) -> Tensor:
    """x: (B, H, W, C) with H, W multiples of ``window`` -> (B * nW, window, window, C), windows row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C)


def window_reverse(windows: Tensor, window: int, H: int, W: int) -> Tensor:
    """windows: (B * nW, window, window, C) -> (B, H, W, C); inverse of :func:`window_partition`."""
    C = windows.shape[-1]
    x = windows.reshape(-1, H // window, W // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(window: int, device=None) -> Tensor:
    """(window^2, window^2) index into a (2 window - 1)^2 bias table: the rule of mmseg/mmdet ``WindowMSA``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + window - 1            # (2, N, N), each in [0, 2 window - 2]
    return (rel[0] * (2 * window - 1) + rel[1]).to(device)


def resize_bias_table(table: Tensor, window: int, new_window: int) -> Tensor:
    """table: ((2K-1)^2, heads) -> ((2k-1)^2, heads), bilinear (align_corners=False) on the (2K-1) x (2K-1) grid
    of offsets, computed in fp32 (the reference's resize)."""
    L, heads = table.shape
    side = 2 * window - 1
    if L != side * side:
        raise ValueError(f'relative_position_bias_table has {L} rows, expected (2*{window}-1)^2 = {side * side}')
    grid = table.float().t().reshape(1, heads, side, side)
    new_side = 2 * new_window - 1
    out = F.interpolate(grid, size=(new_side, new_side), mode='bilinear', align_corners=False)
    return out.reshape(heads, new_side * new_side).t().to(table.dtype)


def shift_window_mask(H: int, W: int, window: int, shift: int, mask_shift: Optional[int] = None,
                      device=None) -> Tensor:
    """(nW, window^2, window^2) additive SW-MSA mask of an (H, W) map rolled by ``shift``: 0 inside a region,
    -100 between regions that the cyclic roll brought together. ``mask_shift`` builds the regions for another
    shift (the reference's stale mask; default: ``shift``)."""
    s = shift if mask_shift is None else mask_shift
    region = torch.zeros(H, W, device=device)
    slices = (slice(0, -window), slice(-window, -s), slice(-s, None))
    label = 0
    for hs in slices:
        for ws in slices:
            region[hs, ws] = label
            label += 1
    windows = window_partition(region[None, :, :, None], window).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


def window_attention(w_msa: nn.Module, x: Tensor, bias: Tensor, mask: Optional[Tensor]) -> Tensor:
    """mmseg/mmdet ``WindowMSA.forward`` with a given relative position bias.

    x: (B_w, N, C) windows; bias: (heads, N, N); mask: (B_w, N, N) additive or None. Same arithmetic as upstream
    (explicit matmuls and softmax: the baseline's attention kernel)."""
    B_w, N, C = x.shape
    heads = w_msa.num_heads
    qkv = w_msa.qkv(x).reshape(B_w, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * w_msa.scale) @ k.transpose(-2, -1) + bias.unsqueeze(0)
    if mask is not None:
        attn = attn + mask.unsqueeze(1).to(attn.dtype)
    attn = w_msa.attn_drop(w_msa.softmax(attn))
    out = (attn @ v).transpose(1, 2).reshape(B_w, N, C)
    return w_msa.proj_drop(w_msa.proj(out))


class _Span:
    """One reduced span of one stage (validated at configuration time)."""

    def __init__(self, stage: int, first: int, last: int, reducer, window: int, new_window: int):
        self.stage, self.first, self.last = stage, first, last          # local block indices in the stage
        self.reducer, self.window, self.new_window = reducer, window, new_window

    def __repr__(self):
        return (f'stage {self.stage}: blocks {self.first}..{self.last} on {self.new_window}x{self.new_window} of '
                f'{self.window}x{self.window} windows, {type(self.reducer).__name__}')


def _as_list(value, n=None) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value] * (n or 1)


def plan_spans(stage_depths: Sequence[int], windows: Sequence[int], reducer, reduce_after_layer,
               restore_after_layer=None) -> List[_Span]:
    """Validate the placement against the stages and return the spans (k == K spans are dropped: upstream)."""
    depth = sum(stage_depths)
    starts = [sum(stage_depths[:i]) for i in range(len(stage_depths))]
    sites = _as_list(reduce_after_layer)
    for s in sites:
        if not isinstance(s, int) or isinstance(s, bool) or not -1 <= s < depth - 1:
            raise ValueError(f'reduce_after_layer must be an integer (or a list of integers) in [-1, {depth - 2}] '
                             f'for this {depth}-block Swin (the first reduced block is reduce_after_layer + 1), '
                             f'got {reduce_after_layer!r}')
    if sorted(set(sites)) != sites:
        raise ValueError(f'reduce_after_layer must list distinct blocks in increasing order, got {reduce_after_layer!r}')
    reducers = [build_reducer(r) for r in _as_list(reducer, len(sites))]
    restores = _as_list(restore_after_layer, len(sites))
    if len(reducers) != len(sites) or len(restores) != len(sites):
        raise ValueError(f'reducer and restore_after_layer must be single values or lists as long as '
                         f'reduce_after_layer ({len(sites)} sites), got {len(reducers)} and {len(restores)}')
    spans, used = [], set()
    for site, red, restore in zip(sites, reducers, restores):
        first = site + 1
        stage = max(i for i, st in enumerate(starts) if st <= first)
        stage_end = starts[stage] + stage_depths[stage] - 1
        if stage in used:
            raise ValueError(f'reduce_after_layer {reduce_after_layer!r} places two spans in stage {stage}: one '
                             'span per stage')
        used.add(stage)
        if restore is None:
            restore = stage_end
        if not isinstance(restore, int) or isinstance(restore, bool) or not first <= restore:
            raise ValueError(f'restore_after_layer must be an integer in [{first}, {stage_end}] for the span that '
                             f'starts at block {first} (stage {stage}), got {restore!r}')
        if restore > stage_end:
            raise ValueError(f'restore_after_layer {restore} is past the last block ({stage_end}) of stage {stage}: '
                             'a span must not cross PatchMerging')
        check_capabilities(red, 'a Swin host', provides_importance=False, needs_grid=True, supports_sub_block=False,
                           why_no_importance=' (no cls token)')
        K = windows[stage]
        h, w = red.plan(K, K)
        if h != w:
            raise ValueError(f'{type(red).__name__} reduces a {K}x{K} window to {h}x{w}: a Swin window must become '
                             f'k x k (give a square grid, e.g. grid=({h}, {h}))')
        if red.enabled and h < K:
            spans.append(_Span(stage, first - starts[stage], restore - starts[stage], red, K, h))
    return spans


class WindowReductionMixin:
    """Adds window token reduction to a ``SwinTransformer`` (mmseg or mmdet); see the module docstring.

    Args (besides the upstream ones, unchanged):
        reducer: grid reducer config (or a list, one per span); None = upstream model.
        reduce_after_layer: global 0-based index of the last full-resolution block (or a list, one per stage).
        restore_after_layer: global index of the last reduced block (default: the last block of that stage).
        reference_shift_mask: build the SW-MSA mask for the old shift K // 2, as the Expediting reference does
            (a bug: attention then crosses the cyclic wrap). For comparisons only. Default False.
    """

    def _init_reduction(self, reducer, reduce_after_layer, restore_after_layer, reference_shift_mask):
        if reducer is not None and reduce_after_layer is None:
            raise ValueError('reduce_after_layer is required when a reducer is given')
        depths = [len(stage.blocks) for stage in self.stages]
        windows = [stage.blocks[0].attn.window_size for stage in self.stages]
        spans = [] if reducer is None else plan_spans(depths, windows, reducer, reduce_after_layer,
                                                      restore_after_layer)
        self.reduction_spans = spans
        # reducers hold no parameters or buffers: as children they show in print(model), not in the state dict
        self.token_reducers = nn.ModuleList([s.reducer for s in spans])
        self.reference_shift_mask = bool(reference_shift_mask)
        self._bias_cache = {}

    @property
    def reduction_active(self) -> bool:
        return bool(self.reduction_spans)

    def _resized_bias(self, w_msa, window: int, new_window: int) -> Tensor:
        """(heads, k^2, k^2) relative position bias for window k from the checkpoint's table (cached per table
        version, device and dtype; recomputed while the table needs gradients)."""
        table = w_msa.relative_position_bias_table
        key = (id(w_msa), new_window)
        stamp = (table.data_ptr(), table._version, table.dtype, table.device)
        hit = self._bias_cache.get(key)
        if hit is not None and hit[0] == stamp and not (table.requires_grad and torch.is_grad_enabled()):
            return hit[1]
        index = relative_position_index(new_window, table.device)
        bias = resize_bias_table(table, window, new_window)[index.reshape(-1)]
        bias = bias.reshape(new_window ** 2, new_window ** 2, -1).permute(2, 0, 1).contiguous()
        if not (table.requires_grad and torch.is_grad_enabled()):
            self._bias_cache[key] = (stamp, bias)
        return bias

    def _reduced_block(self, block, x: Tensor, hw, span: _Span, key_valid: Optional[Tensor]) -> Tensor:
        """One SwinBlock on the reduced (Hr, Wr) map x: (B, Hr*Wr, C) with window k, shift k // 2 if the block
        shifts. key_valid: (B, Hr, Wr) bool or None."""
        B, L, C = x.shape
        Hr, Wr = hw
        k = span.new_window
        shift = k // 2 if block.attn.shift_size > 0 else 0
        identity = x
        y = block.norm1(x).view(B, Hr, Wr, C)
        valid = key_valid
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            valid = None if valid is None else torch.roll(valid, shifts=(-shift, -shift), dims=(1, 2))
        mask = None
        if shift:
            mask_shift = span.window // 2 if self.reference_shift_mask else shift
            mask = shift_window_mask(Hr, Wr, k, shift, mask_shift, x.device).repeat(B, 1, 1)   # (B*nW, N, N)
        if valid is not None:
            key_mask = (~window_partition(valid[..., None], k).reshape(-1, 1, k * k)).to(y.dtype) * MASK_VALUE
            mask = key_mask if mask is None else mask + key_mask
        bias = self._resized_bias(block.attn.w_msa, span.window, k)
        out = window_attention(block.attn.w_msa, window_partition(y, k).reshape(-1, k * k, C), bias, mask)
        out = window_reverse(out.view(-1, k, k, C), k, Hr, Wr)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        x = identity + block.attn.drop(out.reshape(B, L, C))
        return block.ffn(block.norm2(x), identity=x)

    def _reduce_windows(self, x: Tensor, hw, span: _Span):
        """x: (B, H*W, C) -> (reduced map (B, Hr*Wr, C), (Hr, Wr), key_valid (B, Hr, Wr) or None, stack)."""
        B, L, C = x.shape
        H, W = hw
        K, k = span.window, span.new_window
        Hp, Wp = math.ceil(H / K) * K, math.ceil(W / K) * K
        grid = F.pad(x.view(B, H, W, C), (0, 0, 0, Wp - W, 0, Hp - H))
        valid = None
        if (Hp, Wp) != (H, W):
            valid = torch.zeros(B, Hp, Wp, 1, dtype=torch.bool, device=x.device)
            valid[:, :H, :W] = True
            valid = window_partition(valid, K)[..., 0]                          # (B*nW, K, K)
        stack = ReductionStack(span.reducer, (K, K))
        windows = window_partition(grid, K)
        reduced = stack.reduce(windows.reshape(-1, K * K, C), valid=valid)      # (B*nW, k*k, C)
        Hr, Wr = Hp // K * k, Wp // K * k
        out = window_reverse(reduced.reshape(-1, k, k, C), k, Hr, Wr)
        key_valid = stack.valid
        if key_valid is not None:
            key_valid = window_reverse(key_valid.reshape(-1, k, k, 1), k, Hr, Wr)[..., 0]
        return out.reshape(B, Hr * Wr, C), (Hr, Wr), key_valid, stack

    @staticmethod
    def _restore_windows(x: Tensor, hw_reduced, hw, span: _Span, stack: ReductionStack) -> Tensor:
        """Reduced map x: (B, Hr*Wr, C) -> (B, H*W, C), window by window, padding cropped."""
        B, _, C = x.shape
        (Hr, Wr), (H, W) = hw_reduced, hw
        K, k = span.window, span.new_window
        windows = window_partition(x.view(B, Hr, Wr, C), k).reshape(-1, k * k, C)
        full = window_reverse(stack.restore(windows), K, Hr // k * K, Wr // k * K)
        return full[:, :H, :W].reshape(B, H * W, C)

    def _stage_forward(self, stage, x: Tensor, hw_shape, span: Optional[_Span], reduced_before: bool):
        """``SwinBlockSequence.forward`` with the span's reduction (upstream when span is None)."""
        if span is None:
            with phase(BACKBONE_AFTER if reduced_before else BACKBONE_FULL):
                return stage(x, hw_shape)
        hw, key_valid, stack = hw_shape, None, None
        for j, block in enumerate(stage.blocks):
            if j == span.first:
                x, hw, key_valid, stack = self._reduce_windows(x, hw_shape, span)
            if span.first <= j <= span.last:
                with phase(BACKBONE_REDUCED):
                    x = self._reduced_block(block, x, hw, span, key_valid)
            else:
                with phase(BACKBONE_FULL if j < span.first else BACKBONE_AFTER):
                    x = block(x, hw_shape)
            if j == span.last:
                x, hw = self._restore_windows(x, hw, hw_shape, span, stack), hw_shape
        with phase(BACKBONE_AFTER):
            if stage.downsample:
                x_down, down_hw_shape = stage.downsample(x, hw_shape)
                return x_down, down_hw_shape, x, hw_shape
        return x, hw_shape, x, hw_shape

    def forward(self, x):
        if not self.reduction_active:
            return super().forward(x)
        spans = {s.stage: s for s in self.reduction_spans}
        with phase(BACKBONE_FULL):
            x, hw_shape = self.patch_embed(x)
            if self.use_abs_pos_embed:
                x = x + self.absolute_pos_embed
            x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            reduced_before = any(s < i for s in spans)
            x, hw_shape, out, out_hw_shape = self._stage_forward(stage, x, hw_shape, spans.get(i), reduced_before)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(out)
                outs.append(out.view(-1, *out_hw_shape, self.num_features[i]).permute(0, 3, 1, 2).contiguous())
        return outs


def _reduced_swin(upstream_cls):
    """The reduced class of an upstream ``SwinTransformer`` (same arguments plus the reduction's, same state dict)."""

    class ReducedSwinTransformer(WindowReductionMixin, upstream_cls):
        __doc__ = (f'``{upstream_cls.__module__}.SwinTransformer`` with window token reduction: all upstream '
                   f'arguments unchanged.\n\n' + WindowReductionMixin.__doc__.split('\n', 1)[1])

        def __init__(self, *args, reducer=None, reduce_after_layer: Union[int, Sequence[int], None] = None,
                     restore_after_layer: Union[int, Sequence[int], None] = None, reference_shift_mask: bool = False,
                     **kwargs):
            super().__init__(*args, **kwargs)
            self._init_reduction(reducer, reduce_after_layer, restore_after_layer, reference_shift_mask)

    return ReducedSwinTransformer


def _check_restore_site(restore_site):
    if restore_site != 'backbone':
        raise ValueError(f"restore_site must be 'backbone' on a Swin host (each stage is restored before "
                         f"PatchMerging), got {restore_site!r}")


def _validate_cfg(upstream_cls, cfg: dict, reducer, reduce_after_layer, restore_after_layer=None,
                  restore_site='backbone'):
    _check_restore_site(restore_site)
    default = upstream_defaults(upstream_cls, 'depths', 'window_size')
    depths = list(cfg.get('depths', default['depths']))
    plan_spans(depths, [cfg.get('window_size', default['window_size'])] * len(depths), reducer, reduce_after_layer,
               restore_after_layer)


def _insert(reduced_cls, backbone, reducer, reduce_after_layer, restore_after_layer=None, restore_site='backbone',
            reference_shift_mask=False):
    _check_restore_site(restore_site)
    depths = [len(stage.blocks) for stage in backbone.stages]
    plan_spans(depths, [stage.blocks[0].attn.window_size for stage in backbone.stages], reducer, reduce_after_layer,
               restore_after_layer)                 # validate before touching the backbone
    if not isinstance(backbone, WindowReductionMixin):
        backbone.__class__ = reduced_cls
    backbone._init_reduction(reducer, reduce_after_layer, restore_after_layer, reference_shift_mask)


def _register():
    """Register ``ReducedSwinTransformer`` in mmseg's registry and, when mmdet is installed, in mmdet's, with a
    host adapter for each."""
    from mmseg.models.backbones import SwinTransformer as SegSwin
    from mmseg.registry import MODELS as SEG_MODELS
    upstreams = {'mmseg': (SegSwin, SEG_MODELS)}
    try:
        from mmdet.models.backbones import SwinTransformer as DetSwin
        from mmdet.registry import MODELS as DET_MODELS
        upstreams['mmdet'] = (DetSwin, DET_MODELS)
    except ImportError:     # mmdet is optional
        pass
    classes = {}
    for scope, (upstream, registry) in upstreams.items():
        reduced = registry.register_module(module=_reduced_swin(upstream))
        register_host(HostAdapter(f'{scope} SwinTransformer (Mask2Former, MaskDINO)', (upstream,),
                                  ('ReducedSwinTransformer',), partial(_validate_cfg, upstream),
                                  partial(_insert, reduced)))
        classes[scope] = reduced
    return classes


REDUCED_SWIN = _register()
