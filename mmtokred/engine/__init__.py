"""Training helpers: the optimizer wrapper registers into mmengine's registry (visible from every scope), the loss into
mmseg's MODELS."""
from .losses import WeightedCrossEntropyLoss  # noqa: F401
from .optim_wrappers import AutocastOptimWrapper  # noqa: F401
