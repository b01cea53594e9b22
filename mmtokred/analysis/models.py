"""Building models from configs and running their tensor forward, shared by the analysis tools."""
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch


def load_config(config: str, cfg_options: Optional[dict] = None):
    """The config with ``cfg_options`` merged, its reduction settings checked (one-line errors)."""
    from ..utils.cli import load_checked_config
    return load_checked_config(config, cfg_options)


def build_model(cfg, checkpoint: Optional[str] = None, device: str = 'cpu'):
    """Build ``cfg.model`` in eval mode (no pretrained download: ``pretrained`` / ``init_cfg`` are not applied)."""
    import mmtokred  # noqa: F401
    from mmengine.registry import init_default_scope
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
    """(H, W): the given shape, else the test crop size, else the data-preprocessor size."""
    if shape:
        from ..utils.cli import parse_shape
        return parse_shape(shape)
    crop = cfg.model.get('test_cfg', {}).get('crop_size') or cfg.model.get('data_preprocessor', {}).get('size')
    if crop is None:
        raise ValueError('no --shape given and the config has neither test_cfg.crop_size nor data_preprocessor.size')
    return tuple(crop)


def tensor_forward(model, inputs: torch.Tensor):
    """The model's tensor forward (backbone + neck + head, restored logits), no post-processing."""
    return model(inputs, mode='tensor')


def config_name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]
