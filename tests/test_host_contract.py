"""The host contract, for every host (mmseg ViT bare and as a head-restoring segmentor, mmseg / mmdet Swin, timm
ViT): the only new attribute on an upstream module is the one state holder and no submodule is added; reduction
disabled is exactly upstream; a deep copy of a reduced model computes the same outputs on its own state; the hook
accepts every host option that insert_token_reduction accepts."""
import copy
import importlib.util
import os.path as osp

import pytest
import torch

import mmtokred  # noqa: F401
from mmtokred import TokenReductionHook, insert_token_reduction, reduction_disabled, reduction_plan
from mmtokred.hosts.registry import STATE_ATTR, state_of

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

TA = dict(type='TokenAdapter', r_h=0.3, r_w=0.3)


def vit():
    from mmseg.registry import MODELS
    return MODELS.build(dict(type='VisionTransformer', img_size=(64, 80), patch_size=8, embed_dims=32, num_layers=4,
                             num_heads=2, mlp_ratio=2, out_indices=(1, 3), final_norm=True))


def segmentor():
    return helpers.build_model(helpers.load_cfg('configs/tiny/segmenter_tiny_ade.py'))


def swin(scope):
    def build():
        registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
        return registry.build(dict(type='SwinTransformer', pretrain_img_size=96, embed_dims=16, depths=(2, 2, 4, 2),
                                   num_heads=(1, 2, 2, 4), window_size=6, mlp_ratio=2, out_indices=(0, 1, 2, 3)))
    return build


def timm_vit():
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2, mlp_ratio=2,
                             num_classes=5)


def outputs(model, x):
    with torch.no_grad():
        out = model(x, mode='tensor') if hasattr(model, 'decode_head') else model(x)
    return list(out) if isinstance(out, (list, tuple)) else [out]


# (build, input shape, reduction, the same reduction disabled)
CASES = {
    'mmseg-vit': (vit, (2, 3, 64, 80), dict(reducer=TA, reduce_after_layer=1),
                  dict(reducer=dict(type='TokenAdapter', r_h=0.0, r_w=0.0), reduce_after_layer=1)),
    'mmseg-vit-segmentor-head': (segmentor, (2, 3, 64, 80), dict(reducer=TA, reduce_after_layer=1, restore_site='head'),
                                 dict(reducer=dict(type='ToMe', ratio=0.0), reduce_after_layer=1, restore_site='head')),
    'mmseg-swin': (swin('mmseg'), (2, 3, 70, 90), dict(reducer=dict(type='TokenAdapter', grid=4), reduce_after_layer=5,
                                                       reference_shift_mask=True),
                   dict(reducer=dict(type='TokenAdapter', grid=6), reduce_after_layer=5)),
    'mmdet-swin': (swin('mmdet'), (2, 3, 70, 90), dict(reducer=dict(type='Expediting', cluster_grid=4, topk=4),
                                                       reduce_after_layer=[1, 5]),
                   dict(reducer=dict(type='Pooling', ratio=1.0), reduce_after_layer=3)),
    'timm-tome': (timm_vit, (2, 3, 32, 32), dict(reducer=dict(type='ToMe', mode='layer', r=2), reduce_after_layer=None),
                  dict(reducer=dict(type='ToMe', mode='layer', r=0), reduce_after_layer=None)),
    'timm-grid': (timm_vit, (2, 3, 32, 32), dict(reducer=TA, reduce_after_layer=0),
                  dict(reducer=dict(type='Pooling', ratio=1.0), reduce_after_layer=0)),
}


def upstream_and_reduced(name, which=2):
    if name.startswith('timm'):
        pytest.importorskip('timm')
    build, shape, *settings = CASES[name]
    torch.manual_seed(0)
    upstream = build()
    upstream.eval()          # mmseg's backbones return None from train(): do not chain
    reduced = insert_token_reduction(copy.deepcopy(upstream), **settings[which - 2])
    return upstream, reduced, torch.randn(*shape)


