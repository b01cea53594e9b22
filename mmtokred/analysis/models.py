"""Building models from configs and running their tensor forward, shared by the analysis tools."""
import inspect
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch


def load_config(config: str, cfg_options: Optional[dict] = None):
    """The config with ``cfg_options`` merged, its reduction settings checked (one-line errors)."""
    from ..hosts.settings import load_checked_config
    return load_checked_config(config, cfg_options)


def build_model(cfg, checkpoint: Optional[str] = None, device: str = 'cpu'):
    """Build ``cfg.model`` in eval mode (no pretrained download: ``pretrained`` / ``init_cfg`` are not applied)."""
    from mmengine.registry import init_default_scope

    import mmtokred  # noqa: F401
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    if checkpoint:
        from ..utils import load_trusted_checkpoint
        from ..utils.cli import check_file
        check_file(checkpoint, 'checkpoint')
        load_trusted_checkpoint(model, checkpoint, strict=True,
                                remedy='the analysis tools need the checkpoint of this very config')
    model.to(device)
    model.eval()
    return model


def input_shape(cfg, shape: Optional[Sequence[int]] = None) -> Tuple[int, int]:
    """(H, W): the given shape, else the test crop size, else the data-preprocessor size, else the test pipeline's
    ``Resize`` scale (mmdet: ``scale=(1333, 800), keep_ratio=True`` -> a landscape 800 x 1333 image), padded to the
    preprocessor's ``pad_size_divisor``."""
    if shape:
        from ..utils.cli import parse_shape
        return parse_shape(shape)
    crop = cfg.model.get('test_cfg', {}).get('crop_size') or cfg.model.get('data_preprocessor', {}).get('size')
    if crop is not None:
        return tuple(crop)
    resized = test_resize_shape(cfg)
    if resized is None:
        raise ValueError('no --shape given and the config has no test_cfg.crop_size, data_preprocessor.size or '
                         'Resize(scale=...) in its test pipeline: pass --shape H W')
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor') or 1
    return tuple(-(-side // divisor) * divisor for side in resized)


def test_resize_shape(cfg) -> Optional[Tuple[int, int]]:
    """(H, W) of the largest image the test pipeline's ``Resize`` makes: ``scale`` is (W, H) in OpenMMLab; with
    ``keep_ratio`` the long side is bounded by the larger number and the short side by the smaller one."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    while dataset.get('dataset') is not None:
        dataset = dataset['dataset']
    for step in dataset.get('pipeline') or []:
        if str(step.get('type', '')).split('.')[-1] in ('Resize', 'FixScaleResize') and step.get('scale'):
            scale = step['scale']
            w, h = (scale, scale) if isinstance(scale, int) else tuple(scale)
            return (min(w, h), max(w, h)) if step.get('keep_ratio') else (h, w)
    return None


# The papers' Swin protocol (Expediting, Token Adapter Tab. 2): backbone only, one 1152 x 1152 image.
BACKBONE_PROTOCOL_SHAPE = (1152, 1152)


def synthetic_data_samples(model, inputs: torch.Tensor):
    """One data sample per image, with the meta of an unpadded, unscaled ``inputs (B, 3, H, W)``: what heads that
    read image metas in their forward (Mask2Former: the batch size, the input shape) need. ``DetDataSample`` for
    mmdet detectors, else ``SegDataSample``."""
    h, w = inputs.shape[-2:]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                padding_size=[0, 0, 0, 0], scale_factor=(1.0, 1.0))
    try:
        from mmdet.models.detectors import BaseDetector
    except ImportError:  # pragma: no cover  (mmseg-only install)
        BaseDetector = ()
    if isinstance(model, BaseDetector):
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    return [Sample(metainfo=meta) for _ in range(inputs.shape[0])]


def tensor_forward(model, inputs: torch.Tensor):
    """The model's tensor forward: backbone + neck + head (mmseg: restored logits; Mask2Former: class and mask
    predictions of every decoder layer), no post-processing (panoptic fusion, resizing to the image)."""
    samples = synthetic_data_samples(model, inputs)
    head = getattr(model, 'decode_head', None)
    if head is not None and len(inspect.signature(head.forward).parameters) > 1:
        # mmseg's EncoderDecoder._forward calls decode_head.forward(x) without the data samples that a Mask2Former
        # head needs (upstream tensor mode raises a TypeError for it): call the head with them
        return head.forward(model.extract_feat(inputs), samples)
    return model(inputs, samples, mode='tensor')


def backbone_forward(model, inputs: torch.Tensor):
    """The backbone alone (the papers' Swin FLOPs / FPS protocol)."""
    if getattr(model, 'backbone', None) is None:
        raise ValueError(f'backbone-only mode needs a model with a .backbone; {type(model).__name__} has none')
    return model.backbone(inputs)


def config_name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]
