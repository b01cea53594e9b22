"""Mask2Former Swin hosts (unreduced): the full-size configs keep the upstream state dict, the MAC counter gets the
Swin-L backbone and multi-scale deformable attention right, the FLOPs / speed tools take mmdet models, and
tools/test.py prints PQ and AP (mmdet) and mIoU (mmseg) on generated data with checkpoints made here."""
import glob
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT

UPSTREAM = {   # dataset suffix of configs/mask2former_swinl_*.py -> the upstream config of its architecture
    'ade': 'mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py',
    'coco-panoptic': 'mmdet::mask2former/mask2former_swin-l-p4-w12-384-in21k_16xb1-lsj-100e_coco-panoptic.py',
    'coco-instance': 'configs/mask2former_swinl_coco-instance.py',   # no upstream Swin-L instance config
}
FULL_SIZE = sorted(glob.glob(osp.join(ROOT, 'configs', 'mask2former_swinl_*.py')))
CLASS_EMBED = ('panoptic_head.cls_embed.weight', 'panoptic_head.cls_embed.bias')


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def upstream_shapes(name, tmp_path_factory, _cache={}):
    if name not in _cache:
        base = UPSTREAM[name]
        if '::' in base:
            path = tmp_path_factory.mktemp('upstream') / f'{name}.py'
            path.write_text(f"_base_ = '{base}'\n")
            base = str(path)
        _cache[name] = shapes(helpers.build_model_on_meta(helpers.load_cfg(base)))
    return _cache[name]


def test_every_dataset_has_a_full_size_config():
    assert {osp.basename(p) for p in FULL_SIZE} >= {f'mask2former_swinl_{d}.py' for d in UPSTREAM}


@pytest.mark.parametrize('config', FULL_SIZE, ids=[osp.basename(p) for p in FULL_SIZE])
def test_full_size_state_dict_is_upstream(config, tmp_path_factory):
    dataset = osp.splitext(config)[0].rsplit('_', 1)[1]
    model = helpers.build_model_on_meta(helpers.load_cfg(config))
    assert shapes(model) == upstream_shapes(dataset, tmp_path_factory)
    assert [len(stage.blocks) for stage in model.backbone.stages] == [2, 2, 18, 2]


def test_instance_config_is_the_panoptic_architecture_with_80_classes(tmp_path_factory):
    pan = upstream_shapes('coco-panoptic', tmp_path_factory)
    ins = upstream_shapes('coco-instance', tmp_path_factory)
    assert set(pan) == set(ins)
    assert {k for k in pan if pan[k] != ins[k]} == set(CLASS_EMBED)
    assert ins[CLASS_EMBED[0]][0] == 81 and pan[CLASS_EMBED[0]][0] == 134
    cfg = helpers.load_cfg('configs/mask2former_swinl_coco-instance.py')
    assert cfg.test_dataloader.dataset.type == 'CocoDataset' and cfg.model.test_cfg.panoptic_on is False
    assert cfg.test_evaluator.type == 'CocoMetric' and set(cfg.test_evaluator.metric) == {'bbox', 'segm'}
    pan_cfg = helpers.load_cfg('configs/mask2former_swinl_coco-panoptic.py')   # trained like the panoptic model
    for key in ('train_cfg', 'param_scheduler', 'optim_wrapper'):
        assert cfg[key] == pan_cfg[key], key
    assert cfg.model.backbone == pan_cfg.model.backbone


def test_panoptic_config_reports_pq_and_mask_ap():
    cfg = helpers.load_cfg('configs/mask2former_swinl_coco-panoptic.py')
    evaluators = {e.type: e for e in cfg.test_evaluator}
    assert set(evaluators) == {'CocoPanopticMetric', 'CocoMetric'}
    assert 'segm' in evaluators['CocoMetric'].metric
    assert evaluators['CocoMetric'].ann_file.endswith('annotations/instances_val2017.json')
    assert cfg.model.test_cfg.panoptic_on and cfg.model.test_cfg.instance_on


