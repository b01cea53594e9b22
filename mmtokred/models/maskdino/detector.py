"""MaskDINO detector for mmdet 3.x (inference only)."""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from .postprocess import instance_inference, panoptic_inference, panoptic_to_mmdet, resize_masks, semantic_inference


@MODELS.register_module()
class MaskDINO(BaseDetector):
    """MaskDINO (Li et al., CVPR 2023): backbone + :class:`MaskDINOHead`, official test-time rules.

    Post-processing per image, as the official ``MaskDINO.forward`` at eval (``sem_seg_postprocess`` before
    inference): the last layer's mask logits are upsampled bilinearly to the padded batch size, cropped to
    ``img_shape`` and resized to ``ori_shape`` (``rescale=True``) or kept at ``img_shape``; then

    * semantic: ``sum_q softmax(sigmoid(cls) / T) x sigmoid(mask)`` (``T = pano_temp = 0.06``),
    * panoptic: queries with max sigmoid score > ``object_mask_thr`` (0.25), re-scored with the same softmax,
      overlap filter ``overlap_thr`` (0.8), stuff merged per class, see
      :func:`~mmtokred.models.maskdino.postprocess.panoptic_inference`,
    * instances: top ``max_per_image`` (100) (query, class) pairs of sigmoid scores, thing classes only when
      ``panoptic_on``, masks ``> 0``, score x mean mask probability, boxes from the decoder (cx, cy, w, h of the
      padded image) scaled by padded / unpadded size x output size, not clipped.

    Args:
        backbone: backbone config (mmdet ``SwinTransformer`` for the official Swin-L models).
        panoptic_head: :class:`MaskDINOHead` config.
        test_cfg: ``semantic_on``, ``panoptic_on``, ``instance_on``, ``object_mask_thr``, ``overlap_thr``,
            ``pano_temp``, ``transform_eval``, ``max_per_image``, ``num_things_classes`` (things are the first
            classes, mmdet's COCO panoptic order).
        data_preprocessor: mmdet ``DetDataPreprocessor`` (normalise, then pad to a multiple of 32 with 0).
    """

    def __init__(self, backbone: dict, panoptic_head: dict, test_cfg: dict, data_preprocessor: dict = None,
                 train_cfg: dict = None, init_cfg=None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.panoptic_head = MODELS.build(panoptic_head)
        self.test_cfg = dict(semantic_on=False, panoptic_on=False, instance_on=True, object_mask_thr=0.25,
                             overlap_thr=0.8, pano_temp=0.06, transform_eval=True, max_per_image=100,
                             num_things_classes=self.panoptic_head.num_classes)
        unknown = set(test_cfg or {}) - set(self.test_cfg)
        if unknown:
            raise ValueError(f'unknown test_cfg key(s) {sorted(unknown)}; valid: {sorted(self.test_cfg)}')
        self.test_cfg.update(test_cfg or {})
        self._check_test_cfg()

    def _check_test_cfg(self) -> None:
        cfg, num_classes = self.test_cfg, self.panoptic_head.num_classes
        for key in ('object_mask_thr', 'overlap_thr'):
            if not 0 <= cfg[key] <= 1:
                raise ValueError(f'test_cfg.{key} must be in [0, 1], got {cfg[key]}')
        if not cfg['pano_temp'] > 0:
            raise ValueError(f'test_cfg.pano_temp must be > 0, got {cfg["pano_temp"]}')
        if not (isinstance(cfg['max_per_image'], int) and cfg['max_per_image'] >= 1):
            raise ValueError(f'test_cfg.max_per_image must be an integer >= 1, got {cfg["max_per_image"]}')
        if not 0 <= cfg['num_things_classes'] <= num_classes:
            raise ValueError(f'test_cfg.num_things_classes must be in [0, {num_classes}], '
                             f'got {cfg["num_things_classes"]}')
        if not (cfg['semantic_on'] or cfg['panoptic_on'] or cfg['instance_on']):
            raise ValueError('test_cfg: at least one of semantic_on, panoptic_on, instance_on must be True')

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        """Backbone levels, finest first."""
        return self.backbone(batch_inputs)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: OptSampleList = None) -> Dict[str, Tensor]:
        """Raw head outputs (see :meth:`MaskDINOHead.forward`)."""
        return self.panoptic_head(list(self.extract_feat(batch_inputs)))

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList):
        raise NotImplementedError('MaskDINO is ported for inference only (no denoising queries, matcher or losses); '
                                  'train with the official implementation and convert the checkpoint')

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList, rescale: bool = True) -> SampleList:
        """Panoptic / instance / semantic results in ``pred_panoptic_seg`` / ``pred_instances`` / ``pred_sem_seg``.

        Args:
            batch_inputs: (B, 3, Hp, Wp) normalised, padded images.
            batch_data_samples: with ``img_shape`` and ``ori_shape`` in the metainfo.
        """
        outputs = self._forward(batch_inputs)
        results = self.postprocess(outputs, [s.metainfo for s in batch_data_samples], batch_inputs.shape[-2:],
                                   rescale)
        for sample, result in zip(batch_data_samples, results):
            num_classes = self.panoptic_head.num_classes
            if 'panoptic' in result:
                ids, segments = result['panoptic']
                # mmdet's encoding only ('segments_info' of a sample is the ground truth CocoPanopticMetric reads)
                sample.pred_panoptic_seg = PixelData(sem_seg=panoptic_to_mmdet(ids, segments, num_classes)[None])
            if 'instances' in result:
                inst = result['instances']
                sample.pred_instances = InstanceData(bboxes=inst['bboxes'], labels=inst['labels'],
                                                     scores=inst['scores'], masks=inst['masks'])
            if 'sem_seg' in result:
                sample.pred_sem_seg = PixelData(sem_seg=result['sem_seg'].argmax(0, keepdim=True))
        return batch_data_samples

    def postprocess(self, outputs: Dict[str, Tensor], metainfos: List[dict], padded_shape: Tuple[int, int],
                    rescale: bool = True) -> List[dict]:
        """Official post-processing of raw head outputs, per image.

        Returns:
            per image a dict with ``sem_seg`` (K, H, W) scores, ``panoptic`` (segment ids (H, W) int32, segments
            info) and ``instances`` (see :func:`instance_inference`), as enabled in ``test_cfg``.
        """
        cfg = self.test_cfg
        masks = F.interpolate(outputs['pred_masks'], size=tuple(padded_shape), mode='bilinear', align_corners=False)
        results = []
        for logits, mask, boxes, meta in zip(outputs['pred_logits'], masks, outputs['pred_boxes'], metainfos):
            img_shape = tuple(meta['img_shape'][:2])
            out_shape = tuple(meta['ori_shape'][:2]) if rescale else img_shape
            mask = resize_masks(mask, img_shape, out_shape)
            logits = logits.to(mask)
            result = {}
            if cfg['semantic_on']:
                result['sem_seg'] = semantic_inference(logits, mask, cfg['pano_temp'], cfg['transform_eval'])
            if cfg['panoptic_on']:
                result['panoptic'] = panoptic_inference(logits, mask, cfg['num_things_classes'], cfg['object_mask_thr'],
                                                        cfg['overlap_thr'], cfg['pano_temp'], cfg['transform_eval'])
            if cfg['instance_on']:
                # decoder boxes are relative to the padded image: scale by padded / unpadded x output size
                height = padded_shape[0] / img_shape[0] * out_shape[0]
                width = padded_shape[1] / img_shape[1] * out_shape[1]
                scale = torch.tensor([width, height, width, height]).to(mask)
                result['instances'] = instance_inference(
                    logits, mask, bbox_cxcywh_to_xyxy(boxes.to(mask)) * scale, cfg['max_per_image'],
                    cfg['num_things_classes'] if cfg['panoptic_on'] else None)
            results.append(result)
        return results
