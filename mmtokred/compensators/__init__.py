"""Token Compensator (ToCom): a plug-in trained once by self-distillation that compensates a model for running at
another token-reduction degree than the one it is at home at. ``tocom`` is the plug-in (pure PyTorch), ``branch``
attaches it where the host says q / v live and puts a model at a degree, ``models`` holds the config types
(``CompensatedVisionTransformer``, the classifier builders)."""
from .branch import (
                     CompensatorBranch,
                     apply_compensator,
                     build_compensator_for,
                     canonical_setting,
                     compensator_host,
                     find_degree,
                     fold_compensator,
                     set_degree,
                     unfold_compensator,
)
from .models import CLASSIFIERS, CompensatedVisionTransformer, build_classifier, build_timm_classifier
from .tocom import TokenCompensator

__all__ = ['TokenCompensator', 'CompensatorBranch', 'apply_compensator', 'fold_compensator', 'unfold_compensator',
           'build_compensator_for', 'compensator_host', 'find_degree', 'canonical_setting', 'set_degree',
           'CompensatedVisionTransformer', 'CLASSIFIERS', 'build_classifier', 'build_timm_classifier']
