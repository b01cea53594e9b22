"""mmtokred: training-free token reduction for OpenMMLab dense-prediction transformers.

``mmtokred.compensators`` holds the Token Compensator (ToCom), a plug-in that compensates a model for running at
another reduction degree. The timm classification host (``mmtokred.hosts.timm_vit``) is imported on use (timm).

``import mmtokred`` registers the reducers, the host adapters (backbones, segmentors, hooks) and the datasets in
the OpenMMLab registries. ``mmtokred.reducers`` alone needs nothing but PyTorch.
"""
from .reducers import REDUCERS, Reduction, TokenReducer, build_reducer  # noqa: F401
from .version import __version__  # noqa: F401

from . import compensators, datasets, engine, hosts  # noqa: F401,E402  (registers into the OpenMMLab registries)
from .hosts import (ReducedVisionTransformer, TokenReductionEncoderDecoder, TokenReductionHook,  # noqa: F401,E402
                    insert_token_reduction)
