"""Wiring a reduction into whole models: a segmentor type for configs, a function and an mmengine hook for models
that were built from unmodified upstream configs."""
from functools import lru_cache, wraps
from typing import Optional

import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import HOOKS, MODELS

from ..phases import RESTORE, phase
from .registry import ReductionState, host_for_module, state_of


def restore_head_output(state: Optional[ReductionState], logits):
    """logits: (B, K, h_r, w_r) from a head that ran on reduced tokens -> (B, K, H, W) via the backbone's
    pending restore; unchanged when the backbone did not reduce."""
    restore = None if state is None else state.pending_restore
    if restore is None:
        return logits
    with phase(RESTORE):
        restored = restore(logits.flatten(2).transpose(1, 2))   # (B, H, W, K)
    return restored.permute(0, 3, 1, 2).contiguous()


@lru_cache(maxsize=None)
def _restoring_head_class(cls):
    """``cls`` whose ``forward`` restores its output through the shared state's pending restore (mmseg heads call
    ``self.forward`` from ``predict`` / ``loss``, so the class is swapped, as for the backbones)."""
    class RestoringHead(cls):
        restores_head_output = True

        @wraps(cls.forward)      # the upstream signature (tools inspect it)
        def forward(self, *args, **kwargs):
            return restore_head_output(state_of(self), super().forward(*args, **kwargs))
    RestoringHead.__name__ = RestoringHead.__qualname__ = cls.__name__
    return RestoringHead


def attach_head_restore(segmentor):
    """Make ``segmentor.decode_head`` restore its output through the backbone's pending restore: the head shares the
    backbone's state holder (no new submodule, no new state-dict key)."""
    head, state = segmentor.decode_head, state_of(segmentor.backbone)
    if not getattr(type(head), 'restores_head_output', False):
        head.__class__ = _restoring_head_class(type(head))
    head.__dict__['token_reduction'] = state
    state.head_restores = True


@MODELS.register_module()
class TokenReductionEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose decode head output is restored when the backbone reduces up to the head
    (``restore_site='head'``). Same arguments and state dict as ``EncoderDecoder``, plus:

    Args:
        input_scale: the uniform-downsampling baseline of the Expediting paper (Fig. 6): the network input is
            resized by this factor in (0, 1] (bilinear) and the logits are resized back to the image as usual.
    """

    def __init__(self, *args, input_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(input_scale, (int, float)) or not 0 < input_scale <= 1:
            raise ValueError(f'input_scale must be a number in (0, 1], got {input_scale!r}')
        self.input_scale = float(input_scale)
        state = state_of(self.backbone)
        if state is not None and state.plan.restore_site == 'head':
            attach_head_restore(self)

    def extract_feat(self, inputs):
        if self.input_scale != 1.0:
            inputs = F.interpolate(inputs, scale_factor=self.input_scale, mode='bilinear', align_corners=False)
        return super().extract_feat(inputs)


def insert_token_reduction(model, reducer, reduce_after_layer, restore_after_layer=None,
                           restore_site: str = 'backbone', **host_options):
    """Insert a reduction into an already-built model (mmseg segmentor, mmdet detector, timm classifier or a bare
    backbone), in place; ``reducer=None`` takes it out again.

    The backbone's host (:mod:`.registry`) validates every setting into a plan before the model is changed: on an
    error the model is left as it was. Parameters and buffers are untouched, so checkpoints load before or after.
    ``host_options``: the host's further options (e.g. ``reference_shift_mask`` on Swin). Returns the model.
    """
    if is_model_wrapper(model):
        model = model.module
    backbone = getattr(model, 'backbone', model)
    host = host_for_module(backbone)
    unknown = set(host_options) - set(host.options)
    if unknown:
        raise TypeError(f'insert_token_reduction: unknown arguments {sorted(unknown)} for the {host.name} host; '
                        f'valid: {", ".join(host.valid_arguments())}')
    if restore_site == 'head' and not hasattr(model, 'decode_head'):
        raise ValueError("restore_site='head' needs a segmentor with a decode_head, got a bare backbone")
    plan = host.plan_module(backbone, reducer=reducer, reduce_after_layer=reduce_after_layer,
                            restore_after_layer=restore_after_layer, restore_site=restore_site, **host_options)
    host.apply(backbone, plan)
    if restore_site == 'head':
        attach_head_restore(model)
    return model


@HOOKS.register_module()
class TokenReductionHook(Hook):
    """Speed up an unmodified upstream config: ``custom_hooks = [dict(type='TokenReductionHook', reducer=...,
    reduce_after_layer=9, restore_site='head')]``, or with our tools through ``--cfg-options
    custom_hooks="[dict(type=TokenReductionHook,reducer=dict(type=ToMe,ratio=0.5),reduce_after_layer=9)]"``
    (mmengine's own DictAction cannot read ``dict(...)`` values). Inserts the reduction before the run starts;
    arguments as :func:`insert_token_reduction` (the tools check them before the Runner starts)."""

    priority = 'VERY_HIGH'

    def __init__(self, reducer, reduce_after_layer, restore_after_layer=None, restore_site: str = 'backbone',
                 **host_options):
        self.kwargs = dict(reducer=reducer, reduce_after_layer=reduce_after_layer,
                           restore_after_layer=restore_after_layer, restore_site=restore_site, **host_options)

    def before_run(self, runner) -> None:
        insert_token_reduction(runner.model, **self.kwargs)
