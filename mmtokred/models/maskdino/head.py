"""MaskDINO's decoder head (official ``MaskDINODecoder`` + ``TransformerDecoder``), inference path."""
from typing import Dict, List, Tuple

import torch
from mmdet.models.detectors.deformable_detr import DeformableDETR
from mmdet.models.layers import MLP, DinoTransformerDecoder, coordinate_to_encoding, inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmdet.structures.mask import mask2bbox
from mmengine.model import BaseModule
from torch import Tensor, nn

MASKDINO_INVERSE_SIGMOID_EPS = 1e-5  # MaskDINO's ``inverse_sigmoid``; mmdet's DINO decoder uses 1e-3


class MaskDINOTransformerDecoder(DinoTransformerDecoder):
    """mmdet's DINO decoder with MaskDINO's two numerical differences.

    Same layers (self-attention -> norm, deformable cross-attention -> norm, FFN -> norm), query position
    ``ref_point_head(sine(ref))`` with sine order (y, x, w, h) and the box refinement on the un-normed layer output.
    Differences, following MaskDINO: the inverse sigmoid of the reference uses eps 1e-5 (mmdet 1e-3), the sine
    embedding has ``embed_dims // 2`` features per coordinate (mmdet hard-codes 128, the same at width 256), and the
    layers run with autocast disabled.
    """

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, valid_ratios: Tensor, reg_branch: nn.Module,
                **kwargs) -> Tuple[List[Tensor], List[Tensor]]:
        """Args:
            query: (B, Q, C) content queries. value: (B, S, C) memory.
            reference_points: (B, Q, 4) initial boxes (cx, cy, w, h) in [0, 1].
            reg_branch: box MLP shared by all layers (MaskDINO shares one ``bbox_embed``).

        Returns:
            per layer ``norm(output)`` (B, Q, C) (L items) and the references (B, Q, 4): the initial one and the
            refined one after every layer (L + 1 items; item l is the input reference of layer l).
        """
        intermediate, references = [], [reference_points]
        for layer in self.layers:
            reference_input = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            sine = coordinate_to_encoding(reference_input[:, :, 0, :], num_feats=self.embed_dims // 2)
            query_pos = self.ref_point_head(sine)
            with torch.autocast(device_type=query.device.type, enabled=False):  # as the official decoder layer
                query = layer(query, query_pos=query_pos, value=value, key_padding_mask=None, self_attn_mask=None,
                              spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                              valid_ratios=valid_ratios, reference_points=reference_input, **kwargs)
            new_reference = (reg_branch(query) + inverse_sigmoid(reference_points, MASKDINO_INVERSE_SIGMOID_EPS)
                             ).sigmoid()
            reference_points = new_reference.detach()
            intermediate.append(self.norm(query))
            references.append(new_reference)
        return intermediate, references


@MODELS.register_module()
class MaskDINOHead(BaseModule):
    """MaskDINO head: pixel decoder, two-stage query selection, deformable decoder, class / mask / box heads.

    Inference only (the denoising queries and the losses are training-only and not ported). Follows the official
    ``MaskDINODecoder.forward`` at eval:

    * the decoder memory is the pixel-decoder levels in reverse (stride 64 first), so the two-stage proposal size
      ``0.05 * 2**level`` is 0.05 at stride 64 and 0.8 at stride 4 and the deformable level 0 is stride 64;
    * proposals and the selected memory come from mmdet's ``DeformableDETR.gen_encoder_output_proposals`` (called on
      this head: same ``memory_trans_fc`` + ``memory_trans_norm``, official ``enc_output`` / ``enc_output_norm``);
      proposals outside (0.01, 0.99) are invalid (memory zeroed, logit ``inf``); no padding mask;
    * the top ``num_queries`` tokens by max class logit give the content queries (selected memory) and the
      reference boxes ``bbox_embed(memory) + proposal``; with ``initialize_box_type='bitmask'`` the references are
      replaced by the boxes of the intermediate masks ``> 0`` (mmdet ``mask2bbox`` == detectron2
      ``BitMasks.get_bounding_boxes``) normalised by the mask grid, then inverse sigmoid (eps 1e-5);
    * one box MLP (``bbox_embed``) is shared by the encoder head and every decoder layer;
    * double LayerNorm: the decoder returns ``norm(output)`` per layer and the class / mask heads apply the same
      LayerNorm (``decoder.norm`` = official ``decoder_norm``) again;
    * boxes of layer l = ``sigmoid(bbox_embed(norm(output_l)) + inverse_sigmoid(reference input of layer l))``,
      while the references passed on use the un-normed output;
    * only the last layer computes masks (einsum of ``mask_embed`` with the mask features).

    Args:
        num_classes: classes (133 COCO panoptic, 80 COCO instance).
        pixel_decoder: config of :class:`MaskDINOPixelDecoder`.
        decoder: config of the decoder (``num_layers``, ``layer_cfg``; ``post_norm_cfg=None``).
        num_queries: selected queries. Default 300.
        hidden_dim: decoder width; must equal the pixel decoder's ``feat_channels`` (the official Swin-L configs'
            identity decoder input projection). Default 256.
        mask_dim: mask-embedding width (pixel decoder ``out_channels``). Default 256.
        initialize_box_type: ``'no'`` (boxes from the two-stage head) or ``'bitmask'`` (from the intermediate
            masks: the mask-enhanced instance model). Default ``'no'``.
    """

    BOX_INIT_TYPES = ('no', 'bitmask')

    def __init__(self, num_classes: int, pixel_decoder: dict, decoder: dict, num_queries: int = 300,
                 hidden_dim: int = 256, mask_dim: int = 256, initialize_box_type: str = 'no', init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if initialize_box_type not in self.BOX_INIT_TYPES:
            raise ValueError(f'initialize_box_type must be one of {self.BOX_INIT_TYPES}, got {initialize_box_type!r}')
        if pixel_decoder.get('feat_channels', 256) != hidden_dim:
            raise ValueError('pixel_decoder.feat_channels must equal hidden_dim (MaskDINO Swin-L has no decoder '
                             f'input projection), got {pixel_decoder.get("feat_channels", 256)} != {hidden_dim}')
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.initialize_box_type = initialize_box_type
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.decoder = MaskDINOTransformerDecoder(**decoder)
        self.memory_trans_fc = nn.Linear(hidden_dim, hidden_dim)
        self.memory_trans_norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)

    def prediction_heads(self, query: Tensor, mask_features: Tensor,
                         with_masks: bool = True) -> Tuple[Tensor, Tensor]:
        """Class logits (B, Q, K) and, if asked, mask logits (B, Q, H, W) of queries (B, Q, C).

        Applies ``decoder.norm`` (official ``decoder_norm``) first, also to already-normed decoder outputs.
        """
        query = self.decoder.norm(query)
        logits = self.class_embed(query)
        if not with_masks:
            return logits, None
        return logits, torch.einsum('bqc,bchw->bqhw', self.mask_embed(query), mask_features)

    def forward(self, feats: List[Tensor]) -> Dict[str, Tensor]:
        """Args:
            feats: backbone levels, finest first, each (B, C_l, H_l, W_l).

        Returns:
            dict with ``pred_logits`` (B, Q, K), ``pred_masks`` (B, Q, H/4, W/4) and ``pred_boxes`` (B, Q, 4)
            (cx, cy, w, h of the padded image, in [0, 1]) of the last layer; ``aux_pred_logits`` /
            ``aux_pred_boxes`` (lists: the initial prediction, then each layer), ``interm_pred_logits``,
            ``interm_pred_boxes``, ``interm_pred_masks`` (two-stage head on the selected tokens), ``topk_index``
            (B, Q) into the memory (levels stride 64 first), ``mask_features`` and ``multi_scale_features``.
        """
        mask_features, multi_scale = self.pixel_decoder(feats)
        levels = multi_scale[::-1]  # the decoder memory starts with the coarsest level
        batch, channels = levels[0].shape[:2]
        memory = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], 1)
        spatial_shapes = torch.as_tensor([level.shape[-2:] for level in levels], dtype=torch.long,
                                         device=memory.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = memory.new_ones((batch, len(levels), 2))

        output_memory, proposals = DeformableDETR.gen_encoder_output_proposals(self, memory, None, spatial_shapes)
        enc_logits = self.class_embed(output_memory)
        enc_boxes = self.bbox_embed(output_memory) + proposals  # logit space
        topk_index = torch.topk(enc_logits.max(-1)[0], self.num_queries, dim=1)[1]
        reference = torch.gather(enc_boxes, 1, topk_index.unsqueeze(-1).expand(-1, -1, 4))
        query = torch.gather(output_memory, 1, topk_index.unsqueeze(-1).expand(-1, -1, channels))
        interm_logits, interm_masks = self.prediction_heads(query, mask_features)
        interm_boxes = reference.sigmoid()
        if self.initialize_box_type == 'bitmask':
            h, w = interm_masks.shape[-2:]
            boxes = mask2bbox(interm_masks.flatten(0, 1) > 0)
            boxes = bbox_xyxy_to_cxcywh(boxes) / boxes.new_tensor([w, h, w, h])
            reference = inverse_sigmoid(boxes.view(batch, self.num_queries, 4), MASKDINO_INVERSE_SIGMOID_EPS)

        hidden, references = self.decoder(query=query, value=memory, reference_points=reference.sigmoid(),
                                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                                          valid_ratios=valid_ratios, reg_branch=self.bbox_embed)
        aux_logits = [interm_logits]  # initial prediction: the heads on the selected queries
        for layer_output in hidden[:-1]:
            aux_logits.append(self.prediction_heads(layer_output, mask_features, with_masks=False)[0])
        logits, masks = self.prediction_heads(hidden[-1], mask_features)
        aux_logits.append(logits)
        boxes = [reference.sigmoid()] + [
            (self.bbox_embed(layer_output) + inverse_sigmoid(layer_reference, MASKDINO_INVERSE_SIGMOID_EPS)).sigmoid()
            for layer_output, layer_reference in zip(hidden, references[:-1])]
        return dict(pred_logits=logits, pred_masks=masks, pred_boxes=boxes[-1], aux_pred_logits=aux_logits[:-1],
                    aux_pred_boxes=boxes[:-1], interm_pred_logits=interm_logits, interm_pred_boxes=interm_boxes,
                    interm_pred_masks=interm_masks, topk_index=topk_index, mask_features=mask_features,
                    multi_scale_features=multi_scale)
