"""Hosts: one :class:`Host` per upstream family (mmseg ViT, mmseg / mmdet Swin, timm ViT) in one registry, each
validating settings into a frozen :class:`ReductionPlan` and running the upstream model's layers around a reducer.
The timm host is registered when timm is installed."""
from .api import reducers_of, reduction_disabled, reduction_plan
from .registry import HOSTS, Host, QVSlot, ReductionPlan, host_for_module, host_for_type, register_host, set_plan
from .segmentor import TokenReductionEncoderDecoder, TokenReductionHook, attach_head_restore, insert_token_reduction
from .span import run_span
from .swin import REDUCED_SWIN, WindowReductionMixin
from .vit import ReducedVisionTransformer, plan_vit

__all__ = ['ReducedVisionTransformer', 'TokenReductionEncoderDecoder', 'TokenReductionHook',
           'insert_token_reduction', 'attach_head_restore', 'REDUCED_SWIN', 'WindowReductionMixin', 'HOSTS', 'Host',
           'QVSlot', 'ReductionPlan', 'host_for_module', 'host_for_type', 'register_host', 'reduction_plan',
           'reducers_of', 'reduction_disabled', 'plan_vit', 'run_span', 'set_plan']

from . import timm_vit  # noqa: E402,F401  (registers the timm host last; timm itself is imported on use)
