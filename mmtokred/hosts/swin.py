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
from torch import Tensor

from ..phases import BACKBONE_AFTER, BACKBONE_FULL, BACKBONE_REDUCED, phase
from ..reducers import build_reducer
from .placement import check_capabilities, check_restore_site, check_sites
from .registry import Host, ReductionPlan, register_host, set_plan, upstream_defaults
from .span import ReductionStack
from .windows import (  # noqa: F401
    MASK_VALUE,
    relative_position_index,
    resize_bias_table,
    shift_window_mask,
    window_attention,
    window_partition,
    window_reverse,
)

HOST_NAME = 'SwinTransformer'


def _window_bias(table: Tensor, window: int, new_window: int) -> Tensor:
    """(heads, k^2, k^2) relative position bias of window k = new_window from a (2 * window - 1)^2 x heads table."""
    index = relative_position_index(new_window, table.device)
    bias = resize_bias_table(table, window, new_window)[index.reshape(-1)]
    return bias.reshape(new_window ** 2, new_window ** 2, -1).permute(2, 0, 1).contiguous()


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
               restore_after_layer=None, restore_site='backbone', reference_shift_mask: bool = False) -> ReductionPlan:
    """Validate the placement against the stages; the plan's spans drop k == K spans (they run upstream)."""
    settings = dict(reducer=reducer, reduce_after_layer=reduce_after_layer, restore_after_layer=restore_after_layer,
                    restore_site=restore_site, reference_shift_mask=reference_shift_mask)
    check_restore_site(restore_site, ('backbone',), ' on a Swin host (each stage is restored before PatchMerging)')
    depth = sum(stage_depths)
    if not isinstance(reference_shift_mask, bool):
        raise TypeError(f'reference_shift_mask must be True or False, got {reference_shift_mask!r}')
    options = (('reference_shift_mask', reference_shift_mask),)
    if reducer is None:
        return ReductionPlan(HOST_NAME, depth, options=options, settings=settings)
    starts = [sum(stage_depths[:i]) for i in range(len(stage_depths))]
    sites = check_sites(reduce_after_layer, depth - 2, f'{depth}-block Swin',
                        'the first reduced block is reduce_after_layer + 1', unit='blocks')
    reducers = [build_reducer(r) for r in _as_list(reducer, len(sites))]
    restores = _as_list(restore_after_layer, len(sites))
    if len(reducers) != len(sites) or len(restores) != len(sites):
        raise ValueError(f'reducer and restore_after_layer must be single values or lists as long as '
                         f'reduce_after_layer ({len(sites)} sites), got {len(reducers)} and {len(restores)}')
    spans, used, last = [], set(), []
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
        last.append(restore)
        if red.enabled and h < K:
            spans.append(_Span(stage, first - starts[stage], restore - starts[stage], red, K, h))
    return ReductionPlan(HOST_NAME, depth, tuple(s.reducer for s in spans), tuple(sites), tuple(last), options=options,
                         spans=tuple(spans), settings=settings)


class WindowReductionMixin:
    """Adds window token reduction to a ``SwinTransformer`` (mmseg or mmdet); see the module docstring.

    Args (besides the upstream ones, unchanged):
        reducer: grid reducer config (or a list, one per span); None = upstream model.
        reduce_after_layer: global 0-based index of the last full-resolution block (or a list, one per stage).
        restore_after_layer: global index of the last reduced block (default: the last block of that stage).
        reference_shift_mask: build the SW-MSA mask for the old shift K // 2, as the Expediting reference does
            (a bug: attention then crosses the cyclic wrap). For comparisons only. Default False.
    """

    @property
    def reduction_spans(self) -> List[_Span]:
        return list(self.token_reduction.plan.spans)

    @property
    def token_reducers(self):
        return [s.reducer for s in self.reduction_spans]

    @property
    def reduction_active(self) -> bool:
        return bool(self.token_reduction.plan.spans)

    def _resized_bias(self, w_msa, window: int, new_window: int) -> Tensor:
        """(heads, k^2, k^2) relative position bias for window k from the checkpoint's table (cached per table
        version, device and dtype; recomputed while the table needs gradients)."""
        table = w_msa.relative_position_bias_table
        if torch.compiler.is_compiling():    # dynamo cannot guard on data_ptr: computed in the graph
            return _window_bias(table, window, new_window)
        cache = self.token_reduction.cache
        key = (id(w_msa), new_window)
        stamp = (table.data_ptr(), table._version, table.dtype, table.device)
        hit = cache.get(key)
        if hit is not None and hit[0] == stamp and not (table.requires_grad and torch.is_grad_enabled()):
            return hit[1]
        bias = _window_bias(table, window, new_window)
        if not (table.requires_grad and torch.is_grad_enabled()):
            cache[key] = (stamp, bias)
        return bias

    def _shift_mask(self, H: int, W: int, window: int, shift: int, mask_shift: int, device) -> Tensor:
        """:func:`shift_window_mask`, built once per (shape, shift, device) in the model's cache: every shifted block
        of a span and every forward at the same input size reuses it."""
        key = ('shift_mask', H, W, window, shift, mask_shift, device)
        cache = self.token_reduction.cache
        if key not in cache:
            cache[key] = shift_window_mask(H, W, window, shift, mask_shift, device)
        return cache[key]

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
            mask_shift = span.window // 2 if self.token_reduction.plan.option('reference_shift_mask') else shift
            mask = self._shift_mask(Hr, Wr, k, shift, mask_shift, x.device).repeat(B, 1, 1)   # (B*nW, N, N)
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
            set_plan(self, _plan_module(self, reducer=reducer, reduce_after_layer=reduce_after_layer,
                                        restore_after_layer=restore_after_layer,
                                        reference_shift_mask=reference_shift_mask))

    return ReducedSwinTransformer


def _plan_cfg(upstream_cls, cfg: dict, **settings) -> ReductionPlan:
    default = upstream_defaults(upstream_cls, 'depths', 'window_size')
    depths = list(cfg.get('depths', default['depths']))
    return plan_spans(depths, [cfg.get('window_size', default['window_size'])] * len(depths), **settings)


def _plan_module(backbone, **settings) -> ReductionPlan:
    return plan_spans([len(stage.blocks) for stage in backbone.stages],
                      [stage.blocks[0].attn.window_size for stage in backbone.stages], **settings)


def _window_token_map(backbone, maps: Tensor, image_hw):
    """maps: (B * nW, K, K) per-window maps of the first span -> (the first image's (h, w) map at that stage,
    pixels per token)."""
    span = backbone.token_reduction.plan.spans[0]
    patch = backbone.patch_embed.projection.kernel_size[0]
    h, w = math.ceil(image_hw[0] / patch), math.ceil(image_hw[1] / patch)
    for _ in range(span.stage):                           # PatchMerging pads odd sizes
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    K = span.window
    Hp, Wp = math.ceil(h / K) * K, math.ceil(w / K) * K
    first_image = maps[:(Hp // K) * (Wp // K), ..., None]
    return window_reverse(first_image, K, Hp, Wp)[0, :h, :w, 0], patch * 2 ** span.stage


def _register():
    """Register ``ReducedSwinTransformer`` in mmseg's registry and, when mmdet is installed, in mmdet's, with a
    host for each."""
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
        register_host(Host(f'{scope} SwinTransformer (Mask2Former, MaskDINO)', (upstream,),
                           ('ReducedSwinTransformer',), partial(_plan_cfg, upstream), _plan_module,
                           options=('reference_shift_mask',), reduced_class=reduced, token_map=_window_token_map))
        classes[scope] = reduced
    return classes


REDUCED_SWIN = _register()
