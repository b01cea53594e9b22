"""mmtokred: training-free token reduction for OpenMMLab dense-prediction transformers.

``import mmtokred`` registers the reducers, the host adapters (backbones, segmentors, hooks) and the datasets in
the OpenMMLab registries. ``mmtokred.reducers`` alone needs nothing but PyTorch.
"""
from .reducers import REDUCERS, Reduction, TokenReducer, build_reducer  # noqa: F401
from .version import __version__  # noqa: F401

from . import datasets, engine, hosts  # noqa: F401,E402  (registers into the OpenMMLab registries)
from .pretrained import register_checkpoint_scheme  # noqa: E402  (dinov2:// checkpoints)
from .hosts import (ReducedVisionTransformer, TokenReductionEncoderDecoder, TokenReductionHook,  # noqa: F401,E402
                    insert_token_reduction)

register_checkpoint_scheme()
