"""The full-size Segmenter ViT-L configs: same state dict as upstream, one 640x640 forward on CPU each."""
import importlib.util
import os.path as osp

import pytest
import torch

from mmtokred import reduction_plan

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

VITL = ['configs/segmenter_vitl_tokenadapter_ade.py', 'configs/segmenter_vitl_expedit_ade.py',
        'configs/segmenter_vitl_tome_ade.py']


@pytest.fixture(scope='module')
def upstream_vitl(tmp_path_factory):
    path = tmp_path_factory.mktemp('upstream') / 'upstream_vitl.py'
    path.write_text("_base_ = 'mmseg::segmenter/segmenter_vit-l_mask_8xb1-160k_ade20k-512x512.py'\n"
                    "model = dict(pretrained=None)\n")
    model = helpers.build_model(helpers.load_cfg(str(path)))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, model.state_dict()


@pytest.mark.parametrize('config', VITL)
def test_vitl_config_state_dict_and_forward(config, upstream_vitl):
    shapes, state = upstream_vitl
    model = helpers.build_model(helpers.load_cfg(config))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert reduction_plan(model).restore_site in ('backbone', 'head')
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 640, 640)
    metas = [dict(img_shape=(640, 640), ori_shape=(640, 640), pad_shape=(640, 640), padding_size=[0] * 4)]
    with torch.no_grad():
        logits = model.inference(x, metas)
    assert logits.shape == (1, 150, 640, 640)
    assert torch.isfinite(logits).all()
