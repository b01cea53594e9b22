"""A Token Compensator in a config: ``ReducedVisionTransformer`` + a compensator branch.

    model = dict(backbone=dict(type='CompensatedVisionTransformer',
                               compensator=dict(checkpoint='work_dirs/tocom/camvid_ta.pth', source=0),
                               reducer=..., reduce_after_layer=..., restore_site=...))

or on an unchanged reduced config: ``--cfg-options model.backbone.type=CompensatedVisionTransformer
model.backbone.compensator.checkpoint=FILE``. The target degree is the compensator degree whose setting equals this
backbone's reduction (an error names both when none does), or ``compensator.target`` (checked against the setting).
The compensator runs as a branch (:class:`mmtokred.compensators.CompensatorBranch`): it is kept outside the module
tree, so the state dict is exactly the upstream ``VisionTransformer``'s and checkpoints load unchanged.
"""
from mmseg.registry import MODELS

from ..compensators import CompensatorBranch, TokenCompensator, find_degree
from .vit import ReducedVisionTransformer

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
        self.__dict__['compensator_branch'] = branch   # not a submodule: no state-dict keys