@pytest.mark.parametrize('name', CASES)
def test_only_new_attribute_is_the_state_holder(name):
    upstream, reduced, x = upstream_and_reduced(name)
    outputs(upstream, x), outputs(reduced, x)
    up_modules, red_modules = dict(upstream.named_modules()), dict(reduced.named_modules())
    assert list(red_modules) == list(up_modules)                     # no new submodule (reducers included)
    new = {n: set(vars(m)) - set(vars(up_modules[n])) for n, m in red_modules.items()}
    new = {n: attrs for n, attrs in new.items() if attrs}
    holders = {'backbone', 'decode_head'} if name.endswith('-head') else {'backbone' if 'backbone' in up_modules
                                                                           else ''}
    assert new == {n: {STATE_ATTR} for n in holders}
    shapes = {k: v.shape for k, v in upstream.state_dict().items()}
    assert {k: v.shape for k, v in reduced.state_dict().items()} == shapes
    assert len({id(state_of(red_modules[n])) for n in holders}) == 1  # backbone and head share one holder


@pytest.mark.parametrize('name', CASES)
def test_reduction_disabled_is_exactly_upstream(name):
    upstream, reduced, x = upstream_and_reduced(name)
    expected = outputs(upstream, x)
    assert not all(torch.equal(a, b) for a, b in zip(outputs(reduced, x), expected))
    with reduction_disabled(reduced):
        assert all(torch.equal(a, b) for a, b in zip(outputs(reduced, x), expected))
    _, disabled, _ = upstream_and_reduced(name, which=3)
    assert not reduction_plan(disabled).active
    assert all(torch.equal(a, b) for a, b in zip(outputs(disabled, x), expected))


@pytest.mark.parametrize('name', CASES)
def test_deepcopy_of_a_reduced_model(name):
    upstream, reduced, x = upstream_and_reduced(name)
    expected = outputs(reduced, x)
    copied = copy.deepcopy(reduced)
    assert all(torch.equal(a, b) for a, b in zip(outputs(copied, x), expected))
    backbone = getattr(copied, 'backbone', copied)
    assert state_of(backbone) is not state_of(getattr(reduced, 'backbone', reduced))
    if name.endswith('-head'):
        assert state_of(copied.decode_head) is state_of(backbone)
    insert_token_reduction(copied, None, None)                        # the copy's plan is its own
    assert all(torch.equal(a, b) for a, b in zip(outputs(copied, x), outputs(upstream, x)))
    assert all(torch.equal(a, b) for a, b in zip(outputs(reduced, x), expected))


def test_hook_accepts_every_host_option():
    """reference_shift_mask (a Swin option) through --cfg-options, the tools' early check and the hook; a ViT
    refuses it, listing what it takes."""
    from mmengine.config import Config

    from mmtokred.hosts.settings import check_reduction_settings
    from mmtokred.utils.cli import InputError, parse_option_value
    hooks = parse_option_value('[dict(type=TokenReductionHook,reducer=dict(type=TokenAdapter,grid=4),'
                               'reduce_after_layer=5,reference_shift_mask=True)]')
    backbone = dict(type='SwinTransformer', depths=(2, 2, 4, 2), window_size=6)
    check_reduction_settings(Config(dict(model=dict(backbone=backbone), custom_hooks=hooks)))
    upstream, reduced, x = upstream_and_reduced('mmseg-swin')

    class Runner:
        model = copy.deepcopy(upstream)
    kwargs = {k: v for k, v in hooks[0].items() if k != 'type'}
    TokenReductionHook(**kwargs).before_run(Runner)
    assert reduction_plan(Runner.model).option('reference_shift_mask') is True
    assert all(torch.equal(a, b) for a, b in zip(outputs(Runner.model, x), outputs(reduced, x)))
    vit_cfg = Config(dict(model=dict(backbone=dict(type='VisionTransformer')), custom_hooks=hooks))
    with pytest.raises(InputError, match=r"unknown arguments \['reference_shift_mask'\]; valid: reducer, "
                                         'reduce_after_layer, restore_after_layer, restore_site$'):
        check_reduction_settings(vit_cfg)
    with pytest.raises(TypeError, match='reference_shift_mask'):
        insert_token_reduction(vit(), TA, 1, reference_shift_mask=True)
