"""MaskDINO's test-time post-processing (official ``MaskDINO.{semantic,panoptic,instance}_inference``), per image.

Pure functions on one image's decoder outputs: class logits (Q, K) with sigmoid scores (no "no-object" class) and
mask logits (Q, H, W) already cropped to the unpadded image and resized to the output size.
"""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_masks(masks: Tensor, img_shape: Tuple[int, int], out_shape: Tuple[int, int]) -> Tensor:
    """Crop padded mask logits (Q, Hp, Wp) to ``img_shape`` and resize them bilinearly to ``out_shape``
    (detectron2 ``sem_seg_postprocess``)."""
    masks = masks[:, :img_shape[0], :img_shape[1]]
    return F.interpolate(masks[None], size=tuple(out_shape), mode='bilinear', align_corners=False)[0]


def sharpened_scores(logits: Tensor, temperature: float) -> Tensor:
    """softmax(sigmoid(logits) / temperature) over classes (official ``PANO_TRANSFORM_EVAL``), (Q, K)."""
    return F.softmax(logits.sigmoid() / temperature, dim=-1)


def semantic_inference(logits: Tensor, masks: Tensor, temperature: float = 0.06,
                       transform_eval: bool = True) -> Tensor:
    """Per-class score maps (K, H, W) = sum over queries of class scores x sigmoid(mask)."""
    scores = sharpened_scores(logits, temperature) if transform_eval else logits.sigmoid()
    return torch.einsum('qc,qhw->chw', scores, masks.sigmoid())


def panoptic_inference(logits: Tensor, masks: Tensor, num_things_classes: int, object_mask_thr: float = 0.25,
                       overlap_thr: float = 0.8, temperature: float = 0.06,
                       transform_eval: bool = True) -> Tuple[Tensor, List[Dict]]:
    """Official panoptic merge.

    Keeps queries whose max sigmoid score exceeds ``object_mask_thr``; with ``transform_eval`` their score and class
    become the max / argmax of the sharpened scores. Each pixel goes to the kept query with the highest
    score x mask probability; a query's segment is those pixels with probability >= 0.5, dropped when it keeps less
    than ``overlap_thr`` of its own >= 0.5 area; segments of the same stuff class are merged.

    Args:
        logits: (Q, K) class logits. masks: (Q, H, W) mask logits.
        num_things_classes: classes ``0 .. num_things_classes - 1`` are things (COCO panoptic: 80).

    Returns:
        segment ids (H, W) int32 (0 = void) and ``[{'id', 'isthing', 'category_id'}]`` per segment.
    """
    scores, labels = logits.sigmoid().max(-1)
    probs = masks.sigmoid()
    keep = scores > object_mask_thr
    if transform_eval:
        scores, labels = sharpened_scores(logits, temperature).max(-1)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], probs[keep]
    panoptic = torch.zeros(probs.shape[-2:], dtype=torch.int32, device=probs.device)
    segments: List[Dict] = []
    if cur_masks.shape[0] == 0:
        return panoptic, segments
    mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    stuff_ids: Dict[int, int] = {}
    for k in range(cur_classes.shape[0]):
        pred_class = int(cur_classes[k])
        isthing = pred_class < num_things_classes
        mask_area = (mask_ids == k).sum().item()
        original_area = (cur_masks[k] >= 0.5).sum().item()
        mask = (mask_ids == k) & (cur_masks[k] >= 0.5)
        if mask_area == 0 or original_area == 0 or mask.sum().item() == 0:
            continue
        if mask_area / original_area < overlap_thr:
            continue
        if not isthing:
            if pred_class in stuff_ids:
                panoptic[mask] = stuff_ids[pred_class]
                continue
            stuff_ids[pred_class] = len(segments) + 1
        panoptic[mask] = len(segments) + 1
        segments.append(dict(id=len(segments) + 1, isthing=isthing, category_id=pred_class))
    return panoptic, segments


def panoptic_to_mmdet(panoptic: Tensor, segments: List[Dict], num_classes: int) -> Tensor:
    """Segment ids + segments info -> mmdet's panoptic encoding (void ``num_classes``, stuff ``label``, thing
    ``label + id * INSTANCE_OFFSET``), as ``CocoPanopticMetric`` reads it. (H, W) int64."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    out = torch.full(panoptic.shape, num_classes, dtype=torch.long, device=panoptic.device)
    for seg in segments:
        value = seg['category_id'] + (seg['id'] * INSTANCE_OFFSET if seg['isthing'] else 0)
        out[panoptic == seg['id']] = value
    return out


def instance_inference(logits: Tensor, masks: Tensor, boxes: Tensor, max_per_image: int = 100,
                       num_things_classes: int = None) -> Dict[str, Tensor]:
    """Official instance selection: the top ``max_per_image`` (query, class) pairs of the sigmoid scores.

    Args:
        logits: (Q, K). masks: (Q, H, W) mask logits at the output size. boxes: (Q, 4) xyxy at the output size.
        num_things_classes: if given (panoptic model), keep thing classes only.

    Returns:
        ``scores`` (class score x mean probability inside the mask ``> 0``), ``labels``, ``masks`` (N, H, W) bool,
        ``bboxes`` (N, 4), ``query_index`` and ``flat_index`` (= query * K + class), sorted by class score
        (the official ``topk(sorted=False)`` order is unspecified; the set is the same).
    """
    num_classes = logits.shape[-1]
    class_scores, flat_index = logits.sigmoid().flatten().topk(min(max_per_image, logits.numel()), sorted=True)
    labels = flat_index % num_classes
    query_index = flat_index // num_classes
    if num_things_classes is not None:
        things = labels < num_things_classes
        class_scores, labels, query_index, flat_index = (t[things] for t in (class_scores, labels, query_index,
                                                                              flat_index))
    mask_logits = masks[query_index]
    binary = (mask_logits > 0).float()
    mask_scores = (mask_logits.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return dict(scores=class_scores * mask_scores, labels=labels, masks=binary.bool(), bboxes=boxes[query_index],
                query_index=query_index, flat_index=flat_index)
