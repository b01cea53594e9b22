"""End to end: tools/test.py on a tiny generated ADE20K-format dataset with a checkpoint made here (``--verbose``:
mmengine's log on screen; by default a short header and the metrics, the log in the work dir)."""
import importlib.util
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT


@pytest.fixture(scope='module')
def tiny_data_and_ckpt(tmp_path_factory):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_tiny_data import make_tiny_ade
    tmp = tmp_path_factory.mktemp('tiny')
    data = make_tiny_ade(str(tmp / 'tiny_ade'), num=3, size=(128, 96))
    model = helpers.build_model(helpers.load_cfg('configs/tiny/segmenter_tiny_ade.py'))
    ckpt = tmp / 'tiny.pth'
    # a full mmengine-style checkpoint: numpy in the meta is what torch >= 2.6's weights_only load refuses
    torch.save(dict(state_dict=model.state_dict(), meta=dict(seed=np.int64(0), note='made by the tests')), ckpt)
    return data, str(ckpt), tmp


TA = ['model.backbone.type=ReducedVisionTransformer', 'model.backbone.reduce_after_layer=1',
      'model.backbone.reducer.type=TokenAdapter', 'model.backbone.reducer.unique_ratio_h=0.25',
      'model.backbone.reducer.unique_ratio_w=0.25']


@pytest.mark.parametrize('config,fmt,extra', [
    ('segmenter_tiny_ade.py', 'ade', []),
    ('segmenter_tiny_tokenadapter_ade.py', 'ade', []),
    ('segmenter_tiny_expedit_ade.py', 'ade', []),
    ('segmenter_tiny_tome_ade.py', 'ade', []),
    ('segmenter_tiny_tokenadapter_ade.py', 'ade', ['compile.backend=eager', '--compile']),   # torch.compile
    ('segmenter_tiny_cityscapes.py', 'cityscapes', []),
    ('segmenter_tiny_cityscapes.py', 'cityscapes', TA),
    ('segmenter_tiny_context.py', 'context', []),
    ('segmenter_tiny_context.py', 'context', TA),
])
def test_tools_test_prints_miou_table(config, fmt, extra, tiny_data_and_ckpt):
    _, ckpt, tmp = tiny_data_and_ckpt
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_tiny_data import make_tiny_data
    data = str(tmp / f'tiny_{fmt}')
    if not osp.isdir(data):
        make_tiny_data(data, fmt, num=3, size=(128, 96))
    num_classes = {'ade': 150, 'cityscapes': 19, 'context': 59}[fmt]
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'test.py'), osp.join(ROOT, 'configs', 'tiny', config),
           ckpt if fmt == 'ade' else _ckpt_for(ckpt, num_classes, tmp),
           '--work-dir', str(tmp / (config + str(len(extra)))), '--verbose',
           '--cfg-options', f'test_dataloader.dataset.data_root={data}'] + extra
    env = dict(__import__('os').environ)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)   # the tool itself must handle full checkpoints
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp), env=env, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert 'per class results' in out
    assert re.search(r'\|\s+Class\s+\|\s+IoU\s+\|\s+Acc\s+\|', out)
    assert re.search(r'mIoU: \d+\.\d+', out)
    assert 'Load checkpoint from' in out
    assert ('Model has been "compiled"' in out) == ('--compile' in extra)
    # every class of the dataset is in the table
    row = r'^\|\s+\S.*\|\s+(?:nan|\d+\.\d+)\s+\|\s+(?:nan|\d+\.\d+)\s+\|\s*$'
    assert len(re.findall(row, out, re.M)) == num_classes


def _ckpt_for(ckpt, num_classes, tmp):
    """The tiny checkpoint with the class embeddings / mask norm cut to ``num_classes``."""
    path = tmp / f'tiny_{num_classes}.pth'
    if not path.exists():
        state = torch.load(ckpt, weights_only=False)['state_dict']
        state = {k: (v[:, :num_classes] if k == 'decode_head.cls_emb' else
                     v[:num_classes] if k.startswith('decode_head.mask_norm') else v) for k, v in state.items()}
        torch.save(dict(state_dict=state, meta=dict()), path)
    return str(path)


def test_tools_test_default_output_is_short(tiny_data_and_ckpt):
    """Without --verbose: the header (config, checkpoint, reduction, dataset size, GFLOPs) and the metrics on screen;
    mmengine's log (environment, config dump, per-class table) in the work dir's log file only."""
    data, ckpt, tmp = tiny_data_and_ckpt
    config = osp.join(ROOT, 'configs', 'tiny', 'segmenter_tiny_tokenadapter_ade.py')
    res = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), config, ckpt, '--num-threads', '1',
                          '--work-dir', str(tmp / 'quiet'), '--cfg-options',
                          f'test_dataloader.dataset.data_root={data}'],
                         capture_output=True, text=True, cwd=str(tmp), timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    lines = res.stdout.splitlines()
    assert lines[:3] == [f'config: {config}', f'checkpoint: {ckpt}',
                         "reduction: TokenAdapter(r_h=0.3, r_w=0.3, unique_ratio_h=0.25, unique_ratio_w=0.25) in "
                         "ReducedVisionTransformer (reduce_after_layer=1, restore_after_layer=3, "
                         "restore_site=backbone)"]
    assert lines[3] == f'dataset: 3 images in {data}'
    assert re.fullmatch(r'GFLOPs: \d+\.\d\d \(backbone \d+\.\d\d\) for the first test image at \d+x\d+ \(model '
                        r'forward, no post-processing\)', lines[4])
    assert lines[5] == 'results:' and re.fullmatch(r'  mIoU: \d+\.\d{4}', lines[7])
    log = lines[-1].split('full log: ')[1]
    assert len(lines) < 15 and 'per class results' not in res.stdout and 'Config:' not in res.stdout
    text = open(log).read()
    assert 'per class results' in text and 'System environment' in text and 'Config:' in text
    assert 'arning' not in res.stderr, res.stderr
