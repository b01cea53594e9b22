"""Class-weighted cross-entropy for mmseg decode heads.

mmseg 1.2.2's ``CrossEntropyLoss(class_weight=...)`` indexes the weight vector with the raw labels to compute its
average factor and fails on the ignore index (255). This loss is PyTorch's weighted mean:
``sum_i w[y_i] * ce_i / sum_i w[y_i]`` over the non-ignored pixels.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS


@MODELS.register_module()
class WeightedCrossEntropyLoss(nn.Module):
    """Args: class_weight: one weight per class; loss_weight: multiplier; loss_name: key in the loss dict."""

    def __init__(self, class_weight, loss_weight=1.0, loss_name='loss_ce'):
        super().__init__()
        if len(class_weight) == 0 or min(class_weight) < 0:
            raise ValueError(f'WeightedCrossEntropyLoss: class_weight must be non-empty and >= 0, got {class_weight}')
        self.register_buffer('class_weight', torch.tensor(class_weight, dtype=torch.float32), persistent=False)
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, cls_score, label, weight=None, ignore_index=255, **kwargs):
        """cls_score: (B, K, H, W) logits; label: (B, H, W) class indices or ``ignore_index``."""
        if cls_score.shape[1] != len(self.class_weight):
            raise ValueError(f'WeightedCrossEntropyLoss: {len(self.class_weight)} class weights for '
                             f'{cls_score.shape[1]} classes')
        if weight is not None:
            raise NotImplementedError('WeightedCrossEntropyLoss: per-pixel weights (a pixel sampler) are not supported')
        return self.loss_weight * F.cross_entropy(cls_score.float(), label, weight=self.class_weight,
                                                  ignore_index=ignore_index)

    @property
    def loss_name(self):
        return self._loss_name
