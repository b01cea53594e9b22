"""Wiring a reduction into whole models: a segmentor type for configs, a function and an mmengine hook for models
that were built from unmodified upstream configs."""
import weakref

import torch.nn.functional as F
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import HOOKS, MODELS

from ..analysis.phases import RESTORE, phase
from .registry import host_for_module


def restore_head_output(backbone, logits):
    """logits: (B, K, h_r, w_r) from a head that ran on reduced tokens -> (B, K, H, W) via the backbone's
    pending restore; unchanged when the backbone did not reduce."""
    restore = getattr(backbone, 'pending_restore', None)
    if restore is None:
        return logits
    with phase(RESTORE):
        restored = restore(logits.flatten(2).transpose(1, 2))   # (B, H, W, K)
    return restored.permute(0, 3, 1, 2).contiguous()


def attach_head_restore(segmentor):
    """Make ``segmentor.decode_head.forward`` restore its output through the backbone's pending restore.

    mmseg heads call ``self.forward`` directly from ``predict``/``loss`` (module hooks would not fire), so the
    bound method is wrapped on the instance. The backbone is held by a weak reference: no new submodule, no new
    state-dict key.
    """
    head = segmentor.decode_head
    if getattr(head, '_mmtokred_restores', False):
        return
    backbone_ref = weakref.ref(segmentor.backbone)
    upstream_forward = head.forward

    def forward(inputs):
        return restore_head_output(backbone_ref(), upstream_forward(inputs))

    head.forward = forward
    head._mmtokred_restores = True
    segmentor.backbone.head_restore_attached = True


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
        if getattr(self.backbone, 'restore_site', 'backbone') == 'head':
            attach_head_restore(self)

    def extract_feat(self, inputs):
        if self.input_scale != 1.0:
            inputs = F.interpolate(inputs, scale_factor=self.input_scale, mode='bilinear', align_corners=False)
        return super().extract_feat(inputs)


def insert_token_reduction(model, reducer, reduce_after_layer, restore_after_layer=None,
                           restore_site: str = 'backbone', **host_options):
    """Insert a reduction into an already-built model (mmseg segmentor, mmdet detector or a bare backbone), in place.

    The backbone's host adapter (:mod:`.registry`: mmseg ViT, mmseg / mmdet Swin) validates every setting before
    the model is changed: on an error the model is left as it was. Parameters and buffers are untouched, so
    checkpoints load before or after. ``host_options``: further arguments of the reduced backbone (e.g.
    ``reference_shift_mask`` on Swin). Returns the model.
    """
    if is_model_wrapper(model):
        model = model.module
    backbone = getattr(model, 'backbone', model)
    host = host_for_module(backbone)
    if restore_site == 'head' and not hasattr(model, 'decode_head'):
        raise ValueError("restore_site='head' needs a segmentor with a decode_head, got a bare backbone")
    host.insert(backbone, reducer, reduce_after_layer=reduce_after_layer, restore_after_layer=restore_after_layer,
                restore_site=restore_site, **host_options)
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
