"""Token Compensator (ToCom): a plug-in trained once by self-distillation that compensates a model for running at
another token-reduction degree than the one it is at home at. ``tocom`` is the plug-in (pure PyTorch), ``hosts``
says where it goes in each model family and how a model is put at a degree."""
from .hosts import (HOST_ADAPTERS, CompensatorBranch, apply_compensator, build_compensator_for, canonical_setting,
                    find_degree, fold_compensator, host_adapter, unfold_compensator)
from .tocom import TokenCompensator

__all__ = ['TokenCompensator', 'CompensatorBranch', 'apply_compensator', 'fold_compensator', 'unfold_compensator',
           'build_compensator_for', 'host_adapter', 'find_degree', 'canonical_setting', 'HOST_ADAPTERS']
