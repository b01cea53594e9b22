"""Models with a Token Compensator, as config types.

**Segmentation**: ``ReducedVisionTransformer`` + a compensator branch.

    model = dict(backbone=dict(type='CompensatedVisionTransformer',
                               compensator=dict(checkpoint='work_dirs/tocom/camvid_ta.pth', source=0),
                               reducer=..., reduce_after_layer=..., restore_site=...))

or on an unchanged reduced config: ``--cfg-options model.backbone.type=CompensatedVisionTransformer
model.backbone.compensator.checkpoint=FILE``. The target degree is the compensator degree whose setting equals this
backbone's reduction (an error names both when none does), or ``compensator.target`` (checked against the setting).
The compensator runs as a branch (:class:`mmtokred.compensators.CompensatorBranch`): it is kept outside the module
tree (it lives in the backbone's reduction state), so the state dict is exactly the upstream
``VisionTransformer``'s and checkpoints load unchanged.

**Classification** (:data:`CLASSIFIERS`, by ``model.type``): ``TimmVisionTransformer`` configs, see
:func:`build_classifier`.
"""
from typing import Optional

import torch
from mmseg.registry import MODELS

from ..hosts import ReducedVisionTransformer, insert_token_reduction
from ..hosts.registry import state_of
from ..utils.registry import Registry
from .branch import CompensatorBranch, apply_compensator, find_degree
from .tocom import TokenCompensator

COMPENSATOR_KEYS = ('checkpoint', 'source', 'target', 'scale')


@MODELS.register_module()
class CompensatedVisionTransformer(ReducedVisionTransformer):
    """Args (besides ``ReducedVisionTransformer``'s):
        compensator: dict(checkpoint=FILE (a compensator file), source=0 (the degree the weights are at home at),
            target=None (default: found from the reduction setting), scale=None (default: the trained one)).
    """

    def __init__(self, *args, compensator=None, reducer=None, reduce_after_layer=None, restore_after_layer=None,
                 restore_site='backbone', **kwargs):
        super().__init__(*args, reducer=reducer, reduce_after_layer=reduce_after_layer,
                         restore_after_layer=restore_after_layer, restore_site=restore_site, **kwargs)
        if not isinstance(compensator, dict) or 'checkpoint' not in compensator:
            raise ValueError('compensator must be a dict with a checkpoint (a compensator file), got '
                             f'{compensator!r}')
        unknown = set(compensator) - set(COMPENSATOR_KEYS)
        if unknown:
            raise ValueError(f'compensator: unknown keys {sorted(unknown)}; valid: {list(COMPENSATOR_KEYS)}')
        comp = TokenCompensator.load(compensator['checkpoint'])
        setting = None if reducer is None else dict(reducer=reducer, reduce_after_layer=reduce_after_layer,
                                                   restore_after_layer=restore_after_layer,
                                                   restore_site=restore_site)
        target = find_degree(comp, setting, len(self.layers), compensator.get('target'))
        branch = CompensatorBranch(self, comp, compensator.get('source', 0), target, compensator.get('scale'))
        self.token_reduction.compensator_branch = branch   # not a submodule: no state-dict keys

    @property
    def compensator_branch(self) -> CompensatorBranch:
        return self.token_reduction.compensator_branch


CLASSIFIERS = Registry('classifier')


def build_timm_classifier(model_cfg: dict, checkpoint: Optional[str] = None):
    """A timm ViT from ``dict(type='TimmVisionTransformer', name='deit_base_patch16_224', **timm kwargs)``, with
    no download (``pretrained=False``); ``checkpoint``: a trusted file holding the weights (a plain state dict, or
    one under 'model' / 'state_dict' as DeiT and timm releases store them), loaded strictly. Eval mode."""
    import timm
    cfg = dict(model_cfg)
    if cfg.pop('type', None) != 'TimmVisionTransformer':
        raise ValueError(f"classifier model type must be 'TimmVisionTransformer', got {model_cfg.get('type')!r}")
    name = cfg.pop('name')
    model = timm.create_model(name, pretrained=False, **cfg)
    if checkpoint:
        state = torch.load(checkpoint, map_location='cpu', weights_only=False)
        for key in ('model', 'state_dict'):
            if isinstance(state, dict) and key in state:
                state = state[key]
        model.load_state_dict(state, strict=True)
    return model.eval()


@CLASSIFIERS.register(name='TimmVisionTransformer')
def build_classifier(cfg, checkpoint: Optional[str] = None):
    """A classifier config -> model: ``model`` (see :func:`build_timm_classifier`), optional ``reduction``
    (arguments of :func:`~mmtokred.hosts.insert_token_reduction`) and optional ``compensator`` =
    dict(checkpoint=FILE, source=0, target=None (default: the degree equal to ``reduction``), scale=None,
    mode='fold' | 'branch'). Folding happens after the weights are loaded (exact, zero run-time cost)."""
    model = build_timm_classifier(cfg['model'], checkpoint)
    reduction = dict(cfg.get('reduction') or {})
    insert_token_reduction(model, reduction.pop('reducer', None), reduction.pop('reduce_after_layer', None),
                           **reduction)
    comp_cfg = cfg.get('compensator')
    if comp_cfg:
        comp_cfg = dict(comp_cfg)
        comp = TokenCompensator.load(comp_cfg.pop('checkpoint'))
        target = find_degree(comp, cfg.get('reduction') or None, len(model.blocks), comp_cfg.pop('target', None))
        mode = comp_cfg.pop('mode', 'fold')
        branch = apply_compensator(model, comp, comp_cfg.pop('source', 0), target, mode, comp_cfg.pop('scale', None))
        if comp_cfg:
            raise ValueError(f'compensator: unknown keys {sorted(comp_cfg)}; valid: checkpoint, source, target, '
                             'scale, mode')
        state_of(model).compensator_branch = branch   # None when folded; never a submodule
    return model
