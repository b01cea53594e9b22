"""Training utilities registered into mmengine's registries (visible from the mmseg and mmdet scopes)."""
from .optim_wrappers import AutocastOptimWrapper  # noqa: F401
from .losses import WeightedCrossEntropyLoss  # noqa: F401