def swin_macs(hw, embed, depths, window, patch=4, mlp_ratio=4):
    """Analytic MACs of a Swin backbone: patch embedding conv; per block qkv + proj on the window-padded tokens,
    QK^T and AV per window, the MLP; PatchMerging's 4C -> 2C linear. (Element-wise ops: not counted.)"""
    h, w = -(-hw[0] // patch), -(-hw[1] // patch)   # the patch embedding pads the image to the patch size
    c = embed
    total = h * w * c * 3 * patch * patch
    for stage, depth in enumerate(depths):
        n = h * w
        n_pad = -(-h // window) * window * (-(-w // window) * window)
        total += depth * (n_pad * (4 * c * c + 2 * window * window * c) + n * 2 * mlp_ratio * c * c)
        if stage < len(depths) - 1:
            h, w = -(-h // 2), -(-w // 2)
            total += h * w * 4 * c * 2 * c
            c *= 2
    return total


@pytest.mark.parametrize('hw', [(1152, 1152), (800, 1216), (640, 853)])
def test_swin_l_backbone_macs(hw):
    """The papers' protocol (backbone only, 1152 x 1152): 937 GFLOPs (Expediting, Token Adapter; fvcore also
    counts the norms, +1.5 G). Counted on the meta device: shapes only."""
    from mmtokred.analysis.flops import count_model_macs
    from mmtokred.analysis.models import backbone_forward
    model = helpers.build_model_on_meta(helpers.load_cfg('configs/mask2former_swinl_coco-panoptic.py'))
    macs = count_model_macs(model, torch.zeros(1, 3, *hw, device='meta'), backbone_forward).total()
    assert macs == swin_macs(hw, 192, [2, 2, 18, 2], 12)
    if hw == (1152, 1152):
        assert macs == pytest.approx(937e9, rel=0.01)


def test_multi_scale_deformable_attention_handle():
    from mmcv.ops import MultiScaleDeformableAttention

    from mmtokred.analysis.flops import count_model_macs
    B, C, heads, levels, points = 2, 32, 2, 2, 3
    spatial = torch.tensor([[6, 8], [3, 4]])
    nv = int(spatial.prod(1).sum())
    nq = 10
    msda = MultiScaleDeformableAttention(embed_dims=C, num_heads=heads, num_levels=levels, num_points=points,
                                         batch_first=True).eval()
    query, value = torch.randn(B, nq, C), torch.randn(B, nv, C)
    ref = torch.rand(B, nq, levels, 2)
    start = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    counter = count_model_macs(msda, None, lambda m, _: m(query, value=value, reference_points=ref,
                                                           spatial_shapes=spatial, level_start_index=start))
    linears = B * (nv * C * C + nq * C * heads * levels * points * 3 + nq * C * C)
    sampling = B * nq * C * levels * points * (4 + 1)
    assert counter.by_op[('decode head / neck', 'MultiScaleDeformableAttention')] == sampling
    assert counter.total() == linears + sampling


def tool(name):
    return helpers.load_tool(f'analysis_tools/{name}.py')


TINY_PANOPTIC = osp.join(ROOT, 'configs', 'tiny', 'mask2former_tiny_coco-panoptic.py')


def test_get_flops_mmdet_whole_model_and_backbone(capsys):
    get_flops = tool('get_flops')
    whole = get_flops.main([TINY_PANOPTIC, '--shape', '96', '128'])
    out = capsys.readouterr().out
    assert 'whole model' in out and 'decode head / neck' in out
    assert whole.by_op[('decode head / neck', 'MultiScaleDeformableAttention')] > 0
    backbone = get_flops.main([TINY_PANOPTIC, '--backbone-only', '--shape', '96', '128'])
    assert 'backbone only' in capsys.readouterr().out
    assert set(backbone.by_phase()) == {'backbone: before reduction'}
    assert backbone.total() == whole.by_phase()['backbone: before reduction'] == \
        swin_macs((96, 128), 32, [2, 2, 2, 2], 7)


def test_get_flops_mmseg_mask2former(capsys):
    """mmseg's tensor mode does not pass data samples to the decode head, which Mask2Former's needs."""
    counter = tool('get_flops').main([osp.join(ROOT, 'configs', 'tiny', 'mask2former_tiny_ade.py')])
    assert counter.by_op[('decode head / neck', 'MultiScaleDeformableAttention')] > 0
    assert counter.by_phase()['backbone: before reduction'] == swin_macs((64, 64), 32, [2, 2, 2, 2], 7)


def test_backbone_only_needs_a_backbone():
    from mmtokred.analysis.models import backbone_forward
    with pytest.raises(ValueError, match='backbone-only mode needs a model with a .backbone; Linear'):
        backbone_forward(torch.nn.Linear(3, 3), torch.zeros(1, 3))
    with pytest.raises(SystemExit):   # argparse: --backbone-only times a synthetic input
        tool('benchmark').parse_args([TINY_PANOPTIC, '--backbone-only', '--dataset'])


def test_benchmark_mmdet_backbone_only(capsys):
    rows = tool('benchmark').main([TINY_PANOPTIC, '--backbone-only', '--shape', '64', '96', '--repeat-times', '2',
                                   '--warmup', '0', '--no-progress'])
    assert rows[0]['gflops'] * 1e9 == pytest.approx(swin_macs((64, 96), 32, [2, 2, 2, 2], 7))
    assert 'backbone only' in capsys.readouterr().out


@pytest.fixture(scope='module')
def tiny_run_dir(tmp_path_factory):
    """data/tiny_coco and data/tiny_ade (the tiny configs' data roots) under a run directory, and a checkpoint of
    each tiny model (random weights)."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_tiny_coco import make_tiny_coco
    from make_tiny_data import make_tiny_ade
    run = tmp_path_factory.mktemp('run')
    make_tiny_coco(str(run / 'data' / 'tiny_coco'), num=3)
    make_tiny_ade(str(run / 'data' / 'tiny_ade'), num=3)
    return run


@pytest.mark.parametrize('config,expected', [
    ('mask2former_tiny_coco-panoptic.py', [r'Panoptic Evaluation Results', r'\|\s+All\s+\|\s+\d+\.\d+',
                                           r'coco_panoptic/PQ: \d+\.\d+', r'coco/bbox_mAP: \d+\.\d+',
                                           r'coco/segm_mAP: \d+\.\d+']),
    ('mask2former_tiny_coco-instance.py', [r'Evaluate annotation type \*segm\*', r'coco/bbox_mAP: \d+\.\d+',
                                           r'coco/segm_mAP: \d+\.\d+']),
    ('mask2former_tiny_ade.py', [r'per class results', r'mIoU: \d+\.\d+']),
    # reduced Swin hosts and MaskDINO print the same metrics
    ('mask2former_tiny_tokenadapter_coco-panoptic.py', [r'coco_panoptic/PQ: \d+\.\d+', r'coco/segm_mAP: \d+\.\d+']),
    ('mask2former_tiny_expedit_ade.py', [r'mIoU: \d+\.\d+']),
    ('maskdino_tiny_coco-panoptic.py', [r'coco_panoptic/PQ: \d+\.\d+', r'coco/bbox_mAP: \d+\.\d+',
                                        r'coco/segm_mAP: \d+\.\d+']),
    ('maskdino_tiny_expedit_coco-instance.py', [r'coco/segm_mAP: \d+\.\d+']),
])
def test_tools_test_prints_metrics(config, expected, tiny_run_dir):
    path = osp.join(ROOT, 'configs', 'tiny', config)
    ckpt = tiny_run_dir / (config + '.pth')
    torch.save(dict(state_dict=helpers.build_model(helpers.load_cfg(path)).state_dict(), meta=dict()), ckpt)
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), path, str(ckpt),
                          '--work-dir', str(tiny_run_dir / config), '--verbose'],
                         capture_output=True, text=True, cwd=str(tiny_run_dir), env=env, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert 'Load checkpoint from' in out
    for pattern in expected:
        assert re.search(pattern, out), pattern
    if 'panoptic' not in config:
        assert 'coco_panoptic/PQ' not in out
