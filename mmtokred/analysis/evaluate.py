"""Evaluate a segmentor on a dataloader, keeping what is needed to compare reduced and unreduced models honestly:
their predictions (agreement mIoU, pixel agreement) and per-image class areas against the ground truth (a paired
bootstrap interval of the retained mIoU over images)."""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from ..utils.progress import progress_bar


@dataclass
class Evaluation:
    """metrics: the evaluator's dict; preds: (H, W) uint8 label maps; agreement: mIoU (%) of preds against the
    reference predictions and pixel_agreement: % of equal pixels (None without a reference); areas:
    (N_images, 3, K) float64 per-image intersection / predicted / ground-truth pixels per class."""
    metrics: dict
    preds: List[torch.Tensor]
    agreement: Optional[float]
    pixel_agreement: Optional[float]
    areas: torch.Tensor


def class_areas(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """pred, gt: (H, W) label maps -> (3, K) intersection, predicted and ground-truth pixels per class, over the
    pixels whose ground truth is not ``ignore_index`` (mmseg's IoUMetric counting)."""
    pred, gt = pred.long().flatten(), gt.long().flatten()
    valid = gt != ignore_index
    pred, gt = pred[valid], gt[valid]

    def count(v):
        return torch.bincount(v, minlength=num_classes)[:num_classes].double()

    return torch.stack([count(pred[pred == gt]), count(pred), count(gt)])


def iou_from_areas(areas: torch.Tensor) -> torch.Tensor:
    """areas: (..., 3, K) summed class areas -> (..., K) IoU in %, NaN for a class absent from both maps."""
    inter, area_p, area_g = areas.unbind(-2)
    union = area_p + area_g - inter
    return torch.where(union > 0, 100 * inter / union.clamp(min=1), torch.full_like(inter, float('nan')))


def miou_from_areas(areas: torch.Tensor) -> torch.Tensor:
    """areas: (..., 3, K) summed class areas -> (...) mIoU in %, the mean over classes with a non-empty union
    (mmseg's nanmean)."""
    return iou_from_areas(areas).nanmean(-1)


def evaluate_segmentor(model, loader, evaluator, reference: Optional[List[torch.Tensor]] = None,
                       num_classes: Optional[int] = None, progress: bool = True,
                       ignore_index: Optional[int] = None) -> Evaluation:
    """Run ``model.test_step`` over ``loader`` and feed ``evaluator``. ``reference``: the unreduced model's
    predictions, treated as ground truth for the agreement figures. ``ignore_index``: the ground-truth label left
    out of the per-image areas; by default the evaluator's (IoUMetric's) own, else 255."""
    num_classes = num_classes or len(loader.dataset.metainfo['classes'])
    if ignore_index is None:
        metrics = getattr(evaluator, 'metrics', [])
        ignore_index = getattr(metrics[0], 'ignore_index', 255) if metrics else 255
    preds, areas = [], []
    bar = progress_bar(len(loader), progress, 'evaluating', 'img')
    with torch.no_grad():
        for data in loader:
            outputs = model.test_step(data)
            evaluator.process(data_samples=outputs, data_batch=data)
            for out in outputs:
                pred = out.pred_sem_seg.data[0].to(torch.uint8).cpu()
                preds.append(pred)
                if 'gt_sem_seg' in out:
                    areas.append(class_areas(pred, out.gt_sem_seg.data[0].cpu(), num_classes, ignore_index))
            bar.update(1)
    bar.close()
    metrics = evaluator.evaluate(len(loader.dataset))
    agreement = pixel_agreement = None
    if reference is not None:
        agreement = agreement_miou(preds, reference, num_classes)
        pixel_agreement = agreement_pixels(preds, reference)
    areas = torch.stack(areas) if areas else torch.zeros(0, 3, num_classes, dtype=torch.float64)
    return Evaluation(metrics, preds, agreement, pixel_agreement, areas)


def agreement_miou(preds, reference, num_classes):
    """mIoU (%) of ``preds`` against ``reference`` label maps, over classes present in either."""
    inter = torch.zeros(num_classes, dtype=torch.float64)
    union = torch.zeros(num_classes, dtype=torch.float64)
    for p, r in zip(preds, reference):
        p, r = p.long().flatten(), r.long().flatten()
        inter += torch.bincount(p[p == r], minlength=num_classes)[:num_classes].double()
        area_p = torch.bincount(p, minlength=num_classes)[:num_classes].double()
        area_r = torch.bincount(r, minlength=num_classes)[:num_classes].double()
        union += area_p + area_r
    union -= inter
    valid = union > 0
    return float(100 * (inter[valid] / union[valid]).mean()) if valid.any() else float('nan')


def agreement_pixels(preds, reference) -> float:
    """% of pixels (all of them, void included) where ``preds`` and ``reference`` give the same class."""
    same = sum(int((p == r).sum()) for p, r in zip(preds, reference))
    return 100 * same / sum(p.numel() for p in preds)


def _paired_resampled_mious(areas: torch.Tensor, other: torch.Tensor, other_name: str, resamples: int, level: float,
                            seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(R,) mIoUs of both settings over the same R bootstrap draws of the N images (each draw: N images with
    replacement, shared by both settings, mIoU recomputed from the summed areas)."""
    if areas.shape != other.shape or areas.dim() != 3 or areas.shape[1] != 3:
        raise ValueError(f'areas and {other_name} must both be (N, 3, K), got {tuple(areas.shape)} and '
                         f'{tuple(other.shape)}')
    if not 0 < level < 1:
        raise ValueError(f'level must be in (0, 1), got {level}')
    if resamples < 1:
        raise ValueError(f'resamples must be >= 1, got {resamples}')
    n = areas.shape[0]
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=g)
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(resamples, n, dtype=torch.float64))          # (R, N): how often each image is drawn
    return tuple(miou_from_areas((weights @ a.double().flatten(1)).view(resamples, 3, -1)) for a in (areas, other))


def _interval(values: torch.Tensor, level: float) -> Tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles, NaN values left out."""
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.nanquantile(values, q).tolist()
    return low, high


def bootstrap_retained(areas: torch.Tensor, base_areas: torch.Tensor, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> Tuple[float, float]:
    """Paired bootstrap over images of the retained mIoU, 100 * mIoU(method) / mIoU(baseline).

    areas, base_areas: (N, 3, K) per-image class areas of the method and of the baseline on the same N images.
    Every resample draws N images with replacement, the same draw for both models (the images are shared), and
    recomputes both mIoUs from the summed areas. Returns the (1 - level) / 2 and (1 + level) / 2 quantiles in %
    (resamples in which the baseline scores 0 are left out).
    """
    miou, base_miou = _paired_resampled_mious(areas, base_areas, 'base_areas', resamples, level, seed)
    # a resample where the baseline scores 0 has no ratio: left out (NaN interval when every resample is)
    ratio = torch.where(base_miou > 0, 100 * miou / base_miou.clamp(min=1e-12),
                        torch.full_like(base_miou, float('nan')))
    return _interval(ratio, level)


def bootstrap_difference(areas: torch.Tensor, other_areas: torch.Tensor, resamples: int = 2000,
                         level: float = 0.95, seed: int = 0) -> Tuple[float, float]:
    """Paired bootstrap over images of the mIoU difference mIoU(areas) - mIoU(other_areas), in mIoU points: the
    interval of what one setting gains over another on the same images (e.g. a compensated reduction over the
    uncompensated one). Same draws and conventions as :func:`bootstrap_retained`."""
    miou, other_miou = _paired_resampled_mious(areas, other_areas, 'other_areas', resamples, level, seed)
    return _interval(miou - other_miou, level)


def build_test_loader_and_evaluator(cfg, max_images: Optional[int] = None):
    from mmengine.runner import Runner
    loader_cfg = cfg.test_dataloader.copy()
    loader_cfg['persistent_workers'] = False
    if max_images:
        loader_cfg['dataset'] = dict(loader_cfg['dataset'], indices=max_images)
    loader = Runner.build_dataloader(loader_cfg)
    evaluator = _evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = loader.dataset.metainfo
    return loader, evaluator


def _evaluator(cfg):
    from mmengine.evaluator import Evaluator
    from mmengine.registry import METRICS

    from ..utils.warnings import quiet_known_log_messages
    metrics = cfg if isinstance(cfg, list) else [cfg]
    with quiet_known_log_messages():
        return Evaluator([METRICS.build(m) for m in metrics])
