"""mmtokred: training-free token reduction for OpenMMLab dense-prediction transformers.

``import mmtokred`` registers the reducers, the host adapters (backbones, segmentors, hooks), the datasets and the
ported models (MaskDINO, in mmdet's registry) in the OpenMMLab registries, the ``dinov2://`` checkpoint scheme and
the ``mmtokred::`` config prefix (``_base_ = 'mmtokred::segmenter_vitl_tokenadapter_ade.py'``).
``mmtokred.reducers`` alone needs nothing but PyTorch. The known import-time warnings of OpenMMLab
(``mmtokred.utils.warnings``) are silenced during this import only.

``mmtokred.compensators`` holds the Token Compensator (ToCom), a plug-in that compensates a model for running at
another reduction degree. The timm classification host (``mmtokred.hosts.timm_vit``) imports timm on use.

Layers (checked by ``lint-imports``, see ``.importlinter``): tools -> analysis -> compensators -> hosts -> reducers,
with ``utils`` and ``phases`` as leaves.
"""
from .reducers import REDUCERS, Reduction, TokenReducer, build_reducer  # noqa: F401
from .utils.warnings import quiet_imports
from .version import __version__  # noqa: F401

with quiet_imports():
    from . import compensators, datasets, engine, hosts, models  # noqa: F401,E402  (registers into the registries)
from .config_scheme import register_config_scheme  # noqa: E402  (_base_ = 'mmtokred::...')
from .hosts import (  # noqa: F401,E402
    ReducedVisionTransformer,
    TokenReductionEncoderDecoder,
    TokenReductionHook,
    insert_token_reduction,
    reducers_of,
    reduction_disabled,
    reduction_plan,
)
from .pretrained import register_checkpoint_scheme  # noqa: E402  (dinov2:// checkpoints)

register_checkpoint_scheme()
register_config_scheme()
