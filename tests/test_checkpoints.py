"""The committed checkpoints (checksum, keys, plain-tensor loading) and the demo on them."""
import hashlib
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

spec = importlib.util.spec_from_file_location('helpers', osp.join(osp.dirname(__file__), 'helpers.py'))
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
ROOT = helpers.ROOT
CHECKPOINTS = osp.join(ROOT, 'checkpoints')


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def recorded_sums():
    sums = {}
    with open(osp.join(CHECKPOINTS, 'SHA256SUMS')) as f:
        for line in f:
            digest, name = line.split()
            sums[name] = digest
    return sums


@pytest.mark.parametrize('name,config', [
    ('camvid_segmenter_vit-t_fp16.pth', 'configs/camvid/segmenter_vit-t_camvid.py'),
    ('demo_segmenter_scenes.pth', 'configs/demo/segmenter_scenes.py'),
])
def test_committed_checkpoint_checksum_and_keys(name, config):
    path = osp.join(CHECKPOINTS, name)
    assert sha256(path) == recorded_sums()[name]
    ckpt = torch.load(path, map_location='cpu', weights_only=True)   # plain tensors and values only
    model = helpers.build_model(helpers.load_cfg(config))
    expected = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in ckpt['state_dict'].items()} == expected
    model.load_state_dict(ckpt['state_dict'], strict=True)
    assert ckpt['meta']['dataset_meta']['classes'][0] == 'sky'


def test_demo_runs(tmp_path):
    env = dict(os.environ)
    res = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--work-dir', str(tmp_path),
                          '--repeat-times', '3'], capture_output=True, text=True, cwd=str(tmp_path), env=env,
                         timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert '| unreduced |' in out and '| Token Adapter |' in out
    # no third-party warning (libpng on a sample photograph's ICC profile, mmengine's metric-prefix message) and
    # mmseg's per-class tables in the log, not on screen
    assert 'libpng warning' not in out and 'mmengine - WARNING' not in out and 'per class results' not in out
    assert osp.isfile(tmp_path / 'token_adapter_scene_0000.png')
    # the pretrained model on the photographs that ship with matplotlib (and scikit-image), when set-up converted it
    from mmtokred import pretrained
    try:
        pretrained.converted_backbone()
    except pretrained.MissingPretrainedError:
        assert 'Real photographs: skipped, no pretrained DINOv2 backbone' in out
    else:
        assert '| grace_hopper.jpg | 512x600 |' in out and 'agreement mIoU' in out, out[-3000:]
        assert osp.isfile(tmp_path / 'dinov2_tokenadapter_grace_hopper.png')
