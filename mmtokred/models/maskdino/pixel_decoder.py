"""MaskDINO's pixel decoder (official ``MaskDINOEncoder``): deformable encoder over all backbone levels plus extra
stride-64 level(s), one FPN level for the stride-4 mask features."""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.layers import DeformableDetrTransformerEncoder, SinePositionalEncoding
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn


@MODELS.register_module()
class MaskDINOPixelDecoder(BaseModule):
    """Multi-scale deformable encoder + FPN level of MaskDINO (inference path of the official ``MaskDINOEncoder``).

    Levels, in the order the encoder sees them (the official ``FEATURE_ORDER='low2high'`` after its reversal):
    the backbone levels finest first (stride 4, 8, 16, 32 for Swin), then ``num_extra_levels`` levels made by
    chained 3x3/s2 conv + GN, the first on the raw coarsest backbone feature (stride 64), appended coarsest first as
    the official code does (only matters for more than one extra level). Each level is projected by a
    conv + GN(32) (1x1 with bias for backbone levels), gets a normalised sine position (``SinePositionalEncoding``
    with ``offset=0, eps=1e-6``; MaskDINO computes it from the feature shape, no padding mask) plus a learnt level
    embedding, and the levels go through mmdet's ``DeformableDetrTransformerEncoder`` (post-norm layers, mmcv
    ``MultiScaleDeformableAttention``; identical computation to the official encoder layer). Like the official
    model, no padding mask is used anywhere: valid ratios are 1 and padded pixels take part in attention.

    Differs from mmdet's ``MSDeformAttnPixelDecoder`` (Mask2Former): all backbone levels plus the extra level enter
    the encoder (5 levels, finest first), the FPN is one level (lateral 1x1 conv + GN without bias on the finest
    backbone level + bilinear resize of the finest encoder output, then 3x3 conv + GN + ReLU), and the returned
    multi-scale features are the encoder outputs, not FPN outputs.

    Args:
        in_channels: channels of the backbone levels, finest first, e.g. ``(192, 384, 768, 1536)``.
        encoder: config of ``DeformableDetrTransformerEncoder`` (its attention must have
            ``num_levels = len(in_channels) + num_extra_levels``).
        positional_encoding: config of ``SinePositionalEncoding`` (``num_feats = feat_channels // 2``).
        feat_channels: encoder width (official ``CONVS_DIM``). Default 256.
        out_channels: channels of the mask features (official ``MASK_DIM``). Default 256.
        num_extra_levels: strided levels added after the coarsest backbone level
            (official ``TOTAL_NUM_FEATURE_LEVELS - NUM_FEATURE_LEVELS``). Default 1.
        num_groups: GroupNorm groups. Default 32.
    """

    def __init__(self, in_channels: Sequence[int], encoder: dict, positional_encoding: dict, feat_channels: int = 256,
                 out_channels: int = 256, num_extra_levels: int = 1, num_groups: int = 32, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_levels = len(in_channels) + num_extra_levels
        levels_in_attention = encoder['layer_cfg']['self_attn_cfg'].get('num_levels')
        if levels_in_attention != self.num_levels:
            raise ValueError(f'encoder.layer_cfg.self_attn_cfg.num_levels must be len(in_channels) + '
                             f'num_extra_levels = {self.num_levels}, got {levels_in_attention}')
        norm_cfg = dict(type='GN', num_groups=num_groups)
        convs = [ConvModule(c, feat_channels, 1, bias=True, norm_cfg=norm_cfg, act_cfg=None) for c in in_channels]
        extra_in = in_channels[-1]
        for _ in range(num_extra_levels):
            convs.append(ConvModule(extra_in, feat_channels, 3, stride=2, padding=1, bias=True, norm_cfg=norm_cfg,
                                    act_cfg=None))
            extra_in = feat_channels
        self.input_convs = nn.ModuleList(convs)
        self.encoder = DeformableDetrTransformerEncoder(**encoder)
        self.positional_encoding = SinePositionalEncoding(**positional_encoding)
        self.level_encoding = nn.Embedding(self.num_levels, feat_channels)
        self.lateral_convs = nn.ModuleList(
            [ConvModule(in_channels[0], feat_channels, 1, bias=False, norm_cfg=norm_cfg, act_cfg=None)])
        self.output_convs = nn.ModuleList([ConvModule(feat_channels, feat_channels, 3, padding=1, bias=False,
                                                      norm_cfg=norm_cfg, act_cfg=dict(type='ReLU'))])
        self.mask_feature = nn.Conv2d(feat_channels, out_channels, 1)

    def forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Args:
            feats: backbone levels, finest first, each (B, C_l, H_l, W_l).

        Returns:
            mask_features (B, out_channels, H_0, W_0) and the encoder outputs per level, finest first (stride 4, 8,
            16, 32, 64 for Swin), each (B, feat_channels, h_l, w_l).
        """
        # MaskDINO runs its pixel decoder in fp32 with autocast disabled (deformable attention needs fp32)
        with torch.autocast(device_type=feats[0].device.type, enabled=False):
            return self._forward([f.float() for f in feats])

    def _forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        srcs = [conv(f) for conv, f in zip(self.input_convs, feats)]
        extras = [feats[-1]]
        for conv in self.input_convs[len(feats):]:
            extras.append(conv(extras[-1]))
        srcs += extras[:0:-1]  # the official encoder appends the extra levels coarsest first (one level: stride 64)
        batch = srcs[0].shape[0]
        queries, query_pos, shapes = [], [], []
        for level, src in enumerate(srcs):
            h, w = src.shape[-2:]
            no_padding = src.new_zeros((batch, h, w), dtype=torch.bool)
            pos = self.positional_encoding(no_padding).flatten(2).transpose(1, 2)
            query_pos.append(pos + self.level_encoding.weight[level].view(1, 1, -1))
            queries.append(src.flatten(2).transpose(1, 2))
            shapes.append((h, w))
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=srcs[0].device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = srcs[0].new_ones((batch, self.num_levels, 2))
        memory = self.encoder(query=torch.cat(queries, 1), query_pos=torch.cat(query_pos, 1), key_padding_mask=None,
                              spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                              valid_ratios=valid_ratios)
        outs = [level.transpose(1, 2).reshape(batch, -1, h, w)
                for level, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes)]
        lateral = self.lateral_convs[0](feats[0])
        fpn = lateral + F.interpolate(outs[0], size=lateral.shape[-2:], mode='bilinear', align_corners=False)
        fpn = self.output_convs[0](fpn)
        return self.mask_feature(fpn), outs
