"""Every config in configs/ builds, keeps the upstream state-dict layout, and runs one forward at reduced width
(full-size configs run their full forward in benchmarks, not here). Mask2Former (Swin) configs: test_mask2former.py."""
import glob
import importlib.util
import os.path as osp

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

SKIP_DIRS = ('_base_', 'sweeps', 'compensators', 'classification')   # not mmseg models: tests/test_timm_host.py
CONFIGS = sorted(p for p in glob.glob(osp.join(helpers.CONFIGS, '**', '*.py'), recursive=True)
                 if not any(f'{osp.sep}{d}{osp.sep}' in p for d in SKIP_DIRS)
                 and not osp.basename(p).startswith(('camvid_data', 'tiny_segmenter_model', 'tiny_mask2former_model',
                                                     'tiny_maskdino_model', 'mask2former', 'maskdino')))
# Swin hosts (Mask2Former, MaskDINO; mmseg and mmdet): tests/test_mask2former.py, test_swin.py, test_maskdino.py


def narrow(cfg):
    """Same depth, layers and reduction; 32 channels, 2 heads, so that one forward is cheap. A compensated backbone
    keeps its width (its compensator file is trained for it; the CamVid ViT-T is small)."""
    m = cfg.model
    if m.backbone.type == 'CompensatedVisionTransformer':
        return cfg
    m.backbone.embed_dims, m.backbone.num_heads = 32, 2
    head = m.decode_head
    if head.type == 'DPTHead':
        head.in_channels, head.embed_dims, head.channels = (32,) * 4, 32, 16
        head.post_process_channels = [8, 16, 32, 32]
    else:
        head.in_channels, head.channels, head.embed_dims, head.num_heads = 32, 32, 32, 2
    return cfg


def upstream_layout(cfg):
    """The same model with mmseg's own classes (reduction removed)."""
    import copy
    up = copy.deepcopy(cfg)
    if up.model.type == 'TokenReductionEncoderDecoder':
        up.model.type = 'EncoderDecoder'
        up.model.pop('input_scale', None)
    if up.model.backbone.type in ('ReducedVisionTransformer', 'CompensatedVisionTransformer'):
        up.model.backbone.type = 'VisionTransformer'
        for k in ('reducer', 'reduce_after_layer', 'restore_after_layer', 'restore_site', 'compensator'):
            up.model.backbone.pop(k, None)
    return up


def test_every_config_is_listed():
    names = {osp.basename(p) for p in CONFIGS}
    assert {'segmenter_vitl_tokenadapter_ade.py', 'dpt_vitb_expedit_ade.py', 'segmenter_vitl_expedit_context.py',
            'segmenter_vit-t_camvid.py'} <= names


@pytest.mark.parametrize('config', CONFIGS, ids=[osp.relpath(p, helpers.CONFIGS) for p in CONFIGS])
def test_config_builds_and_runs_narrow(config):
    cfg = narrow(helpers.load_cfg(config))
    from mmtokred.hosts.backbone_checks import check_backbone_cfg
    from mmtokred.hosts.settings import check_reduction_settings
    check_reduction_settings(cfg)   # the tools' early checks accept every provided config
    check_backbone_cfg(cfg)
    model = helpers.build_model(cfg)
    upstream = helpers.build_model(upstream_layout(cfg))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in upstream.state_dict().items()}
    crop = cfg.model.test_cfg.get('crop_size') or cfg.model.data_preprocessor.get('size') or (64, 64)
    h, w = crop
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        logits = model(x, mode='tensor')
    assert logits.dim() == 4 and logits.shape[:2] == (1, cfg.model.decode_head.num_classes)
    assert torch.isfinite(logits).all()
